"""POST /query: grounded answers with citations from a collection's live (or pinned) version."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response, StreamingResponse

from query.engine import QueryRequest, QueryResult
from service import metrics
from service.access import GuardedRoute, check_visible
from service.deps import EngineDep, PrincipalDep
from service.schemas import QueryCreate, QueryRead, error_responses

router = APIRouter(tags=["query"], route_class=GuardedRoute)


def query_read(result: QueryResult) -> QueryRead:
    """The response body of a finished query; also counts it in the Prometheus metrics (once per query)."""
    metrics.observe_query(
        result.collection,
        result.answer_mode,
        result.model,
        result.usage,
        result.latency_ms,
        len(result.grounding.unsupported),
    )
    return QueryRead.model_validate(result, from_attributes=True)  # reads the dataclasses without copying them


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.post(
    "/query",
    response_model=QueryRead,
    responses={
        **error_responses(404, 409, 410, 422),
        200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE when stream is true"},
    },
)
def query(body: QueryCreate, engine: EngineDep, principal: PrincipalDep) -> Any:
    """Answer a question from the collection's live version (or the pinned one), with citations."""
    check_visible(principal, body.collection)  # the engine reads the collection (404 if missing)
    request = QueryRequest(
        client=principal.key_id,
        collection=body.collection,
        question=body.question,
        top_k=body.top_k,
        version=body.version,
        filters=body.filters,
        mode=body.mode,
    )
    if not body.stream:
        # Serialised here, once: returned as a model, FastAPI would dump it to a dict, validate
        # that against the response model again and only then encode it.
        return Response(query_read(engine.query(request)).model_dump_json(), media_type="application/json")
    events = engine.stream(request)
    first = next(events)  # resolves and retrieves now, so a bad request still gets its 4xx status

    def render() -> Iterator[str]:
        for kind, payload in itertools.chain([first], events):
            if kind == "token":
                yield _sse("token", {"text": payload})
            else:
                yield _sse("done", query_read(payload).model_dump(mode="json"))

    return StreamingResponse(render(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
