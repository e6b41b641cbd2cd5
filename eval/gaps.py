"""Knowledge gaps: what users asked that the knowledge base does not answer, grouped by meaning.

A gap question is one from the query log (``/query`` and ``/v1/chat/completions`` answers)
that was declined (``answer_mode == "abstained"``) or answered with low confidence: below the
live version's abstention threshold plus ``LOW_CONFIDENCE_MARGIN`` (answered, but near the
line). The questions are embedded with the live version's embedding model and grouped by
average-linkage agglomerative clustering on cosine distance (scikit-learn), cut at
``CLUSTER_DISTANCE``: paraphrases of one question and close variants fall together, different
topics apart. Each group lists how often it was asked, example questions (with their query ids,
which ``POST /feedback`` takes with ``answerable: false`` or an ``expected_answer`` to turn them
into golden-set lines) and the documents its questions retrieved most (the closest documents).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy.orm import Session

from core import catalog
from core.config import DEFAULT_EMBEDDING_MODEL
from core.embedding import Embedder
from core.errors import InvalidInput
from core.models import Collection, QueryLog, Version, utcnow
from query.evidence import DEFAULT_ABSTAIN_THRESHOLD, abstain_threshold

LOW_CONFIDENCE_MARGIN = 0.1
# Average cosine distance at which two groups stop merging. all-MiniLM-L6-v2 puts paraphrases of
# one question at 0.1-0.3 and questions on different topics of one corpus at 0.6+; set by hand on
# the unit examples (tests/eval/test_gaps.py), not tuned on any evaluation set.
CLUSTER_DISTANCE = 0.45
MAX_QUESTIONS = 2000  # newest first; clustering is quadratic in memory
EXAMPLES = 3
DOCUMENTS = 3
DEFAULT_DAYS = 7
PASSAGES_PER_QUESTION = 3  # the closest passages of a question whose documents count


@dataclass(frozen=True)
class GapQuestion:
    query_id: str
    question: str
    answer_mode: str
    confidence: float | None
    version: int
    asked_at: datetime


@dataclass(frozen=True)
class GapCluster:
    count: int
    examples: list[GapQuestion]
    closest_documents: list[str]


@dataclass(frozen=True)
class Gaps:
    since: datetime
    until: datetime
    low_confidence_below: float
    questions: int
    declined: int
    clusters: list[GapCluster] = field(default_factory=list)


def clusters(vectors: np.ndarray, distance: float = CLUSTER_DISTANCE) -> list[list[int]]:
    """Row indices grouped by average-linkage clustering on cosine distance, largest group first."""
    from sklearn.cluster import AgglomerativeClustering

    if len(vectors) == 0:
        return []
    if len(vectors) == 1:
        return [[0]]
    labels = AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage="average", distance_threshold=distance
    ).fit_predict(vectors)
    groups: dict[int, list[int]] = {}
    for row, label in enumerate(labels):
        groups.setdefault(int(label), []).append(row)
    return sorted(groups.values(), key=lambda g: (-len(g), g[0]))


def low_confidence_line(session: Session, collection: Collection) -> float:
    """Confidence below which an answered question counts as a gap: the live version's threshold plus the margin."""
    live = session.get(Version, collection.live_version_id) if collection.live_version_id else None
    config = catalog.collection_config(collection)
    threshold = abstain_threshold(config.answer.abstain, live.calibrated_threshold if live else None)
    return min(1.0, (threshold if threshold is not None else DEFAULT_ABSTAIN_THRESHOLD) + LOW_CONFIDENCE_MARGIN)


def _closest_documents(session: Session, rows: Sequence[QueryLog]) -> list[str]:
    revisions = [str(c).split(":", 1)[0] for row in rows for c in row.chunk_ids[:PASSAGES_PER_QUESTION]]
    names = catalog.filenames_of_revisions(session, revisions)
    counts = Counter(names[r] for r in revisions if r in names)
    return [name for name, _ in counts.most_common(DOCUMENTS)]


def _question(row: QueryLog) -> GapQuestion:
    return GapQuestion(row.id, row.question, row.answer_mode, row.confidence, row.version_number, row.created_at)


def window(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    """The [from, to) of a gaps request: naive times are UTC; default the ``DEFAULT_DAYS`` up to now."""
    try:
        end = _utc(until) if until is not None else utcnow()
        start = _utc(since) if since is not None else end - timedelta(days=DEFAULT_DAYS)
    except OverflowError:  # 'to' in the first days of year 1, or a UTC shift past the calendar's ends
        raise InvalidInput("'from' and 'to' must be times between the years 1 and 9999") from None
    if start >= end:
        raise InvalidInput("'from' must be before 'to'")
    return start, end


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def find_gaps(
    session: Session,
    collection: Collection,
    embedder: Callable[[str], Embedder],
    since: datetime,
    until: datetime,
    limit: int = 20,
) -> Gaps:
    """The collection's knowledge gaps asked in [since, until): at most ``limit`` groups, most asked first."""
    if since >= until:
        raise InvalidInput("'from' must be before 'to'")
    line = low_confidence_line(session, collection)
    rows = catalog.gap_queries(session, collection.id, since, until, line, MAX_QUESTIONS)
    gaps = Gaps(since, until, line, len(rows), sum(r.answer_mode == "abstained" for r in rows))
    if not rows:
        return gaps
    live = session.get(Version, collection.live_version_id) if collection.live_version_id else None
    model = live.embedding_model if live else DEFAULT_EMBEDDING_MODEL
    vectors = np.asarray(embedder(model).embed([r.question for r in rows]), dtype=np.float32)
    for group in clusters(vectors)[:limit]:
        members = [rows[i] for i in group]  # newest first, as the rows came
        gaps.clusters.append(
            GapCluster(len(members), [_question(r) for r in members[:EXAMPLES]], _closest_documents(session, members))
        )
    return gaps
