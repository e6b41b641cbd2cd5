"""API keys, principals and the audit log.

Keys are 256-bit random tokens shown once; the catalog keeps only their SHA-256 (a slow
password hash adds nothing for keys with this much entropy). Every request looks its
key up in the catalog, so a revocation takes effect at once in every API process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from core import catalog
from core.errors import Forbidden, NotFound, Unauthorized
from core.models import ApiKey, AuditEntry, utcnow

Role = Literal["admin", "writer", "reader"]
ROLE_RANK = {"reader": 0, "writer": 1, "admin": 2}
KEY_PREFIX = "rk_"
ENV_ADMIN_ID = "env-admin"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    role: Role
    collections: frozenset[str] | None  # None: every collection
    expires_at: datetime | None = None

    def sees(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections

    def covers(self, collections: Sequence[str] | Literal["*"]) -> bool:
        """Whether every collection of a key scoped to ``collections`` is within this key's scope."""
        if self.collections is None:
            return True
        return collections != "*" and "*" not in collections and set(collections) <= self.collections

    def at_least(self, role: Role) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]

    def require(self, role: Role, collection: str | None = None) -> None:
        """Raise 403 if the role is too low (the caller has already checked that the collection is visible)."""
        if not self.at_least(role):
            where = f" on collection {collection!r}" if collection else ""
            raise Forbidden(f"key {self.name!r} has role {self.role}; this needs {role}{where}")

    def require_global(self, what: str) -> None:
        """Raise 403 unless this is an admin key for every collection (creating collections needs one)."""
        self.require("admin")
        if self.collections is not None:
            raise Forbidden(f"key {self.name!r} is scoped to some collections; {what} needs an unscoped admin key")

    def check_can_create(
        self, role: Role, collections: Sequence[str] | Literal["*"], expires_at: datetime | None
    ) -> None:
        """Raise 403 unless a key with this role, scope and expiry is no wider than this key.

        A scoped admin administers its own collections only: it may hand out keys for them,
        never a key for another collection, an unscoped key, or one that outlives it.
        """
        self.require("admin")
        if not at_most(role, self.role):
            raise Forbidden(f"key {self.name!r} cannot create a key with role {role}")
        if not self.covers(collections):
            raise Forbidden(f"key {self.name!r} can only create keys for its own collections")
        if self.expires_at is not None and (expires_at is None or expires_at > self.expires_at):
            raise Forbidden(f"key {self.name!r} expires at {self.expires_at.isoformat()}; a key it creates must too")


def at_most(role: Role, ceiling: Role) -> bool:
    return ROLE_RANK[role] <= ROLE_RANK[ceiling]


ANONYMOUS_ADMIN = Principal("auth-disabled", "auth disabled", "admin", None)


def create_key(
    session: Session,
    name: str,
    role: Role,
    collections: Sequence[str] | Literal["*"],
    expires_at: datetime | None,
    created_by: str | None,
) -> tuple[ApiKey, str]:
    """Store a new key (hashed) and return it with the plaintext, which is never stored."""
    plaintext = new_key()
    row = ApiKey(
        name=name,
        role=role,
        collections=["*"] if collections == "*" else sorted(set(collections)),
        key_hash=key_hash(plaintext),
        prefix=plaintext[:10],
        expires_at=expires_at,
        created_by=created_by,
    )
    session.add(row)
    session.flush()
    return row, plaintext


def env_admin(presented: str | None, env_admin_key: str | None) -> Principal | None:
    """The environment's admin principal if ``presented`` is ``RAGKEEP_ADMIN_API_KEY``, else None (no I/O)."""
    if presented and env_admin_key and hmac.compare_digest(presented.encode(), env_admin_key.encode()):
        return Principal(ENV_ADMIN_ID, "RAGKEEP_ADMIN_API_KEY", "admin", None)
    return None


def authenticate(session: Session, presented: str | None, env_admin_key: str | None) -> Principal:
    """The principal for a bearer key; 401 for a missing, unknown, expired or revoked key."""
    if not presented:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    if admin := env_admin(presented, env_admin_key):
        return admin
    return authenticate_digest(session, key_hash(presented), None)


def authenticate_digest(session: Session, digest: str, env_admin_key: str | None) -> Principal:
    """The principal for a key known only by its SHA-256 (what a console session keeps); 401 as above."""
    if env_admin_key and hmac.compare_digest(digest, key_hash(env_admin_key)):
        return Principal(ENV_ADMIN_ID, "RAGKEEP_ADMIN_API_KEY", "admin", None)
    row = catalog.key_by_hash(session, digest)
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        raise Unauthorized("invalid API key")
    now = utcnow()
    if row.revoked_at is not None:
        raise Unauthorized("this API key was revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthorized("this API key has expired")
    role: Role = row.role  # type: ignore[assignment]
    scope = None if "*" in row.collections else frozenset(row.collections)
    return Principal(row.id, row.name, role, scope, row.expires_at)


def list_keys(session: Session, viewer: Principal) -> list[ApiKey]:
    """The keys ``viewer`` administers: every key for an unscoped admin, else those within its scope."""
    return [row for row in catalog.list_api_keys(session) if viewer.covers(row.collections)]


def revoke_key(session: Session, key_id: str, viewer: Principal) -> ApiKey:
    """Revoke a key that ``viewer`` administers (404, as if it did not exist, for any other)."""
    row = catalog.get_api_key(session, key_id)
    if row is None or not viewer.covers(row.collections):
        raise NotFound(f"API key {key_id!r} does not exist")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def has_admin_key(session: Session) -> bool:
    return catalog.active_admin_key_count(session) > 0


def audit(
    session: Session,
    principal: Principal,
    action: str,
    collection: str | None = None,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    client_ip: str | None = None,
) -> None:
    session.add(
        AuditEntry(
            key_id=principal.key_id,
            key_name=principal.name,
            action=action,
            collection=collection,
            target=target,
            detail=detail or {},
            client_ip=client_ip,
        )
    )


def list_audit(
    session: Session,
    viewer: Principal,
    offset: int,
    limit: int,
    collection: str | None = None,
    action: str | None = None,
) -> tuple[Sequence[AuditEntry], int]:
    """Audit rows ``viewer`` may read: all for an unscoped admin; else its collections' rows and its own."""
    return catalog.audit_entries(session, offset, limit, viewer.collections, viewer.key_id, collection, action)
