"""OpenAI-compatible chat API: any OpenAI SDK client can use a collection as its "model".

``model`` is the collection name, or ``name@N`` to pin version N. The last user message
is the question; earlier messages are passed to the LLM as conversation context.
Citations come back in the extra ``citations`` field, each answer sentence's support in the extra
``grounding`` field, and the answer mode (``abstained`` when declined), ``confidence`` and its
``evidence`` in ``ragkeep`` (all in the last stream chunk when streaming).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from core import catalog
from core.errors import InvalidInput
from query.engine import QueryRequest, QueryResult
from service.access import GuardedRoute, check_visible
from service.deps import EngineDep, PrincipalDep, SessionDep
from service.routers.query import query_read
from service.schemas import TopK, error_responses

router = APIRouter(prefix="/v1", tags=["openai-compatible"], route_class=GuardedRoute)


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionCreate(BaseModel):
    # OpenAI clients send many optional knobs (temperature, user, ...): accepted and ignored.
    model_config = ConfigDict(extra="allow")

    # The pattern and `contains` are stated in the OpenAPI document only; _request refuses the
    # same requests with messages that say which rule they broke.
    model: Annotated[
        str,
        Field(
            min_length=3,
            max_length=60,
            json_schema_extra={"pattern": r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])(?:@[1-9][0-9]{0,8})?$"},
            description="A collection name; `name@N` pins version N.",
        ),
    ]
    messages: Annotated[
        list[ChatMessage],
        Field(
            min_length=1,
            max_length=200,
            json_schema_extra={
                "contains": {
                    "type": "object",
                    "required": ["role", "content"],
                    "properties": {"role": {"const": "user"}, "content": {"type": "string", "pattern": r"\S"}},
                }
            },
            description="The question is the last user message with text (at most 4000 characters).",
        ),
    ]
    stream: bool = False
    stream_options: StreamOptions | None = None
    top_k: TopK | None = None


def _parse_model(model: str) -> tuple[str, int | None]:
    name, _, pinned = model.partition("@")
    if not pinned:
        return name, None
    if not pinned.isdigit() or int(pinned) < 1:
        raise InvalidInput(f"model {model!r}: use '<collection>' or '<collection>@<version number>'")
    return name, int(pinned)


def _request(body: ChatCompletionCreate, client: str) -> QueryRequest:
    users = [i for i, m in enumerate(body.messages) if m.role == "user" and m.text().strip()]
    if not users:
        raise InvalidInput("messages must contain a user message with text")
    last = users[-1]
    question = body.messages[last].text().strip()
    if len(question) > 4000:
        raise InvalidInput("the question (last user message) may be at most 4000 characters")
    history = [
        (m.role if m.role in ("user", "assistant", "system") else "user", m.text())
        for m in body.messages[:last]
        if m.text().strip()
    ]
    name, version = _parse_model(body.model)
    return QueryRequest(
        collection=name, question=question, top_k=body.top_k, version=version, history=history, client=client
    )


def _usage(result: QueryResult) -> dict[str, int]:
    prompt, completion = result.usage["prompt_tokens"], result.usage["completion_tokens"]
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _extras(result: QueryResult) -> dict[str, Any]:
    read = query_read(result).model_dump(mode="json")
    return {
        "citations": read["citations"],
        "grounding": read["grounding"],
        "ragkeep": {
            key: read[key]
            for key in (
                "query_id",
                "collection",
                "version",
                "answer_mode",
                "warnings",
                "latency_ms",
                "usage",
                "confidence",
                "evidence",
            )
        },
    }


@router.get("/models")
def list_models(session: SessionDep, principal: PrincipalDep) -> dict[str, Any]:
    """Collections as models (pin a version with `name@N`)."""
    items, _ = catalog.list_collections(session, 0, 10_000, principal.collections)
    return {
        "object": "list",
        "data": [
            {"id": c.name, "object": "model", "created": int(c.created_at.timestamp()), "owned_by": "ragkeep"}
            for c in items
        ],
    }


def _completion(result: QueryResult, model: str, created: int) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{result.query_id}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.answer},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": _usage(result),
        **_extras(result),
    }


def _chunk(stream_id: str, model: str, created: int, delta: dict[str, Any], finish: str | None, **extra: Any) -> str:
    payload = {
        "id": stream_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        **extra,
    }
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _stream(events: Iterator[tuple[str, Any]], model: str, created: int, include_usage: bool) -> Iterator[str]:
    """The engine's events as OpenAI's server-sent chunks."""
    stream_id = f"chatcmpl-{int(time.time() * 1000)}"
    yield _chunk(stream_id, model, created, {"role": "assistant", "content": ""}, None)
    streamed: list[str] = []
    for kind, payload in events:
        if kind == "token":
            streamed.append(payload)
            yield _chunk(stream_id, model, created, {"content": payload}, None)
            continue
        result: QueryResult = payload
        if "".join(streamed).strip() != result.answer.strip():
            # The LLM failed mid-stream and the answer fell back: send the final text.
            yield _chunk(stream_id, model, created, {"content": ("\n\n" if streamed else "") + result.answer}, None)
        yield _chunk(stream_id, model, created, {}, "stop", **_extras(result))
        if include_usage:
            usage = {
                "id": stream_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": _usage(result),
            }
            yield f"data: {json.dumps(usage)}\n\n"
    yield "data: [DONE]\n\n"


@router.post("/chat/completions", responses=error_responses(404, 409, 410, 422))
def chat_completions(body: ChatCompletionCreate, engine: EngineDep, principal: PrincipalDep) -> Any:
    """Chat completion over a collection, in OpenAI's format (streaming and not)."""
    request = _request(body, client=principal.key_id)
    check_visible(principal, request.collection)  # the engine reads the collection (404 if missing)
    created = int(time.time())
    if not body.stream:
        return _completion(engine.query(request), body.model, created)
    events = engine.stream(request)
    first = next(events)  # errors (unknown collection, no live version) keep their HTTP status
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return StreamingResponse(
        _stream(itertools.chain([first], events), body.model, created, include_usage),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )
