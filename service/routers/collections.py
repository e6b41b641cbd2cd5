"""Collections: create, list, read, update, delete."""

from __future__ import annotations

import re
from datetime import date
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BeforeValidator

from core import catalog
from core import chroma as chroma_access
from release import collections
from service.access import (
    AdministeredCollection,
    GlobalAdminDep,
    GuardedRoute,
    ReadableCollection,
    WritableCollection,
    record,
)
from service.deps import PrincipalDep, SessionDep, StateDep
from service.mappers import collection_read
from service.routers.audit import auditor
from service.schemas import (
    CollectionCreate,
    CollectionRead,
    CollectionUpdate,
    Offset,
    Page,
    UsageRead,
    error_responses,
)


def _iso_day(value: object) -> object:
    """Only ``YYYY-MM-DD``: pydantic would also read ``0`` as a Unix time (1970-01-01)."""
    if isinstance(value, str) and not ISO_DAY.fullmatch(value):
        raise ValueError("must be a date as YYYY-MM-DD")
    return value


ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
IsoDay = Annotated[date, BeforeValidator(_iso_day)]

router = APIRouter(prefix="/collections", tags=["collections"], route_class=GuardedRoute)
ERRORS = error_responses(404, 409, 422)


@router.post("", status_code=201, responses=ERRORS)
def create_collection(
    body: CollectionCreate, session: SessionDep, principal: GlobalAdminDep, request: Request
) -> CollectionRead:
    """Create a collection (an admin key for every collection)."""
    collection = catalog.create_collection(session, body.name, body.description, list(body.owners), body.config)
    record(request, session, principal, "collection.create", body.name, body.name)
    return collection_read(session, collection)


@router.get("")
def list_collections(
    session: SessionDep,
    principal: PrincipalDep,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[CollectionRead]:
    """List collections by name."""
    items, total = catalog.list_collections(session, offset, limit, principal.collections)
    return Page[CollectionRead](items=[collection_read(session, c) for c in items], total=total)


@router.get("/{name}", responses=ERRORS)
def get_collection(collection: ReadableCollection, session: SessionDep) -> CollectionRead:
    """Read one collection."""
    return collection_read(session, collection)


@router.patch("/{name}", responses=ERRORS)
def update_collection(
    collection: WritableCollection,
    body: CollectionUpdate,
    session: SessionDep,
    principal: PrincipalDep,
    request: Request,
) -> CollectionRead:
    """Change description, owners or config (writer; a new ingestion config applies from the next build)."""
    audit = auditor(request, session, principal, "collection.update", collection.name)
    collections.update(session, collection, body.description, body.owners, body.config, audit)
    return collection_read(session, collection)


@router.delete("/{name}", status_code=204, responses=ERRORS)
def delete_collection(
    collection: AdministeredCollection, session: SessionDep, state: StateDep, principal: PrincipalDep, request: Request
) -> Response:
    """Delete a collection with its documents, versions, Chroma collections and blobs (admin)."""
    # Its queries answered here go into the log first, to be deleted with it (and not refused
    # later for a missing collection). Before this session writes: the log's writer needs the catalog.
    state.flush_query_log()
    audit = auditor(request, session, principal, "collection.delete", collection.name)
    collections.delete(session, collection, partial(chroma_access.drop_collection, state.chroma), state.blobs, audit)
    return Response(status_code=204)


@router.get("/{name}/usage", responses=ERRORS)
def usage(
    collection: ReadableCollection,
    session: SessionDep,
    state: StateDep,
    start: Annotated[
        IsoDay | None, Query(alias="from", description="First day (UTC), default 30 days before 'to'.")
    ] = None,
    end: Annotated[IsoDay | None, Query(alias="to", description="Last day (UTC, inclusive), default today.")] = None,
) -> UsageRead:
    """Queries, tokens and estimated cost per day and model."""
    state.flush_query_log()  # this process's latest answers count
    return UsageRead.model_validate(collections.usage(session, collection, start, end), from_attributes=True)
