"""The web console at ``/ui``: server-rendered pages over the same access rules and library calls as the REST API.

Each write goes through the function its REST route calls (``release.*``, ``core.catalog``, or
the REST handler itself where the handler is that function), with the same role check; every
POST carries the session's CSRF token. Routes stay adapters: page contents come from ``pages``.
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from core import catalog, console
from core.errors import Forbidden, RagkeepError, VersionNotReady
from core.models import utcnow
from query.engine import QueryRequest
from release import builds, evaluations, intake, publish
from service.access import visible_collection
from service.deps import SessionDep, StateDep
from service.mappers import document_read
from service.routers import admin as rest_admin
from service.routers import collections as rest_collections
from service.routers import evaluations as rest_evaluations
from service.routers import prompts as rest_prompts
from service.routers.audit import auditor
from service.routers.query import query_read
from service.schemas import CollectionCreate, CollectionUpdate, KeyCreate, PromptCreate
from service.ui import pages
from service.ui.console import (
    COOKIE,
    ConsoleRoute,
    SignedInDep,
    VerifiedDep,
    WritableDep,
    clear_session_cookie,
    render,
    same_origin,
    set_session_cookie,
)

STATIC = FilePath(__file__).parent / "static"
router = APIRouter(prefix="/ui", include_in_schema=False, route_class=ConsoleRoute)
Name = Annotated[str, Path(max_length=48)]
Number = Annotated[int, Path(ge=1, le=2**31 - 1)]
DocumentId = Annotated[str, Path(max_length=64)]


def _see_other(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors()[:5])


@router.get("")
def home() -> Response:
    """The console's front door: the collections (the sign-in page without a session)."""
    return _see_other("/ui/collections")


def _local_next(next: str) -> str:
    """Where to go after signing in: a console page, never another site (an open redirect)."""
    return next if next.startswith("/ui/") else "/ui/collections"


@router.get("/login")
def login_page(request: Request, next: Annotated[str, Query(max_length=200)] = "/ui/collections") -> Response:
    """Paste an API key to sign in."""
    return render(request, "login.html", {"next": _local_next(next)})


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    state: StateDep,
    key: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=200)] = "/ui/collections",
) -> Response:
    """Turn a valid key into a session cookie; a wrong key shows the form again with the reason."""
    if not same_origin(request):
        raise Forbidden("sign-in must come from this console's own page")
    try:
        settings = state.settings
        console.sign_out(session, request.cookies.get(COOKIE))  # a new sign-in replaces this browser's session
        token, signed_in = console.sign_in(
            session, key, settings.admin_api_key, settings.console_session_hours, settings.auth == "enabled"
        )
    except RagkeepError as exc:
        return render(request, "login.html", {"next": _local_next(next), "error": exc.detail}, 401)
    response = _see_other(_local_next(next))
    set_session_cookie(request, response, token, int((signed_in.expires_at - utcnow()).total_seconds()))
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep, _: VerifiedDep) -> Response:
    """End this session (the key itself stays valid)."""
    console.sign_out(session, request.cookies.get(COOKIE))
    response = _see_other("/ui/login")
    clear_session_cookie(response)
    return response


@router.get("/collections")
def collections_page(request: Request, session: SessionDep, me: SignedInDep) -> Response:
    """Every collection this key may see: live version, documents by status, scores, queries."""
    return render(request, "collections.html", {"rows": pages.overview(session, me.principal)})


@router.post("/collections")
def create_collection(
    request: Request,
    session: SessionDep,
    me: VerifiedDep,
    name: Annotated[str, Form(max_length=200)] = "",
    description: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Create a collection (an unscoped admin key, as for ``POST /collections``)."""
    me.principal.require_global("creating a collection")
    try:
        body = CollectionCreate(name=name.strip(), description=description)
        rest_collections.create_collection(body, session, me.principal, request)
    except (ValidationError, RagkeepError) as exc:
        error = _errors(exc) if isinstance(exc, ValidationError) else exc.detail
        session.rollback()
        rows = pages.overview(session, me.principal)
        return render(request, "collections.html", {"rows": rows, "error": error, "name": name}, 422)
    return _see_other(f"/ui/c/{body.name}/documents")


@router.get("/c/{name}")
def collection_home(name: Name) -> Response:
    return _see_other(f"/ui/c/{name}/documents")


@router.get("/c/{name}/documents")
def documents_page(
    request: Request,
    name: Name,
    session: SessionDep,
    me: SignedInDep,
    status: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    """Documents with status and failure reason, filtered by status; htmx polls the table while work is in progress."""
    collection = visible_collection(session, me.principal, name)
    view = pages.documents(session, collection, status)
    template = "_documents_table.html" if request.headers.get("hx-target") == "documents" else "documents.html"
    return render(request, template, {"c": collection, "view": view, "tab": "documents"})


@router.get("/c/{name}/documents/{document_id}")
def document_page(
    request: Request, name: Name, document_id: DocumentId, session: SessionDep, me: SignedInDep
) -> Response:
    """One document's revision history."""
    collection = visible_collection(session, me.principal, name)
    document = document_read(session, catalog.get_document(session, collection, document_id), True)
    return render(request, "document.html", {"c": collection, "d": document, "tab": "documents"})


@router.post("/c/{name}/documents")
def upload(
    request: Request,
    name: Name,
    session: SessionDep,
    state: StateDep,
    me: VerifiedDep,
    collection: WritableDep,
    files: Annotated[list[UploadFile], File()] = [],  # noqa: B006 (FastAPI copies defaults)
    password: Annotated[str | None, Form()] = None,
) -> Response:
    """Upload files: each one on its own through ``release.intake.upload``, with its outcome or refusal."""
    outcomes = pages.upload_each(
        session,
        collection,
        [intake.UploadedFile(f.filename, f.file) for f in files if f.filename],
        settings=state.settings,
        blobs=state.blobs,
        enqueue=state.tasks.enqueue,
        audit=auditor(request, session, me.principal, "documents.upload", collection.name),
        password=password,
    )
    if request.headers.get("x-upload-fragment"):  # console.js sends one file per request and shows its line
        return render(request, "_outcomes.html", {"outcomes": outcomes})
    view = pages.documents(session, collection, None)
    return render(request, "documents.html", {"c": collection, "view": view, "outcomes": outcomes, "tab": "documents"})


@router.post("/c/{name}/documents/{document_id}/delete")
def delete_document(
    request: Request,
    name: Name,
    document_id: DocumentId,
    session: SessionDep,
    state: StateDep,
    me: VerifiedDep,
    collection: WritableDep,
) -> Response:
    """Remove a document (``release.intake.delete_document``); the next version no longer has it."""
    audit = auditor(request, session, me.principal, "documents.delete", collection.name)
    intake.delete_document(
        session, collection, document_id, state.tasks.enqueue, state.settings.worker.build_debounce_s, audit
    )
    return _see_other(f"/ui/c/{name}/documents")


@router.get("/c/{name}/versions")
def versions_page(request: Request, name: Name, session: SessionDep, me: SignedInDep) -> Response:
    """The versions' timeline: state, changes, gate decision, scores; publish, roll back, compare."""
    collection = visible_collection(session, me.principal, name)
    rows = pages.versions(session, collection)
    rollback = pages.rollback_preview(session, collection)
    return render(request, "versions.html", {"c": collection, "rows": rows, "rollback": rollback, "tab": "versions"})


@router.get("/c/{name}/versions/diff")
def diff_page(
    request: Request,
    name: Name,
    session: SessionDep,
    me: SignedInDep,
    a: Annotated[int, Query(ge=1, le=2**31 - 1)],
    b: Annotated[int, Query(ge=1, le=2**31 - 1)],
) -> Response:
    """Two versions side by side: documents with chunk counts, and scores."""
    collection = visible_collection(session, me.principal, name)
    return render(
        request, "diff.html", {"c": collection, "diff": pages.diff(session, collection, a, b), "tab": "versions"}
    )


@router.get("/c/{name}/versions/{number}/publish")
def confirm_publish(request: Request, name: Name, number: Number, session: SessionDep, me: SignedInDep) -> Response:
    """Name what publishing this version changes before it is done."""
    collection = visible_collection(session, me.principal, name, "writer")
    change = pages.publish_preview(session, collection, number)
    return render(request, "confirm.html", {"c": collection, "change": change, "tab": "versions"})


@router.post("/c/{name}/versions/{number}/publish")
def publish_version(
    request: Request, name: Name, number: Number, session: SessionDep, me: VerifiedDep, collection: WritableDep
) -> Response:
    """Make this version live (``release.publish.publish``)."""
    publish.publish(session, collection, number, auditor(request, session, me.principal, "versions.publish", name))
    return _see_other(f"/ui/c/{name}/versions")


@router.get("/c/{name}/rollback")
def confirm_rollback(request: Request, name: Name, session: SessionDep, me: SignedInDep) -> Response:
    """Name the version a rollback makes live again, and what it changes."""
    collection = visible_collection(session, me.principal, name, "writer")
    change = pages.rollback_preview(session, collection)
    if change is None:
        raise VersionNotReady(f"collection {name!r} has no earlier live version to roll back to")
    return render(request, "confirm.html", {"c": collection, "change": change, "tab": "versions"})


@router.post("/c/{name}/rollback")
def rollback(request: Request, name: Name, session: SessionDep, me: VerifiedDep, collection: WritableDep) -> Response:
    """Make the previously live version live again (``release.publish.rollback``)."""
    publish.rollback(session, collection, auditor(request, session, me.principal, "versions.rollback", name))
    return _see_other(f"/ui/c/{name}/versions")


@router.post("/c/{name}/versions")
def build(
    request: Request, name: Name, session: SessionDep, state: StateDep, me: VerifiedDep, collection: WritableDep
) -> Response:
    """Build a version now (``release.builds.start_manual_build``)."""
    builds.start_manual_build(
        session, collection, state.tasks.enqueue, auditor(request, session, me.principal, "versions.build", name)
    )
    return _see_other(f"/ui/c/{name}/documents")


@router.get("/c/{name}/ask")
def ask_page(request: Request, name: Name, session: SessionDep, me: SignedInDep) -> Response:
    """The playground: ask the live or a pinned version, or two versions side by side."""
    collection = visible_collection(session, me.principal, name)
    rows = pages.versions(session, collection)
    return render(request, "ask.html", {"c": collection, "versions": rows, "answers": [], "tab": "ask"})


@router.post("/c/{name}/ask")
def ask(
    request: Request,
    name: Name,
    session: SessionDep,
    state: StateDep,
    me: VerifiedDep,
    question: Annotated[str, Form(min_length=1, max_length=4000)],
    version: Annotated[int | None, Form(ge=1, le=2**31 - 1)] = None,
    compare: Annotated[int | None, Form(ge=1, le=2**31 - 1)] = None,
) -> Response:
    """Answer through the query engine ``POST /query`` uses (logged and counted the same way)."""
    collection = visible_collection(session, me.principal, name)
    session.commit()  # the engine reads the catalog on its own connection
    pinned = [version] + ([compare] if compare else [])
    answers = [
        query_read(
            state.query_engine.query(
                QueryRequest(collection=name, question=question, version=v, client=me.principal.key_id)
            )
        )
        for v in pinned
    ]
    context = {
        "c": collection,
        "versions": pages.versions(session, collection),
        "answers": answers,
        "question": question,
    }
    return render(request, "ask.html", {**context, "version": version, "compare": compare, "tab": "ask"})


@router.get("/c/{name}/quality")
def quality_page(request: Request, name: Name, session: SessionDep, me: SignedInDep) -> Response:
    """Trend per metric with 95% intervals, the latest run's worst questions, golden-set revisions."""
    collection = visible_collection(session, me.principal, name)
    return render(request, "quality.html", {"c": collection, "q": pages.quality(session, collection), "tab": "quality"})


@router.post("/c/{name}/evaluate")
def evaluate(
    request: Request, name: Name, session: SessionDep, state: StateDep, me: VerifiedDep, collection: WritableDep
) -> Response:
    """Evaluate the live version now (``release.evaluations.start_evaluation``)."""
    live = pages.live_number(session, collection)
    audit = auditor(request, session, me.principal, "evaluation.start", name)
    evaluations.start_evaluation(session, collection, live, state.tasks.enqueue, audit)
    return _see_other(f"/ui/c/{name}/quality")


@router.post("/c/{name}/goldensets")
def upload_golden_set(
    request: Request,
    name: Name,
    session: SessionDep,
    me: VerifiedDep,
    collection: WritableDep,
    file: Annotated[UploadFile, File()],
) -> Response:
    """A new golden-set revision, through ``POST /collections/{name}/goldensets``'s own handler."""
    rest_evaluations.upload_golden_set(collection, session, me.principal, request, file)
    return _see_other(f"/ui/c/{name}/quality")


@router.get("/c/{name}/goldensets/{revision}")
def golden_set_page(request: Request, name: Name, revision: Number, session: SessionDep, me: SignedInDep) -> Response:
    """One golden-set revision's questions, reference answers and contexts."""
    collection = visible_collection(session, me.principal, name)
    golden, items = pages.golden_set(session, collection, revision)
    return render(request, "goldenset.html", {"c": collection, "g": golden, "items": items, "tab": "quality"})


@router.get("/c/{name}/settings")
def settings_page(request: Request, name: Name, session: SessionDep, me: SignedInDep) -> Response:
    """Description, owners and config (validated as ``PATCH`` validates them), and prompt revisions."""
    collection = visible_collection(session, me.principal, name)
    return render(request, "settings.html", pages.settings_context(session, collection))


@router.post("/c/{name}/settings")
def save_settings(
    request: Request,
    name: Name,
    session: SessionDep,
    me: VerifiedDep,
    collection: WritableDep,
    description: Annotated[str, Form(max_length=4000)] = "",
    owners: Annotated[str, Form(max_length=20000)] = "",
    config: Annotated[str, Form(max_length=200000)] = "{}",
) -> Response:
    """Save through ``PATCH /collections/{name}``'s handler; its refusal is shown next to the form."""
    try:
        body = CollectionUpdate.model_validate(pages.settings_form(description, owners, config))
        rest_collections.update_collection(collection, body, session, me.principal, request)
    except (ValidationError, RagkeepError) as exc:
        session.rollback()
        error = _errors(exc) if isinstance(exc, ValidationError) else exc.detail
        form = {"description": description, "owners": owners, "config": config}
        return render(
            request, "settings.html", {**pages.settings_context(session, collection), "error": error, "form": form}, 422
        )
    return _see_other(f"/ui/c/{name}/settings?saved=1")


@router.post("/c/{name}/prompts")
def create_prompt(
    request: Request,
    name: Name,
    session: SessionDep,
    me: VerifiedDep,
    collection: WritableDep,
    template: Annotated[str, Form(min_length=1, max_length=20000)],
    note: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """A new prompt revision, through ``POST /collections/{name}/prompts``'s handler."""
    rest_prompts.create_prompt(collection, PromptCreate(template=template, note=note), session, me.principal, request)
    return _see_other(f"/ui/c/{name}/settings")


@router.get("/c/{name}/usage")
def usage_page(request: Request, name: Name, session: SessionDep, state: StateDep, me: SignedInDep) -> Response:
    """Queries per day (chart), tokens and cost per day and model, knowledge gaps, negative feedback."""
    collection = visible_collection(session, me.principal, name)
    state.flush_query_log()
    usage = pages.usage(session, collection, state.query_engine.embedder)
    return render(request, "usage.html", {"c": collection, "u": usage, "tab": "usage"})


@router.get("/keys")
def keys_page(request: Request, session: SessionDep, me: SignedInDep) -> Response:
    """API keys this key administers, and the audit log (admin)."""
    me.principal.require("admin")
    return render(request, "keys.html", pages.keys_context(session, me.principal))


@router.post("/keys")
def create_key(
    request: Request,
    session: SessionDep,
    me: VerifiedDep,
    name: Annotated[str, Form(max_length=100)] = "",
    role: Annotated[str, Form(max_length=16)] = "reader",
    collections: Annotated[str, Form(max_length=5000)] = "*",
) -> Response:
    """Create a key through ``POST /keys``'s handler; its secret is shown once."""
    me.principal.require("admin")
    try:
        body = KeyCreate.model_validate({"name": name, "role": role, "collections": pages.scope(collections)})
        created = rest_admin.create_key(body, session, me.principal, request)
    except (ValidationError, RagkeepError) as exc:
        session.rollback()
        error = _errors(exc) if isinstance(exc, ValidationError) else exc.detail
        return render(request, "keys.html", {**pages.keys_context(session, me.principal), "error": error}, 422)
    return render(request, "keys.html", {**pages.keys_context(session, me.principal), "created": created}, 201)


@router.post("/keys/{key_id}/revoke")
def revoke_key(
    request: Request, key_id: Annotated[str, Path(max_length=64)], session: SessionDep, me: VerifiedDep
) -> Response:
    """Revoke a key through ``DELETE /keys/{id}``'s handler; its console sessions end with it."""
    me.principal.require("admin")
    rest_admin.revoke_key(key_id, session, me.principal, request)
    return _see_other("/ui/keys")
