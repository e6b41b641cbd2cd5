"""The owner report of a collection: data from the catalog, a trend chart, HTML and text renderings."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.orm import Session

from core import catalog
from core.config import METRICS
from core.embedding import Embedder
from core.models import (
    Collection,
    EvalResult,
    EvalRun,
    Version,
    utcnow,
)
from core.settings import EvalSettings
from eval import unmeasured
from eval.abstention import ABSTENTION_METRICS, LOWER_IS_BETTER
from eval.gaps import find_gaps
from eval.ragas_adapter import LLM_METRICS
from eval.runner import scores_by_position
from eval.stats import paired_delta
from eval.unmeasured import judge_label

CHART_CID = "trend-chart@ragkeep"
_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    # HTML only: the plain-text e-mail part must show a question's apostrophe, not &#39;
    autoescape=select_autoescape(["html", "html.j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class RenderedReport:
    subject: str
    html: str
    text: str
    chart_png: bytes | None
    context: dict[str, Any]


def _since(session: Session, collection: Collection) -> datetime:
    last = catalog.last_sent_report_at(session, collection.id)
    return last or utcnow() - timedelta(days=7)


def _delta(session: Session, base: EvalRun | None, run: EvalRun, metric: str, samples: int) -> float | None:
    if base is None or base.golden_set_id != run.golden_set_id:
        return None
    return paired_delta(
        metric, scores_by_position(session, base, metric), scores_by_position(session, run, metric), samples
    ).delta


def _chart(runs: list[EvalRun]) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {m: [(i, r.metrics.get(m, {}).get("mean")) for i, r in enumerate(runs)] for m in METRICS}
    series = {m: [(i, v) for i, v in points if v is not None] for m, points in series.items()}
    series = {m: points for m, points in series.items() if points}
    if not series:
        return None
    figure, axis = plt.subplots(figsize=(7, 3.2), dpi=100)
    for metric, points in series.items():
        axis.plot([i for i, _ in points], [v for _, v in points], marker="o", label=metric)
    axis.set_xticks(range(len(runs)), [f"v{r.version_number}\n{r.created_at:%m-%d}" for r in runs], fontsize=7)
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("score")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


# How the report names a metric; ragkeep's own checks say so, so they never read as RAGAS scores.
LABELS = {
    "groundedness": "groundedness (ragkeep's own check, not RAGAS)",
    "abstention_precision": "abstention precision (declined questions that no document answers)",
    "abstention_recall": "abstention recall (unanswerable questions declined)",
    "false_answer_rate": "false-answer rate (unanswerable questions answered; lower is better)",
    "unsupported_answer_rate": "unsupported-answer rate (answers with an unsupported sentence; lower is better)",
}
SHORT = {"groundedness": "ragkeep groundedness"}  # in the subject line
GAP_CLUSTERS = 5


def _gaps(
    session: Session, collection: Collection, embedder: Callable[[str], Embedder], since: datetime, now: datetime
) -> dict[str, Any]:
    found = find_gaps(session, collection, embedder, since, now, limit=GAP_CLUSTERS)
    return {
        "questions": found.questions,
        "declined": found.declined,
        "below": found.low_confidence_below,
        "clusters": [
            {
                "count": c.count,
                "examples": [q.question for q in c.examples],
                "query_ids": [q.query_id for q in c.examples],
                "documents": c.closest_documents,
            }
            for c in found.clusters
        ],
    }


def _unsupported(session: Session, collection: Collection, since: datetime, limit: int) -> dict[str, Any]:
    rows = catalog.unsupported_answers(session, collection.id, since, limit)
    return {
        "total": catalog.unsupported_answer_count(session, collection.id, since),
        "latest": [
            {
                "question": q.question,
                "answer": q.answer[:300],
                "version": q.version_number,
                "sentences": q.unsupported_sentences,
                "warning": next((w for w in q.warnings if "not supported" in w), ""),
            }
            for q in rows
        ],
    }


def build_report(
    session: Session,
    collection: Collection,
    settings: EvalSettings,
    embedder: Callable[[str], Embedder] | None = None,
) -> RenderedReport:
    """Gather everything the owners should know since the last sent report and render it.

    ``embedder`` (a model id -> the embedder) groups the knowledge-gap questions; without it the
    gap section lists no groups, only how many questions there were.
    """
    since = _since(session, collection)
    now = utcnow()
    live = session.get(Version, collection.live_version_id) if collection.live_version_id else None
    runs_desc = catalog.succeeded_eval_runs(session, collection.id, settings.trend_runs)
    live_run = next((r for r in runs_desc if live is not None and r.version_id == live.id), None)
    metrics: list[dict[str, Any]] = []
    worst: list[dict[str, Any]] = []
    if live_run is not None:
        previous_run = catalog.previous_eval_run(session, live_run)
        previous_version_run = None
        if live is not None and live.replaced_version_id:
            previous_version_run = catalog.latest_eval_run_of_version(
                session, live.replaced_version_id, live_run.golden_set_id
            )
        for metric in METRICS:
            stats = live_run.metrics.get(metric) or {}
            metrics.append(
                {
                    "name": metric,
                    "label": LABELS.get(metric, metric),
                    "lower_is_better": metric in LOWER_IS_BETTER,
                    "mean": stats.get("mean"),
                    "ci_low": stats.get("ci_low"),
                    "ci_high": stats.get("ci_high"),
                    "measured": stats.get("measured", 0),
                    "not_measured": stats.get("not_measured", 0),
                    # "judge output truncated on 5 of 5": why, next to the metric
                    "not_measured_note": unmeasured.describe(
                        stats.get("not_measured_reasons") or {},
                        stats.get("measured", 0) + stats.get("not_measured", 0),
                    ),
                    "delta_previous_run": _delta(session, previous_run, live_run, metric, settings.bootstrap_samples),
                    "delta_previous_version": _delta(
                        session, previous_version_run, live_run, metric, settings.bootstrap_samples
                    ),
                }
            )
        rows = catalog.eval_results(session, live_run.id)

        def badness(row: EvalResult) -> float:  # RAGAS's scores (abstention values are 0/1 in both directions)
            values = [float(v) for k, v in row.scores.items() if v is not None and k not in ABSTENTION_METRICS]
            return min(values) if values else 2.0

        for row in sorted(rows, key=badness)[: settings.worst_questions]:
            worst.append(
                {
                    "question": row.question,
                    "answer": row.answer[:400],
                    "scores": {k: v for k, v in row.scores.items() if v is not None and k not in ABSTENTION_METRICS},
                    "sources": list(dict.fromkeys(f for f in row.retrieved_filenames if f)),
                }
            )
    gates = [
        {"number": v.number, "state": v.state, **v.gate}
        for v in catalog.versions_created_since(session, collection.id, since)
        if v.gate
    ]
    failed_documents = [
        {"filename": filename, "revision": rev.number, "error": rev.error}
        for rev, filename in catalog.failed_revisions_since(session, collection.id, since)
    ]
    # What the next version is built from: each document's newest parsed revision.
    flagged_documents = [
        {
            "filename": document.filename,
            "revision": revision.number,
            "chunks": revision.injection_counts.get("chunks", 0),
            "dropped": revision.injection_counts.get("dropped", 0),
            "patterns": sorted(revision.injection_counts.get("patterns", {})),
        }
        for document, revision in catalog.buildable_revisions(session, collection.id)
        if revision.injection_counts
    ]
    failed_jobs = [
        {"id": job.id, "kind": job.kind, "error": job.error}
        for job in catalog.failed_jobs_since(session, collection.id, since)
    ]
    volume = catalog.answer_mode_counts(session, collection.id, since)
    down_votes = catalog.down_votes(session, collection.id, since)
    negative_feedback = {
        "total": len(down_votes),
        "latest": [
            {
                "question": q.question,
                "comment": f.comment,
                "expected_answer": f.expected_answer,
                "version": q.version_number,
            }
            for f, q in down_votes[: settings.worst_questions]
        ],
    }
    week = utcnow() - timedelta(days=7)
    costly = catalog.costliest_queries(session, collection.id, week, 3)
    cost = {
        "week": round(catalog.total_cost(session, collection.id, week), 4),
        "top": [{"question": q.question, "cost": q.cost, "model": q.model} for q in costly],
    }
    runs = list(reversed(runs_desc))
    gaps = (
        _gaps(session, collection, embedder, since, now)
        if embedder is not None
        else {"questions": 0, "declined": 0, "below": None, "clusters": []}
    )
    context = {
        "collection": collection,
        "since": since,
        "generated_at": now,
        "live": live,
        "live_run": live_run,
        "metrics": metrics,
        "worst": worst,
        "gates": gates,
        "failed_documents": failed_documents,
        "flagged_documents": flagged_documents,
        "injection_policy": catalog.collection_config(collection).ingestion.injection,
        "failed_jobs": failed_jobs,
        "query_volume": {"total": sum(volume.values()), "by_mode": volume},
        "negative_feedback": negative_feedback,
        "cost": cost,
        "gaps": gaps,
        "unsupported": _unsupported(session, collection, since, settings.worst_questions),
        "judge": judge_label(live_run.judge_model, live_run.judge_host) if live_run else None,
        "groundedness": next((m for m in metrics if m["name"] == "groundedness"), None),
        "faithfulness": next((m for m in metrics if m["name"] == "faithfulness"), None),
        "chart_cid": CHART_CID,
    }
    chart = _chart(runs)
    context["has_chart"] = chart is not None
    headline = "no evaluation yet"
    if live_run is not None:
        shown = [m for m in metrics if m["mean"] is not None][:2]
        headline = ", ".join(f"{SHORT.get(m['name'], m['name'])} {m['mean']:.2f}" for m in shown) or "nothing measured"
        if live_run.warnings:  # the judge failed: the subject must not read like a success
            judged = [m for m in metrics if m["name"] in LLM_METRICS]
            everywhere = all(m["mean"] is None for m in judged)
            headline += "; judge failed on every question" if everywhere else "; judge failed on some questions"
    version_label = f"v{live.number}" if live else "no live version"
    subject = f"[ragkeep] {collection.name}: {version_label}, {headline}"
    return RenderedReport(
        subject=subject,
        html=_TEMPLATES.get_template("report.html.j2").render(**context),
        text=_TEMPLATES.get_template("report.txt.j2").render(**context),
        chart_png=chart,
        context=context,
    )
