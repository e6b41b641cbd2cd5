"""Console sessions repository (the rules — expiry, binding to a key — are in ``core/console.py``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.orm import Session

from core.models import ConsoleSession


def add_console_session(session: Session, row: ConsoleSession) -> None:
    session.add(row)
    session.flush()


def get_console_session(session: Session, session_id: str) -> ConsoleSession | None:
    return session.get(ConsoleSession, session_id)


def delete_console_session(session: Session, session_id: str) -> None:
    session.execute(delete(ConsoleSession).where(ConsoleSession.id == session_id))


def delete_expired_console_sessions(session: Session, now: datetime) -> int:
    """Forget sessions past their expiry (run at each sign-in, so the table stays small)."""
    result = session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))
    return int(getattr(result, "rowcount", 0) or 0)
