"""What each console page shows, read through the catalog and ``release`` functions the REST API uses.

Functions here build frozen view values for the templates; they never decide a lifecycle rule
(publishing, gating, intake stay in ``release/``) and never write except through those functions.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from markupsafe import Markup
from sqlalchemy.orm import Session

from core import auth, catalog
from core.auth import Principal
from core.embedding import Embedder
from core.errors import InvalidInput, NotFound, RagkeepError, VersionNotReady
from core.models import Collection, DocumentStatus, EvalRun, JobStatus, Version, VersionState
from core.settings import Settings
from eval import gaps
from release import collections as release_collections
from release import intake
from release.dispatch import Audit, Enqueue
from service.mappers import document_read
from service.schemas import DocumentRead
from service.ui import charts

STATUSES = tuple(DocumentStatus)
IN_PROGRESS = (DocumentStatus.queued, DocumentStatus.parsing)
# The metric a collection's sparkline follows: the first of these that its latest run measured.
PREFERRED = ("faithfulness", "answer_relevancy", "context_recall", "context_precision")


def _mean(metric: object) -> float | None:
    value = metric.get("mean") if isinstance(metric, dict) else None
    return float(value) if isinstance(value, int | float) else None


def _runs(session: Session, collection: Collection, limit: int = 30) -> list[EvalRun]:
    """Succeeded runs, oldest first."""
    return list(reversed(catalog.succeeded_eval_runs(session, collection.id, limit)))


@dataclass(frozen=True)
class CollectionRow:
    name: str
    description: str
    live_version: int | None
    counts: dict[str, int]
    scores: dict[str, float | None]  # the latest run's measured metrics
    unmeasured: int
    trend_metric: str | None
    sparkline: Markup
    queries_7d: int
    gaps_7d: int  # questions declined or answered with low confidence (open knowledge gaps)


def _live(session: Session, collection: Collection) -> Version | None:
    return session.get(Version, collection.live_version_id) if collection.live_version_id else None


def _documents(session: Session, collection: Collection) -> list[DocumentRead]:
    items, _ = catalog.list_documents(session, collection, 0, 1000)
    return [document_read(session, d) for d in items]


def _gap_count(session: Session, collection: Collection) -> int:
    """Questions of the last 7 days that ``eval.gaps`` counts as knowledge gaps (no clustering: no model needed)."""
    since, until = gaps.window(None, None)
    line = gaps.low_confidence_line(session, collection)
    return len(catalog.gap_queries(session, collection.id, since, until, line, gaps.MAX_QUESTIONS))


def overview(session: Session, principal: Principal) -> list[CollectionRow]:
    """One row per collection the key may see (the same listing as ``GET /collections``)."""
    items, _ = catalog.list_collections(session, 0, 500, principal.collections)
    week_ago = datetime.now(UTC).date() - timedelta(days=6)
    rows = []
    for collection in items:
        runs = _runs(session, collection, 12)
        last = runs[-1].metrics if runs else {}
        measured = [m for m in sorted(last) if _mean(last[m]) is not None]
        first_metric = next((m for m in PREFERRED if m in measured), measured[0] if measured else None)
        counts = Counter(d.status for d in _documents(session, collection))
        rows.append(
            CollectionRow(
                name=collection.name,
                description=collection.description,
                live_version=live.number if (live := _live(session, collection)) else None,
                counts={s: counts.get(s, 0) for s in STATUSES},
                scores={name: _mean(last[name]) for name in measured},
                unmeasured=len(last) - len(measured),
                trend_metric=first_metric,
                sparkline=charts.sparkline(
                    [_mean(r.metrics.get(first_metric)) for r in runs] if first_metric else [],
                    title=f"{first_metric} over the last {len(runs)} evaluations",
                ),
                queries_7d=release_collections.usage(session, collection, week_ago, None).queries,
                gaps_7d=_gap_count(session, collection),
            )
        )
    return rows


@dataclass(frozen=True)
class DocumentsView:
    documents: list[DocumentRead]
    counts: dict[str, int]
    status: str | None
    busy: bool  # something is parsing or a build is pending: the page keeps polling
    live_version: int | None
    newest_version: Version | None


def documents(session: Session, collection: Collection, status: str | None) -> DocumentsView:
    everything = _documents(session, collection)
    counts = Counter(d.status for d in everything)
    newest = catalog.latest_version(session, collection.id, list(VersionState))
    building = collection.pending_build_job_id is not None or (
        newest is not None and newest.state == VersionState.building
    )
    # Between the last parse and the build's start the first version is still to come.
    first_to_come = collection.live_version_id is None and (newest is None or newest.state != VersionState.failed)
    ready = any(d.status == DocumentStatus.ready for d in everything)
    busy = any(d.status in IN_PROGRESS for d in everything) or building or (first_to_come and ready)
    return DocumentsView(
        documents=[d for d in everything if status in (None, "", d.status)],
        counts={s: counts.get(s, 0) for s in STATUSES},
        status=status or None,
        busy=busy,
        live_version=live.number if (live := _live(session, collection)) else None,
        newest_version=newest,
    )


@dataclass(frozen=True)
class FileOutcome:
    filename: str
    accepted: bool
    detail: str  # "new revision 2", "unchanged", or the refusal's reason
    status: int = 202


def upload_each(
    session: Session,
    collection: Collection,
    files: Sequence[intake.UploadedFile],
    *,
    settings: Settings,
    blobs: Any,
    enqueue: Enqueue,
    audit: Audit,
    password: str | None = None,
) -> list[FileOutcome]:
    """Each file through ``release.intake.upload`` on its own, so one refused file does not refuse the others.

    ``password`` opens the password-protected ones among them.
    """
    outcomes = []
    for upload in files:
        name = upload.filename or "(no name)"
        try:
            done = intake.upload(
                session,
                collection,
                [upload],
                None,
                settings=settings,
                blobs=blobs,
                enqueue=enqueue,
                audit=audit,
                password=password,
            )
        except RagkeepError as exc:
            session.rollback()
            outcomes.append(FileOutcome(name, False, exc.detail, exc.status_code))
            continue
        for o in done.outcomes:
            detail = f"revision {o.revision.number}, parsing" if o.changed else "unchanged (same bytes)"
            outcomes.append(FileOutcome(o.document.filename, True, detail))
    return outcomes


@dataclass(frozen=True)
class VersionRow:
    version: Version
    scores: dict[str, float | None]
    gate_reasons: list[str] = field(default_factory=list)


def versions(session: Session, collection: Collection) -> list[VersionRow]:
    items, _ = catalog.list_versions(session, collection, 0, 100)
    rows = []
    for version in items:
        run = catalog.latest_eval_run(session, version)
        gate = version.gate or {}
        rows.append(
            VersionRow(
                version=version,
                scores={k: _mean(v) for k, v in sorted((run.metrics if run else {}).items())},
                gate_reasons=[str(r) for r in gate.get("reasons", [])],
            )
        )
    return rows


@dataclass(frozen=True)
class DiffRow:
    filename: str
    chunks_a: int | None
    chunks_b: int | None
    change: str  # added | removed | changed | same


@dataclass(frozen=True)
class VersionDiff:
    a: Version
    b: Version
    rows: list[DiffRow]
    scores: list[tuple[str, float | None, float | None]]


def diff(session: Session, collection: Collection, a: int, b: int) -> VersionDiff:
    """Documents with their chunk counts in version ``a`` and ``b``, and their latest scores side by side."""
    va, vb = catalog.get_version(session, collection, a), catalog.get_version(session, collection, b)
    docs_a = {d.filename: d for d in catalog.version_documents(session, va)}
    docs_b = {d.filename: d for d in catalog.version_documents(session, vb)}
    rows = []
    for name in sorted(set(docs_a) | set(docs_b)):
        da, db = docs_a.get(name), docs_b.get(name)
        if da is None:
            change = "added"
        elif db is None:
            change = "removed"
        else:
            change = "same" if da.revision_id == db.revision_id else "changed"
        rows.append(DiffRow(name, da.chunk_count if da else None, db.chunk_count if db else None, change))
    run_a, run_b = catalog.latest_eval_run(session, va), catalog.latest_eval_run(session, vb)
    ma, mb = (run_a.metrics if run_a else {}), (run_b.metrics if run_b else {})
    scores = [(m, _mean(ma.get(m)), _mean(mb.get(m))) for m in sorted(set(ma) | set(mb))]
    return VersionDiff(va, vb, rows, scores)


@dataclass(frozen=True)
class Change:
    """What a publish or a rollback will do, named before it is confirmed."""

    action: str  # publish | rollback
    current: Version | None
    target: Version
    diff: VersionDiff | None


def publish_preview(session: Session, collection: Collection, number: int) -> Change:
    target = catalog.get_version(session, collection, number)
    current = _live(session, collection)
    change = diff(session, collection, current.number, number) if current else None
    return Change("publish", current, target, change)


def rollback_preview(session: Session, collection: Collection) -> Change | None:
    """The version a rollback would make live (None: there is nothing to roll back to)."""
    current = _live(session, collection)
    target = session.get(Version, current.replaced_version_id) if current and current.replaced_version_id else None
    if current is None or target is None:
        return None
    return Change("rollback", current, target, diff(session, collection, current.number, target.number))


@dataclass(frozen=True)
class Worst:
    question: str
    answer: str
    mean: float | None
    scores: dict[str, Any]
    filenames: list[str]


@dataclass(frozen=True)
class MetricTrend:
    metric: str
    latest: float | None
    chart: Markup | None  # None: never measured in these runs
    not_measured: dict[str, int]  # the latest run's reasons, e.g. {"no_judge": 2}


@dataclass(frozen=True)
class QualityView:
    charts: list[MetricTrend]
    latest: EvalRun | None
    worst: list[Worst]
    golden_sets: list[Any]
    running: bool


def quality(session: Session, collection: Collection) -> QualityView:
    """A trend chart per metric across succeeded runs (95% intervals), and the latest run's worst questions."""
    runs = _runs(session, collection)
    metrics = sorted({m for r in runs for m in r.metrics})
    latest = runs[-1] if runs else None
    drawn = []
    for metric in metrics:
        points = []
        for run in runs:
            value = run.metrics.get(metric) or {}
            label = f"v{run.version_number} {run.created_at:%m-%d %H:%M}"
            points.append(charts.Point(label, _mean(value), value.get("ci_low"), value.get("ci_high")))
        last = (latest.metrics.get(metric) if latest else None) or {}
        measured = any(p.value is not None for p in points)
        chart = charts.trend(f"{metric} by evaluation run", points) if measured else None
        drawn.append(MetricTrend(metric, _mean(last), chart, dict(last.get("not_measured_reasons") or {})))
    worst: list[Worst] = []
    if latest is not None:
        for row in catalog.eval_results(session, latest.id):
            known = [float(v) for v in row.scores.values() if isinstance(v, int | float)]
            mean = sum(known) / len(known) if known else None
            worst.append(Worst(row.question, row.answer, mean, row.scores, list(row.retrieved_filenames)))
        worst = sorted((w for w in worst if w.mean is not None), key=lambda w: w.mean or 0.0)[:5]
    all_runs, _ = catalog.list_eval_runs(session, collection, 0, 5)
    running = any(r.status in (JobStatus.queued, JobStatus.running) for r in all_runs)
    return QualityView(drawn, latest, worst, list(catalog.list_golden_sets(session, collection)), running)


@dataclass(frozen=True)
class UsageView:
    chart: Markup
    days: list[Any]
    queries: int
    cost: float
    feedback: list[Any]
    gaps: gaps.Gaps


def usage(session: Session, collection: Collection, embedder: Callable[[str], Embedder]) -> UsageView:
    """Queries per day over 14 days (chart), tokens and cost per day and model, and the latest down-votes."""
    today = datetime.now(UTC).date()
    used = release_collections.usage(session, collection, today - timedelta(days=13), today)
    per_day = Counter[str]()
    for day in used.days:
        per_day[day.date] += day.queries
    labels = [(today - timedelta(days=13 - i)).isoformat() for i in range(14)]
    chart = charts.bars("queries per day", [d[5:] for d in labels], [per_day.get(d, 0) for d in labels])
    feedback, _ = catalog.list_feedback(session, collection, "down", 0, 50)
    found = gaps.find_gaps(session, collection, embedder, *gaps.window(None, None), limit=10)
    return UsageView(chart, used.days, used.queries, used.cost, list(feedback), found)


def live_number(session: Session, collection: Collection) -> int:
    """The live version's number (409, as the REST API answers, when nothing is live)."""
    live = _live(session, collection)
    if live is None:
        raise VersionNotReady(f"collection {collection.name!r} has no live version to evaluate")
    return live.number


def settings_context(session: Session, collection: Collection) -> dict[str, Any]:
    config = catalog.collection_config(collection).model_dump(mode="json")
    form = {
        "description": collection.description,
        "owners": "\n".join(collection.owners),
        "config": json.dumps(config, indent=2, ensure_ascii=False),
    }
    return {"c": collection, "form": form, "prompts": catalog.list_prompts(session, collection), "tab": "settings"}


def settings_form(description: str, owners: str, config: str) -> dict[str, Any]:
    """The settings form as a ``CollectionUpdate`` body (owners one per line or comma-separated)."""
    try:
        parsed = json.loads(config or "{}")
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"config is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    if not isinstance(parsed, dict):
        raise InvalidInput("config must be a JSON object")
    emails = [e.strip() for e in owners.replace(",", "\n").splitlines() if e.strip()]
    return {"description": description, "owners": emails, "config": parsed}


def scope(collections: str) -> str | list[str]:
    """A key form's scope: ``*`` or collection names, comma-separated."""
    names = [n.strip() for n in collections.split(",") if n.strip()]
    return "*" if names in ([], ["*"]) else names


def keys_context(session: Session, principal: Principal) -> dict[str, Any]:
    entries, _ = auth.list_audit(session, principal, 0, 100)
    return {"keys": auth.list_keys(session, principal), "audit": entries, "tab": "keys"}


def golden_set(session: Session, collection: Collection, revision: int) -> tuple[Any, list[Any]]:
    """A golden-set revision and its questions (404 for a revision the collection does not have)."""
    found = catalog.golden_set_revision(session, collection.id, revision)
    if found is None:
        raise NotFound(f"golden set revision {revision} of collection {collection.name!r} does not exist")
    return found, list(catalog.golden_items(session, found.id))
