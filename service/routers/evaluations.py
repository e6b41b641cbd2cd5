"""Golden sets, evaluation runs, comparisons and owner reports."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, File, Query, Request, UploadFile
from fastapi.responses import HTMLResponse

from core import catalog
from core.errors import InvalidInput
from eval import gaps, runner
from eval.goldensets import parse_golden_set
from release import evaluations, reports
from service.access import GuardedRoute, ReadableCollection, WritableCollection, ensure_visible, record
from service.deps import EngineDep, PrincipalDep, SessionDep, SettingsDep, StateDep
from service.mappers import evaluation_read
from service.routers.audit import auditor
from service.routers.versions import VersionNumber
from service.schemas import (
    MAX_INT,
    ComparisonRead,
    EvaluationAccepted,
    EvaluationRead,
    GapsRead,
    GoldenSetRead,
    Offset,
    Page,
    ReportAccepted,
    ReportRead,
    error_responses,
)

router = APIRouter(tags=["evaluation"], route_class=GuardedRoute)
ERRORS = error_responses(401, 403, 404, 409, 410, 413, 422, 429)
PAGE_ERRORS = error_responses(401, 403, 404, 422, 429, json_only=True)
MAX_GOLDEN_SET_BYTES = 50 * 1024 * 1024


@router.post("/collections/{name}/goldensets", status_code=201, responses=ERRORS)
def upload_golden_set(
    collection: WritableCollection,
    session: SessionDep,
    principal: PrincipalDep,
    request: Request,
    file: Annotated[UploadFile, File(description="JSONL, or LlamaIndex LabelledRagDataset JSON.")],
) -> GoldenSetRead:
    """Upload a golden set: a new revision. A malformed line rejects the whole file, naming the line."""
    data = file.file.read(MAX_GOLDEN_SET_BYTES + 1)
    if len(data) > MAX_GOLDEN_SET_BYTES:
        raise InvalidInput(f"golden set is larger than {MAX_GOLDEN_SET_BYTES // (1024 * 1024)} MiB")
    parsed = parse_golden_set(data)
    golden = catalog.create_golden_set(
        session,
        collection,
        file.filename or "goldenset.jsonl",
        parsed.source_format,
        [item.model_dump() for item in parsed.items],
    )
    record(
        request, session, principal, "goldenset.upload", collection.name, str(golden.revision), items=golden.item_count
    )
    return GoldenSetRead.model_validate(golden, from_attributes=True)


@router.get("/collections/{name}/goldensets", responses=ERRORS)
def list_golden_sets(collection: ReadableCollection, session: SessionDep) -> Page[GoldenSetRead]:
    """Golden-set revisions, newest first, with their question counts."""
    items = catalog.list_golden_sets(session, collection)
    return Page[GoldenSetRead](
        items=[GoldenSetRead.model_validate(g, from_attributes=True) for g in items], total=len(items)
    )


@router.post("/collections/{name}/versions/{number}/evaluations", status_code=202, responses=ERRORS)
def evaluate_version(
    collection: WritableCollection,
    number: VersionNumber,
    session: SessionDep,
    state: StateDep,
    principal: PrincipalDep,
    request: Request,
) -> EvaluationAccepted:
    """Evaluate a version on the collection's golden set (202 + job)."""
    audit = auditor(request, session, principal, "evaluation.start", collection.name)
    run, job = evaluations.start_evaluation(session, collection, number, state.tasks.enqueue, audit)
    return EvaluationAccepted(job_id=job.id, evaluation_id=run.id)


@router.get("/collections/{name}/evaluations", responses=ERRORS)
def list_evaluations(
    collection: ReadableCollection,
    session: SessionDep,
    version: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[EvaluationRead]:
    """Evaluation runs, newest first, with aggregate scores."""
    runs, total = catalog.list_eval_runs(session, collection, offset, limit, version)
    return Page[EvaluationRead](items=[evaluation_read(session, r) for r in runs], total=total)


@router.get("/evaluations/{evaluation_id}", responses=ERRORS)
def get_evaluation(evaluation_id: str, session: SessionDep, principal: PrincipalDep) -> EvaluationRead:
    """One run with its per-question rows."""
    run = catalog.get_eval_run(session, evaluation_id)
    ensure_visible(session, principal, run.collection_id, catalog.eval_run_missing(evaluation_id))
    return evaluation_read(session, run, with_results=True)


@router.get("/collections/{name}/evaluations/compare", responses=ERRORS)
def compare(
    collection: ReadableCollection,
    session: SessionDep,
    settings: SettingsDep,
    base: Annotated[str, Query(max_length=64, description="Evaluation id of the baseline run.")],
    candidate: Annotated[str, Query(max_length=64, description="Evaluation id of the candidate run.")],
) -> ComparisonRead:
    """Paired per-metric deltas (candidate - base) with bootstrap intervals, and the questions that got worse.

    Both runs must be of this collection; another collection's run answers 404, as an unknown id does.
    """
    runs = [catalog.get_eval_run(session, run_id) for run_id in (base, candidate)]
    for run_id, run in zip((base, candidate), runs, strict=True):
        if run.collection_id != collection.id:
            raise catalog.eval_run_missing(run_id)
    comparison = runner.compare_runs(session, runs[0], runs[1], settings.eval.bootstrap_samples)
    return ComparisonRead(
        base=evaluation_read(session, comparison.base),
        candidate=evaluation_read(session, comparison.candidate),
        deltas=comparison.deltas,
        worse_questions=comparison.worse,
    )


@router.get("/collections/{name}/gaps", responses=ERRORS)
def knowledge_gaps(
    collection: ReadableCollection,
    session: SessionDep,
    engine: EngineDep,
    state: StateDep,
    since: Annotated[datetime | None, Query(alias="from", description="ISO time; default 7 days before `to`.")] = None,
    until: Annotated[datetime | None, Query(alias="to", description="ISO time; default now.")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Most groups returned.")] = 20,
) -> GapsRead:
    """What users asked that the knowledge base does not answer: declined or low-confidence questions, grouped."""
    state.flush_query_log()  # an answer of this process may be a few milliseconds from the log
    start, end = gaps.window(since, until)
    found = gaps.find_gaps(session, collection, engine.embedder, start, end, limit)
    return GapsRead.model_validate({"collection": collection.name, **found.__dict__})


@router.get("/collections/{name}/reports/latest", response_class=HTMLResponse, responses=PAGE_ERRORS)
def latest_report(
    collection: ReadableCollection, session: SessionDep, settings: SettingsDep, engine: EngineDep
) -> HTMLResponse:
    """The owners' report as a page, as of now."""
    return HTMLResponse(reports.current_page(session, collection, settings, engine.embedder))


@router.post("/collections/{name}/reports/send", status_code=202, responses=ERRORS)
def send_report(
    collection: WritableCollection, session: SessionDep, state: StateDep, principal: PrincipalDep, request: Request
) -> ReportAccepted:
    """Build the report and email it to the owners now (writer; 202 + job)."""
    audit = auditor(request, session, principal, "report.send", collection.name)
    return ReportAccepted(job_id=reports.request_report(session, collection, state.tasks.enqueue, audit).id)


@router.get("/collections/{name}/reports", responses=ERRORS)
def list_reports(
    collection: ReadableCollection,
    session: SessionDep,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page[ReportRead]:
    """Reports built for the owners (sent or not), newest first."""
    reports, total = catalog.list_reports(session, collection, offset, limit)
    return Page[ReportRead](items=[ReportRead.model_validate(r, from_attributes=True) for r in reports], total=total)


@router.get("/collections/{name}/reports/{report_id}", response_class=HTMLResponse, responses=PAGE_ERRORS)
def get_report(collection: ReadableCollection, report_id: str, session: SessionDep) -> HTMLResponse:
    """A stored report as it was built (also when sending it failed)."""
    report = catalog.get_report(session, collection, report_id)
    return HTMLResponse(reports.inline_chart(report.html, report.chart_png))
