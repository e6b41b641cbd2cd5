"""FastAPI application factory."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import logs
from core.blobs import open_blob_store
from core.db import OVERLOAD_ERRORS, Database, create_schema, overloaded
from core.errors import RagkeepError, ServiceUnavailable, TooManyRequests, Unauthorized
from core.ratelimit import RateLimiter
from core.settings import Settings, get_settings
from service import metrics
from service.access import takes_key
from service.deps import AppState
from service.routers import (
    admin,
    collections,
    documents,
    evaluations,
    feedback,
    health,
    jobs,
    openai_compat,
    prompts,
    query,
    versions,
)
from service.schemas import ErrorBody
from service.ui import routes as console_routes
from workers.client import TaskClient

log = logging.getLogger(__name__)
access_log = logging.getLogger("ragkeep.access")
PROBES = frozenset({"/healthz", "/readyz", "/metrics"})  # logged at DEBUG: scraped every few seconds


def _error(status: int, name: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": name, "detail": detail}, headers=headers)


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:10]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


class RequestObserver:
    """Give the request an id (``X-Request-ID``, echoed back), log one access line with it, count it in metrics.

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` costs a task group and memory
    streams on every request. The id is set in a context variable that the endpoint, its
    thread and the tasks it enqueues all see.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = logs.new_request_id(Headers(scope=scope).get("x-request-id"))
        token = logs.request_id.set(request_id)
        started = time.perf_counter()
        status = 500

        async def tag(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        try:
            await self.app(scope, receive, tag)
        finally:
            path, method, client = scope["path"], scope["method"], scope.get("client")
            route = getattr(scope.get("route"), "path", None)  # set by the router once it has matched
            seconds = time.perf_counter() - started
            metrics.observe_request(method, route, status, seconds)
            access_log.log(
                logging.DEBUG if path in PROBES else logging.INFO,
                "%s %s %d",
                method,
                path,
                status,
                extra={
                    "method": method,
                    "path": path,
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 1),
                    "client": client[0] if client else None,
                },
            )
            logs.request_id.reset(token)


@dataclass(frozen=True)
class _Operation:
    path: str
    pattern: re.Pattern[str]
    methods: frozenset[str]
    takes_key: bool


def _operations(app: FastAPI) -> list[_Operation]:
    """The app's routes with their full paths, as FastAPI's included routers resolve them."""
    found = []
    for context in iter_route_contexts(app.routes):
        path, methods = context.path, context.methods
        if path is None or not methods:
            continue
        dependant = getattr(context.original_route, "dependant", None)
        keyed = dependant is not None and takes_key(dependant)
        found.append(_Operation(path, compile_path(path)[0], frozenset(methods), keyed))
    return found


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route serves at this path (Starlette's 405 names only the first route's)."""
    methods = {m for op in _operations(app) if op.pattern.match(path) for m in op.methods}
    return sorted(methods | {"OPTIONS"})


def _document_errors(app: FastAPI, max_top_k: int) -> dict[str, Any]:
    """The OpenAPI document, saying what the API really sends when it refuses a request.

    Every error body is ``{"error", "detail"}`` (FastAPI would declare its own 422 shape); every
    route that takes a key may answer 401, 403 and 429; one that can be refused for its body or
    parameters, 422; and any route that reads the catalog, 503 when it is overloaded.
    """
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorBody"] = ErrorBody.model_json_schema()
    for component in components.values():
        for option in component.get("properties", {}).get("top_k", {}).get("anyOf", []):
            if option.get("type") == "integer":
                option["maximum"] = max_top_k
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    error = {
        "description": "Error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    guarded = {(method.lower(), op.path): op.takes_key for op in _operations(app) for method in op.methods}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            codes = {"422", "503"}
            if guarded.get((method, path)):
                codes |= {"401", "403", "429"}
            for code in codes:
                responses[code] = error
    app.openapi_schema = schema
    return schema


def serve_app() -> FastAPI:
    """The app as ``ragkeep api`` serves it: logging configured from the settings first."""
    settings = get_settings()
    logs.configure(settings.log_format, settings.log_level)
    return create_app(settings)


def _lifespan(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Open the catalog, blob store, task client and metrics when the app starts; close them when it stops."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.resolved_database_url)
        create_schema(db.engine)
        tasks = TaskClient(settings)
        state = AppState(
            settings=settings,
            db=db,
            blobs=open_blob_store(settings),
            tasks=tasks,
            limiter=RateLimiter(settings.limits.requests_per_minute, settings.redis_url),
            registry=metrics.build_registry(db, tasks.queue_depths),
        )
        app.state.ragkeep = state
        if settings.auth == "disabled":
            log.warning("RAGKEEP_AUTH=disabled: every request is treated as admin. Never expose this API.")
        if settings.query.warm_on_start:
            # In the background: the API answers health checks and uploads while the model loads.
            threading.Thread(target=state.warm_up, name="ragkeep-warm-up", daemon=True).start()
        try:
            yield
        finally:
            if state.engine_loaded:
                state.query_engine.close()  # writes the queued query-log rows
            state.tasks.close()
            db.dispose()

    return lifespan


async def _ragkeep_error(_: Request, exc: RagkeepError) -> JSONResponse:
    headers = None
    if isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, TooManyRequests | ServiceUnavailable):
        headers = {"Retry-After": str(exc.retry_after)}
    return _error(exc.status_code, type(exc).__name__, exc.detail, headers)


async def _catalog_error(request: Request, exc: Exception) -> JSONResponse:
    """An overloaded catalog (no free connection, a lock not granted in time) is a 503, not a 500."""
    unavailable = overloaded(exc)
    if unavailable is None:
        return await _unexpected_error(request, exc)
    log.warning("catalog overloaded: %s", exc)
    return await _ragkeep_error(request, unavailable)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    return _error(422, "InvalidInput", _validation_detail(exc))


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code == 400:
        # FastAPI's "There was an error parsing the body": JSON nested past the parser's
        # stack, bytes that are not UTF-8, a broken multipart body. Like any invalid body: 422.
        return _error(
            422, "InvalidInput", "the request body could not be parsed (malformed, not UTF-8, or nested too deeply)"
        )
    if exc.status_code == 405:
        allow = ", ".join(_allowed_methods(request.app, request.url.path))
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={"Allow": allow})
        return _error(405, "MethodNotAllowed", f"{request.method} is not allowed here; use {allow}", {"Allow": allow})
    name = {404: "NotFound"}.get(exc.status_code, "HTTPError")
    return _error(exc.status_code, name, str(exc.detail), getattr(exc, "headers", None))


async def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error")
    return _error(500, "InternalError", "an unexpected error occurred; it has been logged")


def _add_error_handlers(app: FastAPI) -> None:
    """Every error answers with ``ErrorBody``: the right status, a readable reason, nothing internal."""
    app.exception_handler(RagkeepError)(_ragkeep_error)
    for overload in OVERLOAD_ERRORS:
        app.exception_handler(overload)(_catalog_error)
    app.exception_handler(RequestValidationError)(_validation_error)
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.exception_handler(Exception)(_unexpected_error)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="ragkeep",
        summary="Versioned, evaluated knowledge bases for RAG applications.",
        version="0.1.0",
        lifespan=_lifespan(settings),
    )

    app.add_middleware(RequestObserver)
    _add_error_handlers(app)
    app.openapi = lambda: _document_errors(app, settings.query.max_top_k)  # type: ignore[method-assign]

    for router in (
        health.router,
        collections.router,
        documents.router,
        versions.router,
        jobs.router,
        query.router,
        openai_compat.router,
        evaluations.router,
        admin.router,
        feedback.router,
        prompts.router,
        console_routes.router,
    ):
        app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=console_routes.STATIC), name="console-static")
    return app
