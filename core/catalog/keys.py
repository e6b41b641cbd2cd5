"""API keys and audit log repository (the rules of who may do what are in ``core/auth.py``)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from core.models import ApiKey, AuditEntry


def key_by_hash(session: Session, digest: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))


def get_api_key(session: Session, key_id: str) -> ApiKey | None:
    return session.get(ApiKey, key_id)


def list_api_keys(session: Session) -> Sequence[ApiKey]:
    """Every key, newest first."""
    return session.scalars(select(ApiKey).order_by(ApiKey.created_at.desc())).all()


def active_admin_key_count(session: Session) -> int:
    """Admin keys not revoked (expired ones count: they were handed out)."""
    count = session.scalar(
        select(func.count()).select_from(ApiKey).where(ApiKey.role == "admin", ApiKey.revoked_at.is_(None))
    )
    return int(count or 0)


def audit_entries(
    session: Session,
    offset: int,
    limit: int,
    scope: frozenset[str] | None,
    own_key_id: str,
    collection: str | None = None,
    action: str | None = None,
) -> tuple[Sequence[AuditEntry], int]:
    """Audit rows newest first, and their total: with a ``scope``, only rows of those collections
    or of the key ``own_key_id``; narrowed to ``collection`` and ``action`` when given."""
    where = []
    if scope is not None:
        where.append(or_(AuditEntry.collection.in_(sorted(scope)), AuditEntry.key_id == own_key_id))
    if collection:
        where.append(AuditEntry.collection == collection)
    if action:
        where.append(AuditEntry.action == action)
    total = session.scalar(select(func.count()).select_from(AuditEntry).where(*where)) or 0
    rows = session.scalars(select(AuditEntry).where(*where).order_by(AuditEntry.id.desc()).offset(offset).limit(limit))
    return rows.all(), total
