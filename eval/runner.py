"""Evaluate one version on one golden-set revision, and compare two runs.

Each golden question goes through the same retrieval and answer path as ``/query``
(``QueryEngine``), pinned to the version under test; RAGAS then scores the retrieved
contexts and the answer, and ``eval.abstention`` scores whether it declined the right
questions and how well its passages support it. Per-question rows and aggregates with 95%
bootstrap intervals are stored on the run, and the abstention threshold the golden set
supports on the version (``answer.abstain: auto`` uses it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from core import catalog
from core.config import METRICS
from core.errors import GoldenSetMissing, InvalidInput, VersionDropped, VersionNotReady
from core.models import (
    Collection,
    EvalResult,
    EvalRun,
    EvalTrigger,
    GoldenItem,
    GoldenSet,
    Job,
    JobKind,
    JobStatus,
    Version,
    VersionState,
    utcnow,
)
from eval import abstention, unmeasured
from eval.ragas_adapter import LLM_METRICS, RagasScorer, Sample, Scored
from eval.stats import MetricDelta, aggregate, paired_delta, worsening
from query.engine import QueryEngine, QueryRequest, QueryResult


def golden_items(session: Session, run: EvalRun) -> Sequence[GoldenItem]:
    return catalog.golden_items(session, run.golden_set_id)


def run_evaluation(
    session: Session,
    engine: QueryEngine,
    scorer: RagasScorer,
    collection: Collection,
    run: EvalRun,
    bootstrap_samples: int,
    on_progress: Callable[[int, int], None] | None = None,
) -> None:
    """Answer every golden question with the run's version, score it, store rows and aggregates."""
    items = golden_items(session, run)
    if not items:
        raise InvalidInput("the golden set has no questions")
    samples: list[Sample] = []
    answered: list[tuple[GoldenItem, QueryResult]] = []
    modes: Counter[str] = Counter()
    for done, item in enumerate(items, start=1):
        result = engine.query(
            QueryRequest(collection=collection.name, question=item.question, version=run.version_number, record=False)
        )
        modes[result.answer_mode] += 1
        answered.append((item, result))
        samples.append(
            Sample(
                question=item.question,
                # a declined question's fixed statement is no answer to judge for faithfulness or relevancy
                answer="" if result.answer_mode == "abstained" else result.answer,
                retrieved_contexts=[source.text for source in result.sources],
                retrieved_documents=[source.filename or "" for source in result.sources],
                reference_answer=item.reference_answer,
                reference_contexts=list(item.reference_contexts),
                reference_documents=list(item.reference_documents),
            )
        )
        if on_progress:
            on_progress(done, len(items) * 2)
    version = session.get(Version, run.version_id)
    piece_chars = int((version.config if version else {}).get("max_characters", 1000))
    scored = [
        _with_abstention(row, item, result)
        for (item, result), row in zip(answered, scorer.score(samples, piece_chars), strict=True)
    ]
    catalog.clear_eval_results(session, run.id)  # a retried run starts clean
    for (item, result), row in zip(answered, scored, strict=True):
        session.add(
            EvalResult(
                run_id=run.id,
                position=item.position,
                question=item.question,
                answer=result.answer,
                retrieved_chunk_ids=[s.chunk_id for s in result.sources],
                retrieved_filenames=[s.filename for s in result.sources],
                scores=row.scores,
                not_measured=row.not_measured,
                judge_retries=row.judge_retries,
                answerable=item.answerable,
                answer_mode=result.answer_mode,
                confidence=result.confidence,
                grounding_score=result.grounding.score,
                unsupported_sentences=len(result.grounding.unsupported),
            )
        )
    calibration = abstention.calibrate([(result.confidence, item.answerable) for item, result in answered])
    run.calibration = calibration.as_json()
    catalog.set_calibrated_threshold(session, run.version_id, calibration.threshold)
    reasons = [row.not_measured for row in scored]
    run.metrics = {
        metric: {
            **aggregate([row.scores.get(metric) for row in scored], bootstrap_samples),
            "not_measured_reasons": unmeasured.count(reasons, metric),
        }
        for metric in METRICS
    }
    run.answer_mode = modes.most_common(1)[0][0]
    run.prompt_revision = answered[0][1].prompt_revision
    run.judge_model = scorer.judge_model
    run.judge_host = scorer.judge_host
    run.judge_calls = sum(row.judge_calls for row in scored)
    run.judge_retries = sum(row.judge_retries for row in scored)
    run.warnings = unmeasured.judge_warnings(scorer.judge_model, reasons, LLM_METRICS)
    run.status = JobStatus.succeeded
    run.finished_at = utcnow()
    if on_progress:
        on_progress(len(items) * 2, len(items) * 2)


def _with_abstention(row: Scored, item: GoldenItem, result: QueryResult) -> Scored:
    """RAGAS's scores of one question plus its abstention and groundedness values (eval.abstention)."""
    outcome = abstention.Outcome(
        answerable=item.answerable,
        abstained=result.answer_mode == "abstained",
        confidence=result.confidence,
        grounding_score=result.grounding.score,
        unsupported_sentences=len(result.grounding.unsupported),
    )
    scores, reasons = abstention.question_scores(outcome)
    if outcome.abstained:
        reasons.update({m: unmeasured.DECLINED for m, r in row.not_measured.items() if r == unmeasured.NO_ANSWER})
    return Scored({**row.scores, **scores}, {**row.not_measured, **reasons}, row.judge_calls, row.judge_retries)


def scores_by_position(session: Session, run: EvalRun, metric: str) -> dict[int, float | None]:
    return {row.position: row.scores.get(metric) for row in catalog.eval_results(session, run.id)}


@dataclass(frozen=True)
class Comparison:
    base: EvalRun
    candidate: EvalRun
    deltas: list[MetricDelta]
    worse: list[dict[str, Any]]


def compare_runs(session: Session, base: EvalRun, candidate: EvalRun, samples: int, worst: int = 10) -> Comparison:
    """Paired per-metric deltas (candidate - base) on the same golden questions, and what got worse."""
    if base.golden_set_id != candidate.golden_set_id:
        raise InvalidInput(
            f"runs use different golden-set revisions ({base.golden_revision} and {candidate.golden_revision}); "
            "compare runs on the same revision"
        )
    deltas = [
        paired_delta(
            metric, scores_by_position(session, base, metric), scores_by_position(session, candidate, metric), samples
        )
        for metric in METRICS
    ]
    base_rows = {r.position: r for r in catalog.eval_results(session, base.id)}
    worse: list[dict[str, Any]] = []
    for row in catalog.eval_results(session, candidate.id):
        before = base_rows.get(row.position)
        if before is None:
            continue
        drops = {
            metric: round(worse_by, 4)
            for metric in METRICS
            if before.scores.get(metric) is not None
            and row.scores.get(metric) is not None
            and (worse_by := worsening(metric, float(row.scores[metric]) - float(before.scores[metric]))) > 0
        }
        if drops:
            worse.append(
                {
                    "position": row.position,
                    "question": row.question,
                    "drops": drops,
                    "retrieved_before": before.retrieved_filenames,
                    "retrieved_after": row.retrieved_filenames,
                }
            )
    worse.sort(key=lambda item: -max(dict(item["drops"]).values()))
    return Comparison(base, candidate, deltas, worse[:worst])


def latest_golden_set(session: Session, collection: Collection, revision: int | None) -> GoldenSet:
    golden = catalog.golden_set_revision(session, collection.id, revision)
    if golden is None:
        raise GoldenSetMissing(
            f"collection {collection.name!r} has no golden set"
            + (f" revision {revision}" if revision else "")
            + "; upload one first"
        )
    return golden


def new_run(session: Session, collection: Collection, version: Version, trigger: EvalTrigger) -> tuple[EvalRun, Job]:
    """Create an evaluation run of ``version`` on the collection's golden set, with its job (not committed)."""
    if version.dropped_at is not None:
        raise VersionDropped(f"version {version.number} was dropped; it cannot be evaluated")
    if version.state not in (VersionState.ready, VersionState.live, VersionState.archived):
        raise VersionNotReady(f"version {version.number} is {version.state}; only built versions can be evaluated")
    config = catalog.collection_config(collection)
    golden = latest_golden_set(session, collection, config.evaluation.golden_set_revision)
    job = catalog.create_job(session, JobKind.evaluate, collection.id, total=golden.item_count * 2)
    run = catalog.create_eval_run(session, collection, version, golden, trigger, job)
    job.result = {"evaluation_id": run.id, "version": version.number}
    return run, job
