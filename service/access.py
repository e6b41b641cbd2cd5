"""Authorisation helpers for routes: scoped collection lookup and audit records."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.orm import Session

from core import auth, catalog
from core.auth import Principal, Role
from core.errors import CollectionNotFound, NotFound
from core.models import Collection


def check_visible(principal: Principal, name: str, role: Role = "reader") -> None:
    """404 (as if it did not exist) unless the key may see collection ``name``; 403 below ``role``.

    No catalog read: for callers that load the collection themselves (and 404 if it is missing).
    """
    if not principal.sees(name):
        raise CollectionNotFound(f"collection {name!r} does not exist")
    principal.require(role, name)


def visible_collection(session: Session, principal: Principal, name: str, role: Role = "reader") -> Collection:
    """The collection if the key may see it (else 404, as if it did not exist) and has ``role`` on it (else 403)."""
    if not principal.sees(name):
        raise CollectionNotFound(f"collection {name!r} does not exist")
    collection = catalog.get_collection(session, name)
    principal.require(role, name)
    return collection


def ensure_visible(session: Session, principal: Principal, collection_id: str | None, hidden: NotFound) -> None:
    """For objects found by their own id (jobs, evaluations): raise ``hidden`` (a 404 that reads
    as if the object did not exist) unless the key may see the object's collection."""
    collection = catalog.get_collection_by_id(session, collection_id) if collection_id else None
    if collection is None and principal.collections is not None:
        raise hidden
    if collection is not None and not principal.sees(collection.name):
        raise hidden


def record(
    request: Request,
    session: Session,
    principal: Principal,
    action: str,
    collection: str | None = None,
    target: str | None = None,
    **detail: object,
) -> None:
    """Append to the audit log (committed with the change it describes)."""
    client = request.client.host if request.client else None
    auth.audit(session, principal, action, collection, target, dict(detail), client)
