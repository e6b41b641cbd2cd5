"""FastAPI dependencies: typed access to the per-process state built in the lifespan."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session

from core import catalog, chroma
from core.auth import ANONYMOUS_ADMIN, Principal, authenticate, env_admin
from core.blobs import BlobStore
from core.chroma import ChromaClient
from core.config import DEFAULT_EMBEDDING_MODEL
from core.db import Database
from core.ratelimit import RateLimiter
from core.settings import Settings
from query.engine import QueryEngine
from workers.client import TaskClient


@dataclass
class AppState:
    settings: Settings
    db: Database
    blobs: BlobStore
    tasks: TaskClient
    limiter: RateLimiter
    registry: CollectorRegistry
    _engine: QueryEngine | None = None
    _engine_lock: threading.Lock = field(default_factory=threading.Lock)

    @cached_property
    def chroma(self) -> ChromaClient:
        return chroma.connect(self.settings.resolved_chroma_url)

    @property
    def engine_loaded(self) -> bool:
        return self._engine is not None

    @property
    def query_engine(self) -> QueryEngine:
        """Built on first use: loading the embedding model takes seconds and is not needed for uploads."""
        with self._engine_lock:
            if self._engine is None:
                self._engine = QueryEngine(self.settings, self.db, self.blobs, self.chroma)
            return self._engine

    def flush_query_log(self) -> None:
        """Wait until this process's answered queries are in the query log (readers call it first)."""
        if self.engine_loaded:
            self.query_engine.query_log.flush()

    def warm_up(self) -> None:
        """Load the embedding models that live versions answer with (the default one if none)."""
        try:
            with self.db.session() as session:
                models = catalog.live_embedding_models(session) or [DEFAULT_EMBEDDING_MODEL]
            for model in models:
                self.query_engine.embedder(model).warm_up()
        except Exception:  # a failed warm-up only means the first query loads the model
            logging.getLogger(__name__).exception("warming up the query engine failed")


# Dependencies that do no I/O are ``async``: FastAPI runs a sync one in its thread pool, and
# each such hop costs a /query tens of microseconds of thread hand-off for nothing.


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.ragkeep
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    with state.db.session() as session:
        yield session


# scope="function": the session commits before the response is sent, so a client that got
# 2xx for a write reads it back at once (FastAPI's default would commit after sending).
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def get_settings_dep(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def get_engine(state: StateDep) -> QueryEngine:
    if state.engine_loaded:
        return state.query_engine
    return await run_in_threadpool(lambda: state.query_engine)  # loads the model: seconds, off the event loop


EngineDep = Annotated[QueryEngine, Depends(get_engine)]


async def get_principal(request: Request, state: StateDep) -> Principal:
    """The caller, from ``Authorization: Bearer <key>`` (checked against the catalog on every request).

    Async, so that a request with the environment's admin key (or with auth disabled) and
    an in-process rate limit costs no thread hand-off; a key kept in the catalog, or a
    rate limit counted in Redis, is checked in the thread pool.
    """
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:  # authenticated already by the route's guard (service.access.GuardedRoute)
        return cached
    principal = await _principal(request, state)
    request.state.principal = principal
    return principal


async def _principal(request: Request, state: AppState) -> Principal:
    if state.settings.auth == "disabled":
        return ANONYMOUS_ADMIN
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    presented = token.strip() if scheme.lower() == "bearer" else ""
    principal = env_admin(presented, state.settings.admin_api_key)
    if principal is None or state.limiter.does_io:
        return await run_in_threadpool(_authenticate, state, presented)
    state.limiter.check(principal.key_id)
    return principal


def _authenticate(state: AppState, presented: str) -> Principal:
    # The key is looked up in a session of its own, so a route that needs no other catalog
    # access (``/query``) holds no session while it answers.
    with state.db.session() as session:  # connects only when the key is not the environment's admin key
        principal = authenticate(session, presented, state.settings.admin_api_key)
    state.limiter.check(principal.key_id)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
