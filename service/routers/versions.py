"""Versions: list, read, build, publish, roll back."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from core import catalog
from release import builds, publish
from service.access import GuardedRoute, ReadableCollection, WritableCollection
from service.deps import PrincipalDep, SessionDep, StateDep
from service.mappers import version_read
from service.routers.audit import auditor
from service.schemas import MAX_INT, BuildAccepted, Offset, Page, VersionRead, error_responses

router = APIRouter(prefix="/collections/{name}", tags=["versions"], route_class=GuardedRoute)
ERRORS = error_responses(404, 409, 410, 422)
VersionNumber = Annotated[int, Path(ge=1, le=MAX_INT)]


@router.get("/versions", responses=ERRORS)
def list_versions(
    collection: ReadableCollection,
    session: SessionDep,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[VersionRead]:
    """List versions, newest first."""
    items, total = catalog.list_versions(session, collection, offset, limit)
    return Page[VersionRead](items=[version_read(v) for v in items], total=total)


@router.get("/versions/{number}", responses=ERRORS)
def get_version(collection: ReadableCollection, number: VersionNumber, session: SessionDep) -> VersionRead:
    """Read one version: state, counts, config and what changed against the previous one."""
    return version_read(catalog.get_version(session, collection, number))


@router.post("/versions", status_code=202, responses=ERRORS)
def build_version(
    collection: WritableCollection, session: SessionDep, state: StateDep, principal: PrincipalDep, request: Request
) -> BuildAccepted:
    """Build a new version from the current documents (even if nothing changed)."""
    audit = auditor(request, session, principal, "versions.build", collection.name)
    return BuildAccepted(job_id=builds.start_manual_build(session, collection, state.tasks.enqueue, audit).id)


@router.post("/versions/{number}/publish", responses=ERRORS)
def publish_version(
    collection: WritableCollection,
    number: VersionNumber,
    session: SessionDep,
    principal: PrincipalDep,
    request: Request,
) -> VersionRead:
    """Make a ready (or archived, still kept) version live; the current live version is archived."""
    audit = auditor(request, session, principal, "versions.publish", collection.name)
    return version_read(publish.publish(session, collection, number, audit))  # committed in this thread


@router.post("/rollback", responses=ERRORS)
def rollback(
    collection: WritableCollection, session: SessionDep, principal: PrincipalDep, request: Request
) -> VersionRead:
    """Make the version that was live before the current one live again."""
    audit = auditor(request, session, principal, "versions.rollback", collection.name)
    return version_read(publish.rollback(session, collection, audit))  # committed in this thread
