"""Liveness and readiness."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from core import chroma
from core.db import ping
from service import metrics
from service.access import GuardedRoute
from service.deps import StateDep

router = APIRouter(tags=["health"], route_class=GuardedRoute)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    # Async: answered on the event loop, so a thread pool busy with catalog calls never delays it.
    return {"status": "ok"}


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def prometheus_metrics(state: StateDep) -> Response:
    """Prometheus metrics (no key needed, like the health checks)."""
    return metrics.render(state.registry)


@router.get("/readyz", responses={503: {"description": "a dependency is unreachable"}})
def readyz(state: StateDep) -> Any:
    """Catalog, broker, Chroma and the blob store are reachable."""

    def catalog() -> None:
        ping(state.db.engine)

    def chroma_server() -> None:
        chroma.heartbeat(state.chroma)

    probes: dict[str, Callable[[], None]] = {
        "catalog": catalog,
        "broker": state.tasks.ping,
        "chroma": chroma_server,
        "blobs": state.blobs.ping,
    }
    checks: dict[str, str] = {}
    for name, check in probes.items():
        try:
            check()
            checks[name] = "ok"
        except Exception as exc:  # any failure means "not ready"; report it, don't raise
            checks[name] = f"unreachable: {type(exc).__name__}: {str(exc)[:200]}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        status_code=200 if ready else 503, content={"status": "ready" if ready else "not ready", "checks": checks}
    )
