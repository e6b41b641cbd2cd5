"""Usage repository: what the query log says about a collection's LLM use and cost."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Collection, QueryLog


def usage_rows(
    session: Session, collection: Collection, start: datetime, end: datetime
) -> Sequence[tuple[datetime, str | None, dict[str, Any], float]]:
    """(time, LLM model, usage, cost) of the collection's logged queries in [start, end]."""
    return (
        session.execute(
            select(QueryLog.created_at, QueryLog.model, QueryLog.usage, QueryLog.cost).where(
                QueryLog.collection_id == collection.id, QueryLog.created_at >= start, QueryLog.created_at <= end
            )
        )
        .tuples()
        .all()
    )


def costliest_queries(session: Session, collection_id: str, since: datetime, limit: int) -> Sequence[QueryLog]:
    """The collection's ``limit`` most expensive logged queries (cost above 0) since ``since``."""
    return session.scalars(
        select(QueryLog)
        .where(QueryLog.collection_id == collection_id, QueryLog.created_at >= since, QueryLog.cost > 0)
        .order_by(QueryLog.cost.desc())
        .limit(limit)
    ).all()


def total_cost(session: Session, collection_id: str, since: datetime) -> float:
    """The summed cost of the collection's logged queries since ``since``."""
    return float(
        session.scalar(
            select(func.coalesce(func.sum(QueryLog.cost), 0.0)).where(
                QueryLog.collection_id == collection_id, QueryLog.created_at >= since
            )
        )
        or 0.0
    )
