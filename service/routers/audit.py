"""The audit callback that ``release`` functions take, bound to one request's key and action."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.orm import Session

from core.auth import Principal
from release.dispatch import Audit
from service.access import record


def auditor(request: Request, session: Session, principal: Principal, action: str, collection: str | None) -> Audit:
    """``action`` on ``collection`` by this request's key, recorded in the session (committed with the change)."""

    def audit(target: str, **detail: object) -> None:
        record(request, session, principal, action, collection, target, **detail)

    return audit
