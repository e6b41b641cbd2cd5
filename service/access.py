"""Authorisation for routes: who may touch which collection, checked before the body is read.

Routes declare what they need as a dependency (``ReadableCollection``, ``WritableCollection``,
``AdministeredCollection``, ``AdminDep``, ``GlobalAdminDep``). ``GuardedRoute`` finds that
declaration and checks the key, its scope and its role *before* FastAPI reads and validates
the body: a reader that posts a malformed upload gets 403, not a 422 that tells it what the
route would accept, and an unauthenticated request gets 401 whatever its body.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session

from core import auth, catalog
from core.auth import Principal, Role
from core.errors import CollectionNotFound, NotFound
from core.models import Collection
from service.deps import PrincipalDep, SessionDep, get_principal


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


@dataclass(frozen=True)
class CollectionAccess:
    """Dependency: the collection named in the path, if the key may see it with ``role`` (404 / 403)."""

    role: Role

    def __call__(
        self, name: Annotated[str, Path(max_length=48)], session: SessionDep, principal: PrincipalDep
    ) -> Collection:
        collection = visible_collection(session, principal, name, self.role)
        # Hand the connection back before the route's own thread hop: a request holding one
        # while it waits for a thread can leave every thread waiting for a connection.
        session.commit()
        return collection


@dataclass(frozen=True)
class RoleRequired:
    """Dependency: the caller, if its key has ``role`` (and, with ``every_collection``, no scope)."""

    role: Role
    every_collection: bool = False
    what: str = "this"  # what needs an unscoped key, for the 403's message

    def __call__(self, principal: PrincipalDep) -> Principal:
        self.check(principal)
        return principal

    def check(self, principal: Principal) -> None:
        if self.every_collection:
            principal.require_global(self.what)
        else:
            principal.require(self.role)


ReadableCollection = Annotated[Collection, Depends(CollectionAccess("reader"))]
WritableCollection = Annotated[Collection, Depends(CollectionAccess("writer"))]
AdministeredCollection = Annotated[Collection, Depends(CollectionAccess("admin"))]
AdminDep = Annotated[Principal, Depends(RoleRequired("admin"))]
GlobalAdminDep = Annotated[
    Principal, Depends(RoleRequired("admin", every_collection=True, what="creating a collection"))
]


def dependency_calls(dependant: Dependant) -> list[Any]:
    """Every callable a route depends on, sub-dependencies included."""
    return [call for sub in dependant.dependencies for call in (sub.call, *dependency_calls(sub))]


def takes_key(dependant: Dependant) -> bool:
    """Whether a route authenticates its caller (every route but health and metrics)."""
    return get_principal in dependency_calls(dependant)


class GuardedRoute(APIRoute):
    """A route that authenticates and authorises before FastAPI reads the body.

    FastAPI parses and validates the body before it solves dependencies, so a check made
    in a dependency alone comes after a 422. This wrapper runs the same checks first; the
    dependencies then find the principal cached on the request and check again (cheaply).
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if not takes_key(self.dependant):
            return handler  # open routes (health, metrics)
        calls = dependency_calls(self.dependant)
        collection_role = next((c.role for c in calls if isinstance(c, CollectionAccess)), None)
        role_check = next((c for c in calls if isinstance(c, RoleRequired)), None)

        async def guarded(request: Request) -> Response:
            principal = await get_principal(request, request.app.state.ragkeep)
            name = request.path_params.get("name")
            if collection_role is not None and isinstance(name, str):
                check_visible(principal, name, collection_role)
            if role_check is not None:
                role_check.check(principal)
            return await handler(request)

        return guarded
