"""Reports repository: the evaluation reports of a collection."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.errors import NotFound
from core.models import Collection, Report


def list_reports(session: Session, collection: Collection, offset: int, limit: int) -> tuple[Sequence[Report], int]:
    where = Report.collection_id == collection.id
    total = session.scalar(select(func.count()).select_from(Report).where(where)) or 0
    items = session.scalars(select(Report).where(where).order_by(Report.created_at.desc()).offset(offset).limit(limit))
    return items.all(), total


def get_report(session: Session, collection: Collection, report_id: str) -> Report:
    report = session.get(Report, report_id)
    if report is None or report.collection_id != collection.id:
        raise NotFound(f"report {report_id!r} does not exist in collection {collection.name!r}")
    return report


def last_sent_report_at(session: Session, collection_id: str) -> datetime | None:
    """When the collection's newest sent report was created (None: none was sent)."""
    return session.scalar(
        select(func.max(Report.created_at)).where(Report.collection_id == collection_id, Report.status == "sent")
    )
