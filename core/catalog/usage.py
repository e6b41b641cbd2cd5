"""Usage repository: what the query log says about a collection's LLM use and cost."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
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
