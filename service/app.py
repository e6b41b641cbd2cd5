"""FastAPI application factory."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.blobs import BlobStore
from core.db import Database, create_schema
from core.errors import RagkeepError, TooManyRequests, Unauthorized
from core.ratelimit import RateLimiter
from core.settings import Settings, get_settings
from service import metrics
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
from workers.client import TaskClient

log = logging.getLogger(__name__)


def _error(status: int, name: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": name, "detail": detail}, headers=headers)


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:10]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.resolved_database_url)
        create_schema(db.engine)
        state = AppState(
            settings=settings,
            db=db,
            blobs=BlobStore(settings.blob_dir),
            tasks=TaskClient(settings),
            limiter=RateLimiter(settings.limits.requests_per_minute, settings.redis_url),
            registry=metrics.build_registry(db),
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
            state.tasks.close()
            db.dispose()

    app = FastAPI(
        title="ragkeep",
        summary="Versioned, evaluated knowledge bases for RAG applications.",
        version="0.1.0",
        lifespan=lifespan,
    )

    app.middleware("http")(metrics.middleware)

    @app.exception_handler(RagkeepError)
    async def ragkeep_error(_: Request, exc: RagkeepError) -> JSONResponse:
        headers = None
        if isinstance(exc, Unauthorized):
            headers = {"WWW-Authenticate": "Bearer"}
        elif isinstance(exc, TooManyRequests):
            headers = {"Retry-After": str(exc.retry_after)}
        return _error(exc.status_code, type(exc).__name__, exc.detail, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "InvalidInput", _validation_detail(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        name = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
        return _error(exc.status_code, name, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _error(500, "InternalError", "an unexpected error occurred; it has been logged")

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
    ):
        app.include_router(router)
    return app
