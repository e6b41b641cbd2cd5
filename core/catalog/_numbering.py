"""Numbering rows per owner (version numbers, golden-set and prompt revisions) under concurrent inserts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import ConcurrentChange

T = TypeVar("T")


def add_numbered(
    session: Session, number: Any, owner: Any, owner_id: str, build: Callable[[int], T], commit: bool = False
) -> T:
    """Insert ``build(n)`` where n is one more than the highest ``number`` of ``owner_id``'s rows.

    A unique constraint on (owner, number) catches a concurrent insert of the same n;
    the insert is then retried with the next number.
    """
    for _ in range(5):
        row = build((session.scalar(select(func.max(number)).where(owner == owner_id)) or 0) + 1)
        session.add(row)
        try:
            session.commit() if commit else session.flush()
            return row
        except IntegrityError:
            session.rollback()
    raise ConcurrentChange("could not allocate the next number after concurrent inserts; retry")
