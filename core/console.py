"""Web console sessions: an API key pasted once becomes a server-side session.

The browser keeps a random token in an ``HttpOnly`` cookie; the catalog keeps the token's
SHA-256, the SHA-256 of the key it signed in with, and the session's CSRF token. Each
request checks the key again (``auth.authenticate_digest``), so a revoked or expired key
ends its sessions at once, in every API process, exactly as it ends its bearer requests.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from core import auth, catalog
from core.auth import ANONYMOUS_ADMIN, Principal
from core.errors import Forbidden, Unauthorized
from core.models import ConsoleSession, utcnow


@dataclass(frozen=True)
class SignedIn:
    """A live console session: who it acts as, and the token its forms must carry."""

    principal: Principal
    csrf_token: str
    expires_at: datetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def sign_in(
    session: Session, presented: str, env_admin_key: str | None, hours: int, auth_enabled: bool = True
) -> tuple[str, SignedIn]:
    """Check ``presented`` like a bearer key (401 if it is not valid) and open a session for it.

    Returns the cookie's token (never stored) and the session. It ends after ``hours`` or when
    the key expires, whichever is first.
    """
    # RAGKEEP_AUTH=disabled: every request is admin, as in the REST API (whatever was typed).
    principal = auth.authenticate(session, presented.strip(), env_admin_key) if auth_enabled else ANONYMOUS_ADMIN
    now = utcnow()
    catalog.delete_expired_console_sessions(session, now)
    expires_at = now + timedelta(hours=hours)
    if principal.expires_at is not None:
        expires_at = min(expires_at, principal.expires_at)
    token = secrets.token_urlsafe(32)
    row = ConsoleSession(
        id=_digest(token),
        key_hash=auth.key_hash(presented.strip()),
        key_id=principal.key_id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=expires_at,
    )
    catalog.add_console_session(session, row)
    return token, SignedIn(principal, row.csrf_token, expires_at)


def resolve(session: Session, token: str | None, env_admin_key: str | None, auth_enabled: bool = True) -> SignedIn:
    """The session behind a cookie's token; 401 when there is none, it expired, or its key no longer works."""
    if not token:
        raise Unauthorized("not signed in")
    row = catalog.get_console_session(session, _digest(token))
    if row is None:
        raise Unauthorized("this session has ended; sign in again")
    if row.expires_at <= utcnow():
        catalog.delete_console_session(session, row.id)
        raise Unauthorized("this session has expired; sign in again")
    if not auth_enabled:
        return SignedIn(ANONYMOUS_ADMIN, row.csrf_token, row.expires_at)
    try:
        principal = auth.authenticate_digest(session, row.key_hash, env_admin_key)
    except Unauthorized:
        catalog.delete_console_session(session, row.id)  # revoked or expired key: its sessions end with it
        raise
    return SignedIn(principal, row.csrf_token, row.expires_at)


def sign_out(session: Session, token: str | None) -> None:
    if token:
        catalog.delete_console_session(session, _digest(token))


def check_csrf(signed_in: SignedIn, presented: str | None) -> None:
    """403 unless a form (or an htmx request's header) carries this session's CSRF token."""
    if not presented or not hmac.compare_digest(presented.encode(), signed_in.csrf_token.encode()):
        raise Forbidden("missing or wrong CSRF token: reload the page and try again")
