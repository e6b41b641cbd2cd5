"""The console's plumbing: signed-in sessions, CSRF, rendering, and errors as pages.

Every console route runs as a ``ConsoleRoute``: a ``RagkeepError`` (the same 403, 404, 409 …
the REST routes raise, from the same library functions) becomes an HTML page with that status;
a request without a live session is sent to the sign-in page. Pages carry a Content-Security-
Policy that allows scripts and styles from this origin only (no inline script, no CDN).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from core import console
from core.auth import Role
from core.console import SignedIn
from core.errors import RagkeepError, Unauthorized
from core.models import Collection
from service.access import check_visible, dependency_calls, visible_collection
from service.deps import SessionDep, StateDep

log = logging.getLogger(__name__)
HERE = FilePath(__file__).parent
COOKIE = "rk_console"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
templates = Jinja2Templates(directory=HERE / "templates")  # autoescape on for .html


def render(request: Request, template: str, context: Mapping[str, Any], status_code: int = 200) -> HTMLResponse:
    """A page (or, for an htmx request, the fragment the template renders for it), with the console's headers."""
    signed_in: SignedIn | None = getattr(request.state, "console", None)
    base = {"me": signed_in.principal if signed_in else None, "csrf": signed_in.csrf_token if signed_in else ""}
    response = templates.TemplateResponse(
        request, template, {**base, "htmx": "hx-request" in request.headers, **context}, status_code=status_code
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def _error_page(request: Request, status: int, title: str, detail: str) -> Response:
    return render(request, "error.html", {"status": status, "title": title, "detail": detail}, status)


def to_sign_in(request: Request) -> Response:
    """Where a request without a live session goes (htmx follows ``HX-Redirect`` with a full page load)."""
    target = f"/ui/login?next={quote(request.url.path)}"
    if "hx-request" in request.headers:
        return Response(status_code=204, headers={"HX-Redirect": target})
    if request.method != "GET":
        return _error_page(request, 401, "Signed out", "Your session has ended. Sign in again.")
    return RedirectResponse(target, status_code=303)


class ConsoleRoute(APIRoute):
    """A console route: the API's errors become pages with the same status, and no session means sign in."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        calls = dependency_calls(self.dependant)
        needs_session = _signed_in in calls
        role = next((c.role for c in calls if isinstance(c, ConsoleCollection)), None)

        async def route(request: Request) -> Response:
            try:
                if needs_session:  # before the body is read: a signed-out or reader's upload is not spooled
                    signed_in = await run_in_threadpool(_signed_in, request, request.app.state.ragkeep)
                    name = request.path_params.get("name")
                    if role is not None and isinstance(name, str):
                        check_visible(signed_in.principal, name, role)
                return await handler(request)
            except Unauthorized:
                return to_sign_in(request)
            except RagkeepError as exc:
                return _error_page(request, exc.status_code, type(exc).__name__, exc.detail)
            except StarletteHTTPException as exc:  # FastAPI's 400 for a body it cannot parse, as the API: 422
                status = 422 if exc.status_code == 400 else exc.status_code
                return _error_page(request, status, "InvalidInput", "the request body could not be parsed")
            except RequestValidationError as exc:
                fields = "; ".join(str(e.get("msg", "invalid")) for e in exc.errors()[:5])
                return _error_page(request, 422, "InvalidInput", fields)

        return route


def _signed_in(request: Request, state: StateDep) -> SignedIn:
    """The caller's console session (401, i.e. the sign-in page, without one)."""
    cached: SignedIn | None = getattr(request.state, "console", None)
    if cached is not None:
        return cached
    token = request.cookies.get(COOKIE)
    with state.db.session() as session:
        signed_in = console.resolve(session, token, state.settings.admin_api_key, state.settings.auth == "enabled")
    request.state.console = signed_in
    request.state.principal = signed_in.principal  # what service.access and the rate limiter read
    return signed_in


async def _verified(request: Request, signed_in: Annotated[SignedIn, Depends(_signed_in)]) -> SignedIn:
    """A signed-in POST that carries the session's CSRF token (form field or ``X-CSRF-Token``), else 403."""
    token = request.headers.get("x-csrf-token")
    if token is None:
        form = await request.form()
        field = form.get("csrf_token")
        token = field if isinstance(field, str) else None
    console.check_csrf(signed_in, token)
    return signed_in


SignedInDep = Annotated[SignedIn, Depends(_signed_in)]
VerifiedDep = Annotated[SignedIn, Depends(_verified)]


@dataclass(frozen=True)
class ConsoleCollection:
    """Dependency: the collection in the path, if the session's key may see it (404) with ``role`` (403).

    ``ConsoleRoute`` runs the same check before the body is read, so a reader's upload is refused
    before a byte of it is spooled.
    """

    role: Role

    def __call__(self, name: Annotated[str, Path(max_length=48)], session: SessionDep, me: SignedInDep) -> Collection:
        return visible_collection(session, me.principal, name, self.role)


WritableDep = Annotated[Collection, Depends(ConsoleCollection("writer"))]


def set_session_cookie(request: Request, response: Response, token: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/ui",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")


def same_origin(request: Request) -> bool:
    """A sign-in form posted from this origin (the one POST without a session's CSRF token yet)."""
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"
