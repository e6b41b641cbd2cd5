"""Query log and feedback repository."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, insert, or_, select
from sqlalchemy.orm import Session

from core.errors import NotFound
from core.models import Collection, Feedback, QueryLog, utcnow


def prune_query_log(session: Session, older_than: timedelta) -> int:
    """Delete query log rows older than the retention period; return how many."""
    result = session.execute(delete(QueryLog).where(QueryLog.created_at < utcnow() - older_than))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def query_missing(query_id: str) -> NotFound:
    """What an unknown query id answers (also for one the caller may not see: the two read alike)."""
    return NotFound(f"query {query_id!r} does not exist (or its log was pruned)")


def get_query(session: Session, query_id: str) -> QueryLog:
    row = session.get(QueryLog, query_id.removeprefix("chatcmpl-"))
    if row is None:
        raise query_missing(query_id)
    return row


def add_feedback(
    session: Session,
    query: QueryLog,
    rating: str,
    comment: str,
    expected_answer: str | None,
    key_id: str | None,
    answerable: bool | None = None,
) -> Feedback:
    row = Feedback(
        query_id=query.id,
        collection_id=query.collection_id,
        rating=rating,
        comment=comment,
        expected_answer=expected_answer,
        key_id=key_id,
        answerable=answerable,
    )
    session.add(row)
    session.flush()
    return row


def list_feedback(
    session: Session, collection: Collection, rating: str | None, offset: int, limit: int
) -> tuple[Sequence[tuple[Feedback, QueryLog]], int]:
    where = [Feedback.collection_id == collection.id]
    if rating:
        where.append(Feedback.rating == rating)
    total = session.scalar(select(func.count()).select_from(Feedback).where(*where)) or 0
    rows = (
        session.execute(
            select(Feedback, QueryLog)
            .join(QueryLog, QueryLog.id == Feedback.query_id)
            .where(*where)
            .order_by(Feedback.created_at.desc())
            .offset(offset)
            .limit(limit)
        )
        .tuples()
        .all()
    )
    return rows, total


def feedback_with_queries(
    session: Session, collection: Collection, ids: Sequence[str]
) -> list[tuple[Feedback, QueryLog]]:
    rows = {
        feedback.id: (feedback, query)
        for feedback, query in session.execute(
            select(Feedback, QueryLog)
            .join(QueryLog, QueryLog.id == Feedback.query_id)
            .where(Feedback.collection_id == collection.id, Feedback.id.in_(list(ids)))
        ).tuples()
    }
    missing = [i for i in ids if i not in rows]
    if missing:
        raise NotFound(f"feedback {', '.join(missing)} does not exist in collection {collection.name!r}")
    return [rows[i] for i in ids]


def answer_mode_counts(session: Session, collection_id: str, since: datetime) -> dict[str, int]:
    """How many of the collection's queries since ``since`` each answer mode answered."""
    return dict(
        session.execute(
            select(QueryLog.answer_mode, func.count())
            .where(QueryLog.collection_id == collection_id, QueryLog.created_at >= since)
            .group_by(QueryLog.answer_mode)
        )
        .tuples()
        .all()
    )


def down_votes(session: Session, collection_id: str, since: datetime) -> Sequence[tuple[Feedback, QueryLog]]:
    """The collection's "down" feedback since ``since`` with the queries it rates, newest first."""
    return (
        session.execute(
            select(Feedback, QueryLog)
            .join(QueryLog, QueryLog.id == Feedback.query_id)
            .where(Feedback.collection_id == collection_id, Feedback.rating == "down", Feedback.created_at >= since)
            .order_by(Feedback.created_at.desc())
        )
        .tuples()
        .all()
    )


def gap_queries(
    session: Session, collection_id: str, since: datetime, until: datetime, below: float, limit: int
) -> Sequence[QueryLog]:
    """Answer-mode queries in [since, until) that were declined or answered with confidence below ``below``,
    newest first (at most ``limit``)."""
    return session.scalars(
        select(QueryLog)
        .where(
            QueryLog.collection_id == collection_id,
            QueryLog.created_at >= since,
            QueryLog.created_at < until,
            QueryLog.mode == "answer",
            or_(QueryLog.answer_mode == "abstained", QueryLog.confidence < below),
        )
        .order_by(QueryLog.created_at.desc())
        .limit(limit)
    ).all()


def unsupported_answers(session: Session, collection_id: str, since: datetime, limit: int) -> Sequence[QueryLog]:
    """Answers since ``since`` with at least one sentence their passages do not support, newest first."""
    return session.scalars(
        select(QueryLog)
        .where(
            QueryLog.collection_id == collection_id,
            QueryLog.created_at >= since,
            QueryLog.unsupported_sentences > 0,
        )
        .order_by(QueryLog.created_at.desc())
        .limit(limit)
    ).all()


def unsupported_answer_count(session: Session, collection_id: str, since: datetime) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(QueryLog)
            .where(
                QueryLog.collection_id == collection_id,
                QueryLog.created_at >= since,
                QueryLog.unsupported_sentences > 0,
            )
        )
        or 0
    )


# A Core insert with its values passed separately: compiled once, with no ORM unit of work.
_INSERT_QUERY_LOG = insert(QueryLog)


def insert_query_log_rows(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """Write ``query_log`` rows (all columns given) in one statement on ``connection``'s transaction."""
    connection.execute(_INSERT_QUERY_LOG, rows)
