"""Versioned prompt templates per collection; `config.prompt_revision` pins the one in use."""

from __future__ import annotations

from fastapi import APIRouter, Request

from core import catalog
from service.access import record, visible_collection
from service.deps import PrincipalDep, SessionDep
from service.schemas import Page, PromptCreate, PromptRead, error_responses

router = APIRouter(prefix="/collections/{name}/prompts", tags=["prompts"])
ERRORS = error_responses(401, 403, 404, 422, 429)


@router.post("", status_code=201, responses=ERRORS)
def create_prompt(
    name: str, body: PromptCreate, session: SessionDep, principal: PrincipalDep, request: Request
) -> PromptRead:
    """Store a new prompt revision (it is used once `config.prompt_revision` pins it)."""
    collection = visible_collection(session, principal, name, "writer")
    row = catalog.create_prompt(session, collection, body.template, body.note, principal.key_id)
    record(request, session, principal, "prompt.create", name, str(row.revision))
    return PromptRead.model_validate(row, from_attributes=True)


@router.get("", responses=ERRORS)
def list_prompts(name: str, session: SessionDep, principal: PrincipalDep) -> Page[PromptRead]:
    """Prompt revisions, newest first."""
    rows = catalog.list_prompts(session, visible_collection(session, principal, name))
    return Page[PromptRead](items=[PromptRead.model_validate(r, from_attributes=True) for r in rows], total=len(rows))
