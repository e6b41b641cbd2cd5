"""Prometheus metrics for ``GET /metrics``.

Two sources:
- counters and histograms recorded by this API process (requests, queries, tokens,
  latencies), multiprocess-safe when ``PROMETHEUS_MULTIPROC_DIR`` is set (several
  uvicorn workers on one host);
- gauges read from the catalog at scrape time (jobs, documents, versions, the latest
  evaluation scores): the catalog is shared by every API and worker host, so these are
  right whichever process is scraped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.responses import Response

from core import catalog
from core.db import Database

log = logging.getLogger(__name__)

REQUESTS = Counter("ragkeep_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "ragkeep_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
QUERIES = Counter("ragkeep_queries_total", "Answered queries", ["collection", "answer_mode"])
QUERY_STAGE = Histogram(
    "ragkeep_query_stage_seconds",
    "Query time by stage",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TOKENS = Counter("ragkeep_llm_tokens_total", "LLM tokens", ["collection", "model", "direction"])
# Issue 18: the share of answers with an unsupported sentence, and of declined questions, per
# collection: outcome / sum over outcomes.
ANSWERS = Counter(
    "ragkeep_answers_total",
    "Answers by outcome: supported (every sentence), unsupported (at least one sentence not), abstained (declined)",
    ["collection", "outcome"],
)


def observe_query(
    collection: str,
    answer_mode: str,
    model: str | None,
    usage: dict[str, Any],
    latency_ms: dict[str, float],
    unsupported_sentences: int = 0,
) -> None:
    QUERIES.labels(collection, answer_mode).inc()
    if answer_mode == "abstained":
        ANSWERS.labels(collection, "abstained").inc()
    elif answer_mode in ("llm", "extractive"):
        ANSWERS.labels(collection, "unsupported" if unsupported_sentences else "supported").inc()
    QUERY_STAGE.labels("retrieve").observe(latency_ms.get("retrieve", 0.0) / 1000)
    if answer_mode != "none":
        QUERY_STAGE.labels("generate").observe(latency_ms.get("generate", 0.0) / 1000)
        QUERY_STAGE.labels("ground").observe(latency_ms.get("ground", 0.0) / 1000)
    if model:
        TOKENS.labels(collection, model, "in").inc(usage.get("prompt_tokens", 0))
        TOKENS.labels(collection, model, "out").inc(usage.get("completion_tokens", 0))


class CatalogCollector(Collector):
    """Gauges read at scrape time: catalog counts, and the broker's queue depths."""

    def __init__(self, db: Database, queue_depths: Callable[[], dict[str, int]] | None = None) -> None:
        self.db = db
        self.queue_depths = queue_depths

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily("ragkeep_jobs", "Jobs by kind and status", labels=["kind", "status"])
        documents = GaugeMetricFamily("ragkeep_document_revisions", "Document revisions by status", labels=["status"])
        versions = GaugeMetricFamily("ragkeep_versions", "Versions by state", labels=["state"])
        scores = GaugeMetricFamily(
            "ragkeep_eval_score", "Latest evaluation score", labels=["collection", "version", "metric"]
        )
        unmeasured = GaugeMetricFamily(
            "ragkeep_eval_not_measured",
            "Questions of the latest evaluation whose metric was not measured, by reason (e.g. judge_truncated)",
            labels=["collection", "version", "metric", "reason"],
        )
        with self.db.session() as session:
            for kind, status, n in catalog.job_counts(session):
                jobs.add_metric([kind, status], n)
            for status, n in catalog.revision_counts(session):
                documents.add_metric([status], n)
            for state, n in catalog.version_counts(session):
                versions.add_metric([state], n)
            for name, number, metrics in catalog.latest_run_metrics(session):
                for metric, summary in (metrics or {}).items():
                    if summary.get("mean") is not None:
                        scores.add_metric([name, str(number), metric], summary["mean"])
                    for reason, n in (summary.get("not_measured_reasons") or {}).items():
                        unmeasured.add_metric([name, str(number), metric, reason], n)
        yield from (jobs, documents, versions, scores, unmeasured)
        if self.queue_depths is not None:
            yield from self._queues(self.queue_depths)

    @staticmethod
    def _queues(queue_depths: Callable[[], dict[str, int]]) -> Iterator[GaugeMetricFamily]:
        try:
            depths = queue_depths()
        except Exception as exc:  # kombu raises transport-specific errors; the scrape still succeeds
            log.warning("queue depth not measured: %s", exc)
            return
        gauge = GaugeMetricFamily("ragkeep_queue_depth", "Tasks waiting per Celery queue", labels=["queue"])
        for queue, depth in depths.items():
            gauge.add_metric([queue], depth)
        yield gauge


def build_registry(db: Database, queue_depths: Callable[[], dict[str, int]] | None = None) -> CollectorRegistry:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        for metric in (REQUESTS, LATENCY, QUERIES, QUERY_STAGE, TOKENS, ANSWERS):
            registry.register(metric)
    registry.register(CatalogCollector(db, queue_depths))
    return registry


def render(registry: CollectorRegistry) -> Response:
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def observe_request(method: str, route: str | None, status: int, seconds: float) -> None:
    """Latency and status per route template (not per raw path: ids would explode the label set)."""
    route = route or "unmatched"
    if route != "/metrics":
        REQUESTS.labels(method, route, str(status)).inc()
        LATENCY.labels(method, route).observe(seconds)
