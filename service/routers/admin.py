"""API keys and the audit log (admin only)."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from core import auth
from core.errors import InvalidInput
from core.models import utcnow
from service.access import AdminDep, GuardedRoute, record
from service.deps import SessionDep
from service.schemas import AuditRead, KeyCreate, KeyCreated, KeyRead, Offset, Page, error_responses

router = APIRouter(tags=["admin"], route_class=GuardedRoute)
ERRORS = error_responses(401, 403, 404, 422)


@router.post("/keys", status_code=201, responses=ERRORS)
def create_key(body: KeyCreate, session: SessionDep, principal: AdminDep, request: Request) -> KeyCreated:
    """Create an API key no wider than the caller's (role, collections, expiry); the secret is shown once."""
    expires_at = body.expires_at
    if expires_at is not None:
        expires_at = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
    principal.check_can_create(body.role, body.collections, expires_at)
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidInput("expires_at is in the past")
    row, secret = auth.create_key(session, body.name, body.role, body.collections, expires_at, principal.key_id)
    record(
        request,
        session,
        principal,
        "key.create",
        None,
        row.id,
        name=row.name,
        role=row.role,
        collections=row.collections,
    )
    return KeyCreated(**KeyRead.model_validate(row, from_attributes=True).model_dump(), key=secret)


@router.get("/keys", responses=ERRORS)
def list_keys(session: SessionDep, principal: AdminDep) -> Page[KeyRead]:
    """The keys this key administers (all of them for an unscoped admin key); never the secrets."""
    keys = auth.list_keys(session, principal)
    return Page[KeyRead](items=[KeyRead.model_validate(k, from_attributes=True) for k in keys], total=len(keys))


@router.delete("/keys/{key_id}", status_code=204, responses=ERRORS)
def revoke_key(key_id: str, session: SessionDep, principal: AdminDep, request: Request) -> Response:
    """Revoke a key; every API process refuses it from the next request on."""
    row = auth.revoke_key(session, key_id, principal)
    record(request, session, principal, "key.revoke", None, row.id, name=row.name)
    return Response(status_code=204)


@router.get("/audit", responses=ERRORS)
def audit_log(
    session: SessionDep,
    principal: AdminDep,
    collection: Annotated[str | None, Query(max_length=48)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Page[AuditRead]:
    """Every change: who (key), what, when, from where. Newest first; a scoped admin sees its collections'."""
    rows, total = auth.list_audit(session, principal, offset, limit, collection, action)
    return Page[AuditRead](items=[AuditRead.model_validate(r, from_attributes=True) for r in rows], total=total)
