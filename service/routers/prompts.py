"""Versioned prompt templates per collection; `config.prompt_revision` pins the one in use."""

from __future__ import annotations

from fastapi import APIRouter, Request

from core import catalog
from service.access import GuardedRoute, ReadableCollection, WritableCollection, record
from service.deps import PrincipalDep, SessionDep
from service.schemas import Page, PromptCreate, PromptRead, error_responses

router = APIRouter(prefix="/collections/{name}/prompts", tags=["prompts"], route_class=GuardedRoute)
ERRORS = error_responses(401, 403, 404, 422, 429)


@router.post("", status_code=201, responses=ERRORS)
def create_prompt(
    collection: WritableCollection, body: PromptCreate, session: SessionDep, principal: PrincipalDep, request: Request
) -> PromptRead:
    """Store a new prompt revision (it is used once `config.prompt_revision` pins it)."""
    row = catalog.create_prompt(session, collection, body.template, body.note, principal.key_id)
    record(request, session, principal, "prompt.create", collection.name, str(row.revision))
    return PromptRead.model_validate(row, from_attributes=True)


@router.get("", responses=ERRORS)
def list_prompts(collection: ReadableCollection, session: SessionDep) -> Page[PromptRead]:
    """Prompt revisions, newest first."""
    rows = catalog.list_prompts(session, collection)
    return Page[PromptRead](items=[PromptRead.model_validate(r, from_attributes=True) for r in rows], total=len(rows))
