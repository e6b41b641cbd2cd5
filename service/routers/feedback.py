"""User feedback on answers, and growing the golden set from it (a person picks the feedback)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from core import catalog
from core.models import Collection, Feedback, QueryLog
from eval import goldensets
from service.access import GuardedRoute, ReadableCollection, WritableCollection, ensure_visible, record
from service.deps import PrincipalDep, SessionDep, StateDep
from service.schemas import (
    FeedbackCreate,
    FeedbackRead,
    GoldenFromFeedback,
    GoldenSetRead,
    Offset,
    Page,
    error_responses,
)

router = APIRouter(tags=["feedback"], route_class=GuardedRoute)
ERRORS = error_responses(401, 403, 404, 422, 429)


def _read(feedback: Feedback, query: QueryLog, collection: Collection) -> FeedbackRead:
    return FeedbackRead(
        id=feedback.id,
        query_id=query.id,
        collection=collection.name,
        rating=feedback.rating,
        comment=feedback.comment,
        expected_answer=feedback.expected_answer,
        answerable=feedback.answerable,
        question=query.question,
        answer=query.answer,
        version=query.version_number,
        created_at=feedback.created_at,
    )


@router.post("/feedback", status_code=201, responses=ERRORS)
def give_feedback(
    body: FeedbackCreate, session: SessionDep, principal: PrincipalDep, state: StateDep, request: Request
) -> FeedbackRead:
    """Rate an answer (up/down), optionally with a comment and the answer that was expected."""
    state.flush_query_log()  # an answer of this process may be a few milliseconds from the log
    query = catalog.get_query(session, body.query_id)
    ensure_visible(session, principal, query.collection_id, catalog.query_missing(body.query_id))
    feedback = catalog.add_feedback(
        session, query, body.rating, body.comment, body.expected_answer, principal.key_id, body.answerable
    )
    collection = catalog.get_collection_by_id(session, query.collection_id)
    assert collection is not None
    record(request, session, principal, "feedback.create", collection.name, feedback.id, rating=body.rating)
    return _read(feedback, query, collection)


@router.get("/collections/{name}/feedback", responses=ERRORS)
def list_feedback(
    collection: ReadableCollection,
    session: SessionDep,
    rating: Annotated[Literal["up", "down"] | None, Query()] = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[FeedbackRead]:
    """Feedback on the collection's answers, newest first."""
    rows, total = catalog.list_feedback(session, collection, rating, offset, limit)
    return Page[FeedbackRead](items=[_read(f, q, collection) for f, q in rows], total=total)


@router.post("/collections/{name}/goldensets/from-feedback", status_code=201, responses=ERRORS)
def golden_set_from_feedback(
    collection: WritableCollection,
    body: GoldenFromFeedback,
    session: SessionDep,
    principal: PrincipalDep,
    request: Request,
) -> GoldenSetRead:
    """A new golden-set revision: the base revision's questions plus the chosen feedback (expected answers, or gaps)."""
    golden, base = goldensets.from_feedback(session, collection, list(body.feedback_ids), body.base_revision)
    record(
        request,
        session,
        principal,
        "goldenset.from_feedback",
        collection.name,
        str(golden.revision),
        feedback=list(body.feedback_ids),
        base_revision=base.revision if base else None,
    )
    return GoldenSetRead.model_validate(golden, from_attributes=True)
