"""An in-process retrieval-quality lab: chunking, embedding and scoring as ragkeep does them, minus the service.

    .venv/bin/python -m bench.retrieval_lab --datasets scifact,aragog --configs dense,hybrid,minmax:0.5@title
    .venv/bin/python -m bench.retrieval_lab --datasets scifact,aragog,financebench,jsquad --tune
    .venv/bin/python -m bench.retrieval_lab --prepare --datasets financebench --hooks plain,title  # fill caches
    .venv/bin/python -m bench.retrieval_lab --prepare --workers 2 ...  # parse two files at a time

Configurations are named ``<base>[@hook][+cap=N][+mmr=L][+pool=P][+k=K][+title[n]=W]`` (``parse_config``):
``dense``, ``bm25``, ``rrf`` (today's hybrid), ``wrrf:<w_dense>``, ``minmax:<w_dense>``,
``zscore:<w_dense>``. Hooks decide the text that is embedded and BM25-indexed: ``plain``,
``title``, ``title_section`` (the lab's own) and ``ingest_title``, ``ingest_title_section``
(``ingest.context``). ``--cached-only`` skips what is not embedded yet; ``--lexical-only``
evaluates a dataset by BM25 alone; ``--import-texts DATASET=FOLDER`` takes chunk texts from a
``bench.injection_fp --cache`` folder (the same ``partition_document`` output, without metadata).

Documents are parsed by ``ingest.partition.partition_document`` (the default
``IngestionConfig`` unless ``--ingestion`` says otherwise), chunk texts embedded by
``core.embedding.Embedder`` (all-MiniLM-L6-v2 on ONNX Runtime, as the workers embed them) and
queries by ``Embedder.embed_query`` (as the API does). Dense retrieval is exact cosine
(numpy, brute force), lexical retrieval is ``core.bm25.BM25Index`` and RRF is the service's
``Fusion("rrf")`` (k=60). No HTTP, Celery or Chroma: one configuration runs in seconds once the
caches under ``--cache`` are warm.

Caches, so that a new fusion costs seconds and a new hook costs one embedding pass:

- ``chunks/<dataset>-<parse hash>.json``: the parsed chunks and each document's title;
- ``vectors/<dataset>-<parse hash>-<hook>-<model>.npz``: the vectors of the hook's index texts
  (texts already embedded for the same dataset and model, under another hook or ingestion
  config, are reused by sha256);
- ``queries/<dataset>-<model>.npz``: the question vectors;
- ``rankings/<dataset>-<parse hash>-<hook>-<model>-<pool>.npz``: every question's dense and BM25
  candidates with their scores and the time each search took, from which any fusion is computed.

Timings (``p50 ms``) are one question's search in this process, re-measured when a dataset is
loaded: cosine over all chunks with one BLAS thread, BM25, fusion and selection; not the
query's embedding (cached), and not Chroma (the service's dense search is HNSW in another
process), so they compare settings with each other, not with /query.

Splits: SciFact tunes on its train qrels and reports on its test qrels; the others, which
have no train split, are halved by the sha256 of each question's id (``tune`` and ``report``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import itertools
import json
import math
import re
import sys
import time
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import datasets  # noqa: E402
from core.config import DEFAULT_EMBEDDING_MODEL, IngestionConfig  # noqa: E402
from ingest import context  # noqa: E402

RRF_K = 60  # as query.retrieval.RRF_K
NDCG_DEPTH = 100  # chunks read for document nDCG@10, as bench/quality.py asks /query for
HIT_DEPTH = 5  # chunks in an answer's context (RetrievalConfig.top_k's default)
EVIDENCE_PREFIX = 120  # characters of a reference passage that must appear in the retrieved text
MAX_POOL = 400  # candidates kept per list in the rankings cache (the service's pool for top_k=100)
DEFAULT_CACHE = Path("/tmp/rk-lab")
FINANCEBENCH = datasets.FINANCEBENCH
ARAGOG_QA = datasets.DATASETS / "aragog-arxiv-qa" / "qa.jsonl"
JSQUAD_QA = datasets.DATASETS / "jsquad-v1.3-valid" / "qa.jsonl"

Mode = Literal["dense", "bm25", "hybrid"]
Fusion = Literal["rrf", "minmax", "zscore"]
Metadata = Mapping[str, Any]


def log(message: str) -> None:
    print(f"[lab {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- document titles and index-text hooks -------------------------------------------------------------

_TRIVIAL_TITLES = frozenset(
    {"untitled", "document", "title", "pdf", "none", "united states securities and exchange commission"}
    # Headings that Unstructured often takes for a document's first Title (the paper's own title is
    # seldom classified Title by the fast PDF strategy).
    | {"abstract", "introduction", "contents", "table of contents", "summary", "preface", "index"}
)
_ACCESSION_LIKE = re.compile(r"^[\d\W_]+$")  # SEC accession numbers, dates, page numbers
_OFFICE_EXPORT = re.compile(r"^(microsoft (word|powerpoint|excel) - |untitled)|\.(docx?|pdf|pptx?|xlsx?)$", re.I)
_SEPARATORS = re.compile(r"[\s_\-.]+")


def _non_trivial(title: str | None, filename: str) -> str | None:
    """``title`` stripped, unless it says nothing a filename would not (empty, an id, a tool's default)."""
    if not title:
        return None
    text = re.sub(r"\s+", " ", title).strip()
    stem = Path(filename).stem
    letters = sum(ch.isalpha() for ch in text)
    if letters < 3 or len(text) > 300 or _ACCESSION_LIKE.match(text) or _OFFICE_EXPORT.search(text):
        return None
    if text.lower() in _TRIVIAL_TITLES or text.lower() == stem.lower():
        return None
    if text[0].islower() or "@" in text:  # a sentence's tail, an author's e-mail line
        return None
    return text


def _metadata_title(data: bytes, filename: str) -> str | None:
    """The title a PDF's info dictionary or a DOCX's core properties give, if any."""
    if data.startswith(b"%PDF"):
        from pypdf import PdfReader

        try:
            info = PdfReader(io.BytesIO(data), strict=False).metadata
        except Exception:  # pypdf raises many types on odd files; a title is optional
            return None
        return str(info.title) if info is not None and info.title else None
    if data.startswith(b"PK") and filename.lower().endswith(".docx"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                core_xml = archive.read("docProps/core.xml").decode("utf-8", "replace")
        except (KeyError, zipfile.BadZipFile):
            return None
        found = re.search(r"<dc:title>(.*?)</dc:title>", core_xml, re.S)
        return found.group(1) if found else None
    return None


def filename_words(filename: str) -> str:
    """``JOHNSON_JOHNSON_2022Q4_EARNINGS.pdf`` -> ``JOHNSON JOHNSON 2022Q4 EARNINGS``."""
    return _SEPARATORS.sub(" ", Path(filename).stem).strip() or filename


def _first_title_element(elements_or_chunks: Iterable[Any]) -> str | None:
    """The first Title element's text; for chunks, the first non-empty ``section`` (a Title before it)."""
    for item in elements_or_chunks:
        if getattr(item, "category", None) == "Title":
            text = str(getattr(item, "text", "")).strip()
        else:
            text = str((getattr(item, "metadata", None) or {}).get("section") or "").strip()
        if text:
            return text
    return None


def document_title(data: bytes, filename: str, elements_or_chunks: Iterable[Any]) -> str:
    """A document's title: its PDF/DOCX metadata title if non-trivial, else its first Title element, else its filename.

    ``elements_or_chunks`` are Unstructured elements (their first ``Title``) or ragkeep
    chunks (the first non-empty ``section``, which is the text of the Title before the chunk).
    A first Title that is trivial (a heading such as "Abstract", a fragment, an e-mail
    line) gives way to the filename rather than to a later Title.
    """
    return resolve_title(_metadata_title(data, filename), filename, elements_or_chunks)


def resolve_title(metadata_title: str | None, filename: str, elements_or_chunks: Iterable[Any]) -> str:
    """``document_title`` once the file's metadata title has been read."""
    title = _non_trivial(metadata_title, filename)
    if title is None:
        element = _first_title_element(elements_or_chunks)
        title = _non_trivial(element[:200] if element else None, filename)
    return title or filename_words(filename)


class IndexHook(Protocol):
    def __call__(self, chunk_text: str, chunk_metadata: Metadata, document_title: str) -> str: ...


def plain_hook(chunk_text: str, chunk_metadata: Metadata, document_title: str) -> str:
    """The chunk as ragkeep indexes it today."""
    return chunk_text


def title_hook(chunk_text: str, chunk_metadata: Metadata, document_title: str) -> str:
    """A contextual chunk header: the document's title above the chunk."""
    return f"{document_title}\n\n{chunk_text}"


def title_section_hook(chunk_text: str, chunk_metadata: Metadata, document_title: str) -> str:
    """The document's title and the chunk's section (when it says something the title does not)."""
    section = str(chunk_metadata.get("section") or "").strip()
    if not section or section.lower() == document_title.lower():
        return title_hook(chunk_text, chunk_metadata, document_title)
    return f"{document_title} — {section}\n\n{chunk_text}"


def _ingest_context(mode: str) -> IndexHook:
    """``ingest.context.indexed_text`` (work in progress elsewhere), to measure it beside the lab's own hooks.

    It reads the chunk's ``title``/``section_path`` metadata, which only chunks parsed by the
    newer ``partition_document`` carry; older caches fall back to the filename, as ingest does.
    """

    def hook(chunk_text: str, chunk_metadata: Metadata, document_title: str) -> str:
        filename = str(chunk_metadata.get("filename") or "")
        text: str = context.indexed_text(chunk_text, chunk_metadata, filename, mode)  # type: ignore[arg-type]
        return text

    return hook


HOOKS: dict[str, IndexHook] = {
    "plain": plain_hook,
    "title": title_hook,
    "title_section": title_section_hook,
    "ingest_title": _ingest_context("title"),
    "ingest_title_section": _ingest_context("title_section"),
}


def register_hook(name: str, hook: IndexHook) -> None:
    """Make ``hook`` available to configurations as ``<config>@<name>`` (its name keys the caches)."""
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError("hook names are lowercase letters, digits and underscores (they name cache files)")
    HOOKS[name] = hook


# --- datasets -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    relevant: frozenset[str]  # document file names
    evidence: tuple[str, ...] = ()  # reference passages (financebench)


@dataclass(frozen=True)
class Dataset:
    name: str
    files: Callable[[], list[tuple[str, bytes]]]
    splits: Callable[[], dict[str, list[Question]]]  # split name -> questions
    tune_split: str
    report_split: str
    primary: str  # the metric tuning maximises
    depth: int  # chunks retrieved per question


def holdout(questions: Sequence[Question]) -> dict[str, list[Question]]:
    """Questions halved by the sha256 of their id: stable under reordering and additions."""
    halves: dict[str, list[Question]] = {"tune": [], "report": []}
    for question in questions:
        digit = hashlib.sha256(question.id.encode()).digest()[0]
        halves["tune" if digit % 2 == 0 else "report"].append(question)
    return halves


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _scifact_split(qrels: str) -> list[Question]:
    texts = {q["_id"]: q["text"] for q in _jsonl(datasets.SCIFACT / "queries.jsonl")}
    relevant: dict[str, set[str]] = defaultdict(set)
    for line in (datasets.SCIFACT / "qrels" / qrels).read_text().splitlines()[1:]:
        query_id, doc_id, score = line.split("\t")
        if int(score) > 0:
            relevant[query_id].add(f"{doc_id}.txt")
    return [Question(f"scifact-{q}", texts[q], frozenset(docs)) for q, docs in sorted(relevant.items())]


def scifact_splits() -> dict[str, list[Question]]:
    return {"train": _scifact_split("train.tsv"), "test": _scifact_split("test.tsv")}


def aragog_splits() -> dict[str, list[Question]]:
    items = [q for q in _jsonl(ARAGOG_QA) if q["source_doc_available"]]
    return holdout([Question(q["id"], q["question"], frozenset([q["source_doc"]])) for q in items])


def financebench_files() -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in sorted((FINANCEBENCH / "source_files").glob("*.pdf"))]


def financebench_splits() -> dict[str, list[Question]]:
    questions = [
        Question(q["id"], q["question"], frozenset(q["source_docs"]), tuple(q["reference_contexts"]))
        for q in _jsonl(FINANCEBENCH / "qa.jsonl")
    ]
    return holdout(questions)


def _quarterly(name: str) -> bool:
    return "_10K" not in name


def financebench_quarterly_files() -> list[tuple[str, bytes]]:
    """The 15 filings of financebench-subset that are not annual reports (10-Qs, 8-Ks, earnings releases).

    A smaller corpus (about a tenth of the pages) for what costs a full parse, e.g. an ingestion option.
    """
    return [(name, data) for name, data in financebench_files() if _quarterly(name)]


def financebench_quarterly_splits() -> dict[str, list[Question]]:
    """Questions on those filings only, each in the half it has in ``financebench``."""
    return {
        half: [q for q in questions if all(_quarterly(doc) for doc in q.relevant)]
        for half, questions in financebench_splits().items()
    }


def jsquad_files() -> list[tuple[str, bytes]]:
    return datasets.jsquad()[0]


def jsquad_splits() -> dict[str, list[Question]]:
    """The questions ``make bench`` asks (every 4th), with their ids for the hold-out."""
    items = _jsonl(JSQUAD_QA)[::4]
    asked = datasets.jsquad()[1]
    if [q["question"] for q in items] != [text for text, _ in asked]:
        raise RuntimeError("bench.datasets.jsquad() no longer takes every 4th question; update the lab")
    return holdout([Question(q["id"], q["question"], frozenset([q["doc_id"]])) for q in items])


DATASETS: dict[str, Dataset] = {
    "scifact": Dataset("scifact", datasets.scifact_files, scifact_splits, "train", "test", "ndcg@10", NDCG_DEPTH),
    "aragog": Dataset("aragog", datasets.aragog_files, aragog_splits, "tune", "report", "hit@5", HIT_DEPTH),
    "financebench": Dataset(
        "financebench", financebench_files, financebench_splits, "tune", "report", "hit@5", HIT_DEPTH
    ),
    "financebench_quarterly": Dataset(
        "financebench_quarterly",
        financebench_quarterly_files,
        financebench_quarterly_splits,
        "tune",
        "report",
        "hit@5",
        HIT_DEPTH,
    ),
    "jsquad": Dataset("jsquad", jsquad_files, jsquad_splits, "tune", "report", "ndcg@10", NDCG_DEPTH),
}


# --- metrics --------------------------------------------------------------------------------------------


def ndcg_at_k(ranked_docs: Sequence[str], relevant: Iterable[str], k: int = 10) -> float:
    """Binary-relevance nDCG@k over documents (the lab's and ``make bench``'s, bench/quality.py)."""
    wanted = set(relevant)
    dcg = sum(1 / math.log2(i + 2) for i, doc in enumerate(ranked_docs[:k]) if doc in wanted)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(wanted))))
    return dcg / ideal if ideal else 0.0


def documents_in_order(chunk_docs: Sequence[str]) -> list[str]:
    """Documents ranked by their best chunk: the order in which they first appear."""
    return list(dict.fromkeys(chunk_docs))


def hit_at_k(chunk_docs: Sequence[str], relevant: Iterable[str], k: int = 5) -> float:
    """1 if any relevant document is behind one of the first ``k`` chunks."""
    return 1.0 if set(chunk_docs[:k]) & set(relevant) else 0.0


def document_recall_at_k(chunk_docs: Sequence[str], relevant: Iterable[str], k: int = 5) -> float:
    """Share of the relevant documents behind the first ``k`` chunks (multi-document questions)."""
    return reference_recall_at_k(chunk_docs, [frozenset([doc]) for doc in set(relevant)], k)


def reference_recall_at_k(chunk_docs: Sequence[str], references: Sequence[Iterable[str]], k: int = 5) -> float:
    """Share of the references behind the first ``k`` chunks; a reference is found by any one of its documents.

    A reference with several documents is a figure that more than one filing states (a
    10-K repeats the previous years); a plain list of documents is one document per reference.
    """
    found = set(chunk_docs[:k])
    return sum(bool(found & set(docs)) for docs in references) / len(references) if references else 0.0


_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Lowercase, whitespace collapsed to single spaces."""
    return _SPACES.sub(" ", text.lower()).strip()


def evidence_recall(evidence: Sequence[str], chunk_texts: Sequence[str], prefix: int = EVIDENCE_PREFIX) -> float:
    """Share of reference passages whose normalised first ``prefix`` characters occur in the chunks' text.

    The chunks are concatenated (normalised, joined by a space), so a passage that starts in
    one chunk and runs on into the next retrieved one still counts.
    """
    if not evidence:
        return 0.0
    haystack = " ".join(normalise(text) for text in chunk_texts)
    return sum(normalise(passage)[:prefix] in haystack for passage in evidence) / len(evidence)


# --- fusion and selection -------------------------------------------------------------------------------

Ranked = Sequence[tuple[int, float]]  # (chunk, score), best first


def rrf(rankings: Sequence[Sequence[int]], weights: Sequence[float] | None = None, k: int = RRF_K) -> list[int]:
    """(Weighted) reciprocal-rank fusion: list ``i`` adds ``weights[i] / (k + rank)``; ties keep first-seen order.

    With equal weights this is ``query.retrieval.Fusion("rrf")``.
    """
    weights = weights or [1.0] * len(rankings)
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, chunk in enumerate(ranking, start=1):
            scores[chunk] = scores.get(chunk, 0.0) + weight / (k + rank)
    return sorted(scores, key=lambda chunk: -scores[chunk])


def normalised_scores(ranked: Ranked, method: Literal["minmax", "zscore"]) -> dict[int, float]:
    """One list's scores on a common scale: min-max to [0, 1], or z-scores (a constant list scores 0)."""
    if not ranked:
        return {}
    values = np.array([score for _, score in ranked], dtype=np.float64)
    if method == "minmax":
        spread = values.max() - values.min()
        scaled = (values - values.min()) / spread if spread > 0 else np.ones_like(values)
    else:
        std = values.std()
        scaled = (values - values.mean()) / std if std > 0 else np.zeros_like(values)
    return {chunk: float(s) for (chunk, _), s in zip(ranked, scaled, strict=True)}


def fused_scores(
    lists: Sequence[Ranked], weights: Sequence[float], method: Literal["minmax", "zscore"]
) -> dict[int, float]:
    """Weighted sum of per-list normalised scores over the union of candidates.

    A candidate missing from a list gets that list's lowest normalised score (0 for min-max),
    as if it ranked just below the list's last candidate.
    """
    totals: dict[int, float] = {}
    scaled = [normalised_scores(ranked, method) for ranked in lists]
    floors = [min(s.values()) if s else 0.0 for s in scaled]
    for chunk in dict.fromkeys(chunk for ranked in lists for chunk, _ in ranked):
        totals[chunk] = sum(w * s.get(chunk, floor) for s, w, floor in zip(scaled, weights, floors, strict=True))
    return totals


def score_fusion(lists: Sequence[Ranked], weights: Sequence[float], method: Literal["minmax", "zscore"]) -> list[int]:
    """The candidates of ``fused_scores``, best first."""
    totals = fused_scores(lists, weights, method)
    return sorted(totals, key=lambda chunk: -totals[chunk])


def title_match(corpus: Corpus, question: str) -> np.ndarray:
    """Per document: the question's match with its title (``BM25Index.title_match``, 0-1), as /query computes it."""
    from core.bm25 import BM25Index

    if corpus.title_index is None:  # the service's title match (an index of titles alone)
        corpus.title_index = BM25Index.build([], [], {str(i): title for i, title in enumerate(corpus.titles)})
    scores = np.zeros(len(corpus.titles), dtype=np.float64)
    for doc, score in corpus.title_index.title_match(question).items():
        scores[int(doc)] = score
    return scores


def cap_per_document(ranked: Sequence[int], doc_of: Sequence[int] | np.ndarray, cap: int, k: int) -> list[int]:
    """The first ``k`` chunks of ``ranked`` keeping at most ``cap`` per document."""
    kept: list[int] = []
    per_doc: dict[int, int] = defaultdict(int)
    for chunk in ranked:
        doc = int(doc_of[chunk])
        if per_doc[doc] < cap:
            per_doc[doc] += 1
            kept.append(chunk)
            if len(kept) == k:
                break
    return kept


def mmr(ranked: Sequence[int], vectors: np.ndarray, lam: float, k: int) -> list[int]:
    """Maximal marginal relevance over ``ranked``: relevance is 1 at the top falling linearly with rank.

    Rank-based relevance lets MMR follow any fusion; redundancy is the largest cosine to a
    chunk already chosen.
    """
    if not ranked:
        return []
    candidates = np.asarray(ranked)
    relevance = 1.0 - np.arange(len(candidates)) / len(candidates)
    vecs = vectors[candidates]
    redundancy = np.full(len(candidates), -np.inf)
    chosen: list[int] = []
    available = np.ones(len(candidates), dtype=bool)
    for _ in range(min(k, len(candidates))):
        penalty = np.where(np.isinf(redundancy), 0.0, redundancy)
        value = np.where(available, lam * relevance - (1 - lam) * penalty, -np.inf)
        best = int(np.argmax(value))
        chosen.append(int(candidates[best]))
        available[best] = False
        redundancy = np.maximum(redundancy, vecs @ vecs[best])
    return chosen


# --- configurations -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabConfig:
    """One retrieval setting. ``pool=None`` is the service's rule: ``max(4 * top_k, 20)`` candidates per list."""

    name: str
    mode: Mode = "dense"
    fusion: Fusion = "rrf"
    w_dense: float = 1.0
    w_bm25: float = 1.0
    rrf_k: int = RRF_K
    pool: int | None = None
    per_doc_cap: int | None = None
    mmr_lambda: float | None = None
    hook: str = "plain"
    title_weight: float | None = None  # + W x the question's BM25 match with the chunk's document title (max 1)
    title_by_length: bool = False  # ``+titlen=W``: W x (1 - 1/n) for a document of n chunks

    def pool_for(self, depth: int) -> int:
        return min(self.pool or max(depth * 4, 20), MAX_POOL)


def parse_config(spec: str) -> LabConfig:
    """``<base>[@hook][+cap=N][+mmr=L][+pool=P][+k=K][+title=W][+titlen=W]``; bases ``dense``, ``bm25``,
    ``rrf`` (= ``hybrid``), ``wrrf:<w_dense>``, ``minmax:<w_dense>`` and ``zscore:<w_dense>``
    (``w_bm25 = 1 - w_dense``). ``+title=W`` adds W x the title match; ``+titlen=W`` does it as
    /query does, W x (1 - 1/n) for a document of n chunks.
    """
    base, *modifiers = spec.split("+")
    base, _, hook = base.partition("@")
    kind, _, weight = base.partition(":")
    config: LabConfig
    if kind in ("dense", "bm25"):
        config = LabConfig(spec, mode=kind)  # type: ignore[arg-type]  # checked just above
    elif kind in ("rrf", "hybrid"):
        config = LabConfig(spec, mode="hybrid", fusion="rrf")
    elif kind in ("wrrf", "minmax", "zscore"):
        w = float(weight or 0.5)
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"{spec}: the dense weight is between 0 and 1")
        fusion: Fusion = "rrf" if kind == "wrrf" else kind  # type: ignore[assignment]  # one of the two left
        config = LabConfig(spec, mode="hybrid", fusion=fusion, w_dense=w, w_bm25=round(1.0 - w, 6))
    else:
        raise ValueError(f"unknown configuration {spec!r}")
    if hook:
        if hook not in HOOKS:
            raise ValueError(f"unknown hook {hook!r} (known: {', '.join(HOOKS)})")
        config = replace(config, hook=hook)
    for modifier in modifiers:
        key, _, value = modifier.partition("=")
        if key not in _MODIFIERS:
            raise ValueError(f"{spec}: unknown modifier {key!r}")
        config = replace(config, **_MODIFIERS[key](value))
    if config.title_weight and (config.mode != "hybrid" or config.fusion == "rrf"):
        raise ValueError(f"{spec}: +title adds to fused scores: use it with minmax or zscore")
    return config


_MODIFIERS: dict[str, Callable[[str], dict[str, Any]]] = {
    "cap": lambda value: {"per_doc_cap": int(value)},
    "mmr": lambda value: {"mmr_lambda": float(value)},
    "pool": lambda value: {"pool": int(value)},
    "k": lambda value: {"rrf_k": int(value)},
    "title": lambda value: {"title_weight": float(value)},
    # as /query weighs the title match: W x (1 - 1/n) for a document of n chunks
    "titlen": lambda value: {"title_weight": float(value), "title_by_length": True},
}


# --- corpus: parse, title, embed (cached) ---------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """A parsed chunk as cached (the fields of ``ingest.partition.Chunk`` the lab reads)."""

    text: str
    metadata: Metadata


@dataclass
class Corpus:
    """One dataset's chunks under one hook: texts, documents and vectors, row-aligned."""

    doc_names: list[str]
    chunk_doc: np.ndarray  # document index of each chunk
    chunk_texts: list[str]  # as parsed (evidence is looked for in these)
    index_texts: list[str]  # what the hook made of them (embedded and BM25-indexed)
    vectors: np.ndarray
    titles: list[str]
    failures: dict[str, str] = field(default_factory=dict)
    title_index: Any = field(default=None, repr=False)  # BM25 over ``titles``, built by ``title_match``

    @cached_property
    def chunks_per_document(self) -> np.ndarray:
        """Each document's chunk count (at least 1)."""
        return np.maximum(np.bincount(self.chunk_doc, minlength=len(self.doc_names)), 1).astype(np.float64)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _atomic_save_npz(path: Path, **arrays: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp.npz")
    np.savez(partial, **arrays)
    partial.replace(path)


def imported_chunk_texts(dataset: Dataset, config: IngestionConfig, folder: Path) -> dict[str, Any]:
    """Chunk texts that ``bench.injection_fp --cache <folder>`` already parsed (``partition_document``, same config).

    That cache keeps each file's chunk texts under ``<sha256[:20]>-<parse hash>.json`` but no
    chunk metadata: the chunks get only their filename, and titles come from the file's
    metadata or its name. Enough for BM25 and evidence recall without parsing again.
    """
    documents, failures = [], {}
    for name, data in dataset.files():
        stored_path = folder / f"{hashlib.sha256(data).hexdigest()[:20]}-{config.parse_hash()}.json"
        if not stored_path.exists():
            raise SystemExit(f"{stored_path} is missing: {name} was not parsed into {folder}")
        stored = json.loads(stored_path.read_text(encoding="utf-8"))
        if "error" in stored:
            failures[name] = stored["error"]
            continue
        pieces = [[text, {"filename": name}] for text in stored["texts"]]
        documents.append({"name": name, "metadata_title": _metadata_title(data, name), "chunks": pieces})
    return {"documents": documents, "failures": failures, "parse_seconds": None, "imported_from": str(folder)}


def _parse_one(name: str, data: bytes, config: IngestionConfig, max_pages: int) -> dict[str, Any]:
    """One file through ``partition_document``, as the worker parses it: its chunks, or the error it fails with."""
    from core.filetypes import detect_file_kind
    from ingest.partition import partition_document

    try:
        chunks = partition_document(data, name, detect_file_kind(data, name), config, max_pages)
    except Exception as exc:  # a document the service would fail: recorded, as the service does
        return {"name": name, "error": f"{type(exc).__name__}: {exc}"}
    pieces = [[c.text, c.metadata] for c in chunks]
    return {"name": name, "metadata_title": _metadata_title(data, name), "chunks": pieces}


def parsed_chunks(
    dataset: Dataset, config: IngestionConfig, cache: Path, import_from: Path | None = None, workers: int = 1
) -> dict[str, Any]:
    """Every document's chunks (text, metadata) and title, parsed once per ingestion config.

    ``workers`` processes parse files side by side (the order of the results stays the files' order).
    """
    suffix = "-imported" if import_from else ""
    path = cache / "chunks" / f"{dataset.name}-{config.parse_hash()}{suffix}.json"
    if path.exists():
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded
    if import_from is not None:
        imported = imported_chunk_texts(dataset, config, import_from)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(imported, ensure_ascii=False))
        return imported
    import functools
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from core.settings import LimitSettings

    parse = functools.partial(_parse_one, config=config, max_pages=LimitSettings().max_pdf_pages)
    documents, failures = [], {}
    started = time.perf_counter()
    files = dataset.files()
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=spawn) if workers > 1 else _InProcess() as pool:
        outcomes = pool.map(parse, [name for name, _ in files], [data for _, data in files])
        for number, outcome in enumerate(outcomes, start=1):
            if "error" in outcome:
                failures[outcome["name"]] = outcome["error"]
            else:
                documents.append(outcome)
            if number % 500 == 0 or (len(files) < 100 and number % 5 == 0):
                log(f"  {dataset.name}: parsed {number}/{len(files)} in {time.perf_counter() - started:.0f} s")
    result = {
        "documents": documents,
        "failures": failures,
        "parse_seconds": round(time.perf_counter() - started, 1),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, ensure_ascii=False))
    log(f"  {dataset.name}: parsed {len(files)} documents in {result['parse_seconds']} s ({len(failures)} failed)")
    return result


class _InProcess:
    """``ProcessPoolExecutor``'s ``map`` in this process (one worker: no process to start)."""

    def __enter__(self) -> _InProcess:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def map(self, function: Callable[..., Any], *iterables: Iterable[Any]) -> Iterable[Any]:
        return map(function, *iterables)


class _Embedders:
    """One ``Embedder`` per model, loaded only when something must be embedded."""

    def __init__(self) -> None:
        self._by_model: dict[str, Any] = {}

    def get(self, model: str) -> Any:
        if model not in self._by_model:
            from core.embedding import Embedder
            from core.settings import Settings, WorkerSettings

            backend = Settings.model_fields["embedding_backend"].default
            batch = WorkerSettings.model_fields["embed_batch_size"].default
            self._by_model[model] = Embedder(model, batch_size=batch, threads=None, backend=backend)
        return self._by_model[model]


EMBEDDERS = _Embedders()


def _known_vectors(folder: Path, prefix: str, model: str) -> dict[str, np.ndarray]:
    """Vectors computed for this dataset and model (any parse config or hook, finished or not), by text sha256."""
    known: dict[str, np.ndarray] = {}
    for path in sorted(folder.glob(f"{prefix}*.npz")):
        if not path.name.endswith((f"-{model}.npz", f"-{model}.partial.npz")):
            continue
        with np.load(path) as stored:
            known.update(zip(stored["shas"].tolist(), stored["vectors"], strict=True))
    return known


def embed_texts(texts: Sequence[str], path: Path, known_prefix: str, model: str) -> np.ndarray:
    """Vectors of ``texts`` in order, reusing any computed for the same dataset and model; progress is saved."""
    if path.exists():
        with np.load(path) as stored:
            if stored["shas"].tolist() == [_sha(t) for t in texts]:
                return np.asarray(stored["vectors"])
    shas = [_sha(t) for t in texts]
    known = _known_vectors(path.parent, known_prefix, model)
    missing = list(dict.fromkeys(sha for sha in shas if sha not in known))
    by_sha = dict(zip(shas, texts, strict=True))
    if missing:
        log(f"  embedding {len(missing)} texts ({len(shas) - len(missing)} reused) -> {path.name}")
        embedder = EMBEDDERS.get(model)
        started = time.perf_counter()
        progress = path.with_name(path.stem + ".partial.npz")
        for start in range(0, len(missing), 2000):
            part = missing[start : start + 2000]
            known.update(zip(part, embedder.embed([by_sha[s] for s in part]), strict=True))
            done = missing[: start + len(part)]
            _atomic_save_npz(progress, shas=np.array(done), vectors=np.stack([known[s] for s in done]))
            rate = len(done) / (time.perf_counter() - started)
            log(f"    {len(done)}/{len(missing)} ({rate:.1f} texts/s)")
        # Drop the progress file only once the full one is written.
        vectors = np.stack([known[s] for s in shas]).astype(np.float32)
        _atomic_save_npz(path, shas=np.array(shas), vectors=vectors)
        seconds = round(time.perf_counter() - started, 1)
        stats = {"texts": len(shas), "embedded": len(missing), "seconds": seconds}
        path.with_suffix(".json").write_text(json.dumps(stats))
        progress.unlink(missing_ok=True)
        return vectors
    vectors = np.stack([known[s] for s in shas]).astype(np.float32) if shas else np.zeros((0, 384), np.float32)
    _atomic_save_npz(path, shas=np.array(shas), vectors=vectors)
    return vectors


def load_corpus(
    dataset: Dataset,
    hook: str,
    config: IngestionConfig,
    model: str,
    cache: Path,
    import_from: Path | None = None,
    lexical_only: bool = False,
    workers: int = 1,
) -> Corpus:
    """The dataset's chunks under ``hook``, embedded unless ``lexical_only`` (then every vector is zero)."""
    parsed = parsed_chunks(dataset, config, cache, import_from, workers)
    make = HOOKS[hook]
    if any("metadata_title" not in document for document in parsed["documents"]):  # parsed by an earlier lab
        metadata_titles = {name: _metadata_title(data, name) for name, data in dataset.files()}
        for document in parsed["documents"]:
            document["metadata_title"] = metadata_titles.get(document["name"])
    doc_names, titles, chunk_doc, chunk_texts, index_texts = [], [], [], [], []
    for number, document in enumerate(parsed["documents"]):
        chunks = [Chunk(text, metadata) for text, metadata in document["chunks"]]
        if hook.startswith("ingest_") and chunks:  # the title line ingest's headers carry, as /query's title match
            title = context.header(chunks[0].metadata, document["name"], "title")
        else:
            title = resolve_title(document["metadata_title"], document["name"], chunks)
        doc_names.append(document["name"])
        titles.append(title)
        for chunk in chunks:
            chunk_doc.append(number)
            chunk_texts.append(chunk.text)
            index_texts.append(make(chunk.text, chunk.metadata, title))
    key = f"{dataset.name}-{config.parse_hash()}"
    path = cache / "vectors" / f"{key}-{hook}-{model}.npz"
    if lexical_only:
        vectors = np.zeros((len(index_texts), 384), dtype=np.float32)
    else:
        vectors = embed_texts(index_texts, path, f"{dataset.name}-", model)  # any parse config's vectors
    return Corpus(
        doc_names,
        np.asarray(chunk_doc, dtype=np.int32),
        chunk_texts,
        index_texts,
        vectors,
        titles,
        parsed["failures"],
    )


def question_vectors(dataset: Dataset, questions: Sequence[Question], model: str, cache: Path) -> np.ndarray:
    """Each question's vector from ``Embedder.embed_query``, as /query computes it; cached per dataset."""
    path = cache / "queries" / f"{dataset.name}-{model}.npz"
    known: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path) as stored:
            known = dict(zip(stored["shas"].tolist(), stored["vectors"], strict=True))
    missing = [q.text for q in questions if _sha(q.text) not in known]
    if missing:
        embedder = EMBEDDERS.get(model)
        for text in dict.fromkeys(missing):
            known[_sha(text)] = embedder.embed_query(text)[0]
        _atomic_save_npz(path, shas=np.array(list(known)), vectors=np.stack(list(known.values())))
    return np.stack([known[_sha(q.text)] for q in questions]).astype(np.float32)


# --- candidate lists (cached) and evaluation ------------------------------------------------------------


@dataclass
class Candidates:
    """Per question: the top ``MAX_POOL`` chunks by cosine and by BM25 (-1 pads), and the search times."""

    question_ids: list[str]
    dense_ids: np.ndarray
    dense_scores: np.ndarray
    bm25_ids: np.ndarray
    bm25_scores: np.ndarray
    dense_ms: np.ndarray
    bm25_ms: np.ndarray

    def row(self, question_id: str) -> int:
        return self._rows[question_id]

    def __post_init__(self) -> None:
        self._rows = {q: i for i, q in enumerate(self.question_ids)}


def bm25_source_sha() -> str:
    """sha256 (12 hex) of core/bm25.py as it is on disk: which BM25 scored the cached rankings."""
    return hashlib.sha256((ROOT / "core" / "bm25.py").read_bytes()).hexdigest()[:12]


def dense_search(vectors: np.ndarray, query: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top ``limit`` (vectors are L2-normalised), best first."""
    scores = vectors @ query
    limit = min(limit, len(scores))
    top = np.argpartition(-scores, limit - 1)[:limit] if limit < len(scores) else np.arange(len(scores))
    order = top[np.argsort(-scores[top], kind="stable")]
    return order, scores[order]


def candidates(
    dataset: Dataset,
    corpus: Corpus,
    hook: str,
    config: IngestionConfig,
    model: str,
    cache: Path,
    lexical_only: bool = False,
) -> Candidates:
    questions = [q for split in dataset.splits().values() for q in split]
    questions = list({q.id: q for q in questions}.values())
    path = cache / "rankings" / f"{dataset.name}-{config.parse_hash()}-{hook}-{model}-{MAX_POOL}.npz"
    # core/bm25.py is part of the key: a change of its scoring must not be hidden by the cache.
    fingerprint = _sha(
        json.dumps([[q.id, q.text] for q in questions])
        + _sha("".join(corpus.index_texts))
        + bm25_source_sha()
        + ("lexical only" if lexical_only else "")
    )
    if path.exists():
        with np.load(path) as stored:
            if str(stored["fingerprint"]) == fingerprint:
                return Candidates(
                    stored["question_ids"].tolist(),
                    np.asarray(stored["dense_ids"]),
                    np.asarray(stored["dense_scores"]),
                    np.asarray(stored["bm25_ids"]),
                    np.asarray(stored["bm25_scores"]),
                    np.asarray(stored["dense_ms"]),
                    np.asarray(stored["bm25_ms"]),
                )
    from core.bm25 import BM25Index

    started = time.perf_counter()
    index = BM25Index.build([str(i) for i in range(len(corpus.index_texts))], corpus.index_texts)
    seconds = time.perf_counter() - started
    log(f"  {dataset.name}/{hook}: BM25 index of {len(corpus.index_texts)} chunks in {seconds:.1f} s")
    if lexical_only:
        queries = np.zeros((len(questions), corpus.vectors.shape[1]), dtype=np.float32)
    else:
        queries = question_vectors(dataset, questions, model, cache)
    n = len(questions)
    dense_ids = np.full((n, MAX_POOL), -1, np.int32)
    dense_scores = np.zeros((n, MAX_POOL), np.float32)
    bm25_ids = np.full((n, MAX_POOL), -1, np.int32)
    bm25_scores = np.zeros((n, MAX_POOL), np.float32)
    dense_ms, bm25_ms = np.zeros(n), np.zeros(n)
    for row, question in enumerate(questions):
        t0 = time.perf_counter()
        ids, scores = dense_search(corpus.vectors, queries[row], MAX_POOL)
        t1 = time.perf_counter()
        lexical = index.search(question.text, MAX_POOL)
        t2 = time.perf_counter()
        dense_ids[row, : len(ids)], dense_scores[row, : len(ids)] = ids, scores
        for position, (chunk, score) in enumerate(lexical):
            bm25_ids[row, position], bm25_scores[row, position] = int(chunk), score
        dense_ms[row], bm25_ms[row] = (t1 - t0) * 1000, (t2 - t1) * 1000
    log(
        f"  {dataset.name}/{hook}: {n} questions searched; p50 dense {np.median(dense_ms):.1f} ms, "
        f"BM25 {np.median(bm25_ms):.1f} ms"
    )
    _atomic_save_npz(
        path,
        fingerprint=np.array(fingerprint),
        question_ids=np.array([q.id for q in questions]),
        dense_ids=dense_ids,
        dense_scores=dense_scores,
        bm25_ids=bm25_ids,
        bm25_scores=bm25_scores,
        dense_ms=dense_ms,
        bm25_ms=bm25_ms,
    )
    return Candidates([q.id for q in questions], dense_ids, dense_scores, bm25_ids, bm25_scores, dense_ms, bm25_ms)


def retime(dataset: Dataset, corpus: Corpus, found: Candidates, model: str, cache: Path, lexical_only: bool) -> None:
    """Time each question's dense and BM25 search again, in this process and now (cached times are stale).

    BLAS runs on one thread here: on a shared 2-core machine a two-thread matrix-vector
    product waits for a time slice and takes 100 times longer than it computes.
    """
    from core.bm25 import BM25Index

    questions = {q.id: q for split in dataset.splits().values() for q in split}
    ordered = [questions[q] for q in found.question_ids]
    queries = (
        np.zeros((len(ordered), corpus.vectors.shape[1]), np.float32)
        if lexical_only
        else question_vectors(dataset, ordered, model, cache)
    )
    index = BM25Index.build([str(i) for i in range(len(corpus.index_texts))], corpus.index_texts)
    with _one_blas_thread():
        for row, question in enumerate(ordered):
            t0 = time.perf_counter()
            dense_search(corpus.vectors, queries[row], MAX_POOL)
            t1 = time.perf_counter()
            index.search(question.text, MAX_POOL)
            found.dense_ms[row], found.bm25_ms[row] = (t1 - t0) * 1000, (time.perf_counter() - t1) * 1000


def _one_blas_thread() -> Any:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # not installed: time with whatever BLAS does
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1, "blas")


def _ranked(ids: np.ndarray, scores: np.ndarray, limit: int) -> list[tuple[int, float]]:
    valid = ids[:limit] >= 0
    return list(zip(ids[:limit][valid].tolist(), scores[:limit][valid].tolist(), strict=True))


def select(config: LabConfig, found: Candidates, row: int, corpus: Corpus, depth: int, question: str = "") -> list[int]:
    """The ``depth`` chunks ``config`` returns for one question, from its cached candidates."""
    pool = config.pool_for(depth)
    if config.mode == "dense":
        # Dense alone reads `depth` (top_k) chunks in the service; the pool matters only to MMR and the cap.
        limit = pool if (config.mmr_lambda is not None or config.per_doc_cap) else depth
        ranked = [c for c, _ in _ranked(found.dense_ids[row], found.dense_scores[row], limit)]
    elif config.mode == "bm25":
        limit = pool if (config.mmr_lambda is not None or config.per_doc_cap) else depth
        ranked = [c for c, _ in _ranked(found.bm25_ids[row], found.bm25_scores[row], limit)]
    else:
        dense = _ranked(found.dense_ids[row], found.dense_scores[row], pool)
        lexical = _ranked(found.bm25_ids[row], found.bm25_scores[row], pool)
        weights = (config.w_dense, config.w_bm25)
        if config.fusion == "rrf":
            ranked = rrf([[c for c, _ in dense], [c for c, _ in lexical]], weights, config.rrf_k)
        elif config.title_weight:
            totals = fused_scores([dense, lexical], weights, config.fusion)
            match = config.title_weight * title_match(corpus, question)
            if config.title_by_length:
                from query.retrieval import title_length_factor

                match *= title_length_factor(corpus.chunks_per_document)
            totals = {c: t + match[corpus.chunk_doc[c]] for c, t in totals.items()}
            ranked = sorted(totals, key=lambda chunk: -totals[chunk])
        else:
            ranked = score_fusion([dense, lexical], weights, config.fusion)
    if config.mmr_lambda is not None:
        ranked = mmr(ranked, corpus.vectors, config.mmr_lambda, len(ranked))
    if config.per_doc_cap:
        return cap_per_document(ranked, corpus.chunk_doc, config.per_doc_cap, depth)
    return ranked[:depth]


def score_question(question: Question, chunks: Sequence[int], corpus: Corpus, dataset: Dataset) -> dict[str, float]:
    docs = [corpus.doc_names[corpus.chunk_doc[c]] for c in chunks]
    if dataset.depth == NDCG_DEPTH:
        return {
            "ndcg@10": ndcg_at_k(documents_in_order(docs), question.relevant, 10),
            "recall@10": document_recall_at_k(documents_in_order(docs), question.relevant, 10),
        }
    scores = {"hit@5": hit_at_k(docs, question.relevant, 5), "mrr@5": _reciprocal_rank(docs[:5], question.relevant)}
    if len(question.relevant) > 1:
        scores["doc_recall@5"] = document_recall_at_k(docs, question.relevant, 5)
    if question.evidence:
        scores["evidence_recall@5"] = evidence_recall(question.evidence, [corpus.chunk_texts[c] for c in chunks[:5]])
    return scores


def _reciprocal_rank(docs: Sequence[str], relevant: frozenset[str]) -> float:
    for rank, doc in enumerate(documents_in_order(docs), start=1):
        if doc in relevant:
            return 1.0 / rank
    return 0.0


@dataclass
class Loaded:
    """A dataset under one hook, ready to evaluate any configuration."""

    dataset: Dataset
    corpus: Corpus
    found: Candidates
    splits: dict[str, list[Question]]
    lexical: bool = False  # nothing embedded: only BM25 configurations are evaluated


def evaluate(config: LabConfig, loaded: Loaded, split: str) -> dict[str, Any]:
    """Mean metrics of ``config`` over one split, and the p50 time of one question's retrieval.

    The time is what the search itself takes here (cosine, BM25 when used, fusion, MMR, cap);
    the query's embedding is not in it (computed once and cached).
    """
    questions = loaded.splits[split]
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    times = []
    for question in questions:
        row = loaded.found.row(question.id)
        started = time.perf_counter()
        chunks = select(config, loaded.found, row, loaded.corpus, loaded.dataset.depth, question.text)
        ms = (time.perf_counter() - started) * 1000
        ms += loaded.found.dense_ms[row] if config.mode != "bm25" else 0.0
        ms += loaded.found.bm25_ms[row] if config.mode != "dense" else 0.0
        times.append(ms)
        for metric, value in score_question(question, chunks, loaded.corpus, loaded.dataset).items():
            sums[metric] += value
            counts[metric] += 1
    result: dict[str, Any] = {"questions": len(questions)}
    result |= {metric: round(sums[metric] / counts[metric], 4) for metric in sums}
    result["p50_ms"] = round(float(np.median(times)), 2) if times else None
    return result


# --- runs and tuning ------------------------------------------------------------------------------------


@dataclass
class Lab:
    ingestion: IngestionConfig
    model: str
    cache: Path
    imports: dict[str, Path] = field(default_factory=dict)  # dataset -> injection_fp cache to take texts from
    lexical_only: frozenset[str] = frozenset()  # datasets evaluated by BM25 alone (nothing embedded)
    cached_only: bool = False  # skip (dataset, hook) pairs whose vectors are not cached instead of embedding
    workers: int = 1  # processes that parse documents side by side
    skipped: set[tuple[str, str]] = field(default_factory=set)
    _loaded: dict[tuple[str, str], Loaded] = field(default_factory=dict)

    def lexical(self, name: str, hook: str) -> bool:
        """Whether ``name`` under ``hook`` is scored by BM25 alone: asked for, or not embedded under ``cached_only``."""
        if name in self.lexical_only:
            return True
        if (name, hook) in self._loaded:
            return self._loaded[(name, hook)].lexical
        key = f"{name}-{self.ingestion.parse_hash()}-{hook}-{self.model}"
        return self.cached_only and not (self.cache / "vectors" / f"{key}.npz").exists()

    def load(self, name: str, hook: str) -> Loaded:
        if (name, hook) not in self._loaded:
            dataset = DATASETS[name]
            started = time.perf_counter()
            lexical = self.lexical(name, hook)
            corpus = load_corpus(
                dataset, hook, self.ingestion, self.model, self.cache, self.imports.get(name), lexical, self.workers
            )
            found = candidates(dataset, corpus, hook, self.ingestion, self.model, self.cache, lexical)
            retime(dataset, corpus, found, self.model, self.cache, lexical)
            self._loaded[(name, hook)] = Loaded(dataset, corpus, found, dataset.splits(), lexical)
            log(f"{name}/{hook}: {len(corpus.chunk_texts)} chunks ready in {time.perf_counter() - started:.1f} s")
        return self._loaded[(name, hook)]


def evidence_ceiling(loaded: Loaded) -> float | None:
    """Share of reference passages found anywhere in their source document's chunks (what recall@5 can reach)."""
    by_doc: dict[str, list[str]] = defaultdict(list)
    for chunk, doc in enumerate(loaded.corpus.chunk_doc):
        by_doc[loaded.corpus.doc_names[doc]].append(loaded.corpus.chunk_texts[chunk])
    found, total = 0.0, 0
    for question in (q for split in loaded.splits.values() for q in split):
        if question.evidence:
            texts = [t for doc in sorted(question.relevant) for t in by_doc.get(doc, [])]
            found += evidence_recall(question.evidence, texts) * len(question.evidence)
            total += len(question.evidence)
    return round(found / total, 4) if total else None


def corpus_stats(lab: Lab) -> dict[str, Any]:
    """Per dataset and hook: sizes, failures, where titles came from, and what preparing them cost."""
    stats: dict[str, Any] = {}
    for (name, hook), loaded in lab._loaded.items():
        corpus = loaded.corpus
        parsed = parsed_chunks(loaded.dataset, lab.ingestion, lab.cache, lab.imports.get(name))
        key = f"{name}-{lab.ingestion.parse_hash()}-{hook}-{lab.model}"
        embed_file = lab.cache / "vectors" / f"{key}.json"
        from_filename = sum(t == filename_words(n) for t, n in zip(corpus.titles, corpus.doc_names, strict=True))
        stats[f"{name}/{hook}"] = {
            "documents": len(corpus.doc_names),
            "chunks": len(corpus.chunk_texts),
            "failed": corpus.failures,
            "titles_from_filename": from_filename,
            "title_examples": dict(list(zip(corpus.doc_names, corpus.titles, strict=True))[:5]),
            "parse_seconds": parsed.get("parse_seconds"),
            "chunk_texts_imported_from": parsed.get("imported_from"),
            "lexical_only": loaded.lexical,
            "embedding": json.loads(embed_file.read_text()) if embed_file.exists() else None,
            "questions": {split: len(qs) for split, qs in loaded.splits.items()},
            "evidence_findable": evidence_ceiling(loaded),
            "p50_dense_search_ms": round(float(np.median(loaded.found.dense_ms)), 2),
            "p50_bm25_search_ms": round(float(np.median(loaded.found.bm25_ms)), 2),
        }
    return stats


def run_configs(lab: Lab, names: Sequence[str], configs: Sequence[LabConfig]) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        for config in configs:
            if config.mode != "bm25" and lab.lexical(name, config.hook):
                lab.skipped.add((name, config.hook))
                continue
            loaded = lab.load(name, config.hook)
            for split in (loaded.dataset.tune_split, loaded.dataset.report_split):
                rows.append({"dataset": name, "split": split, "config": config.name, **evaluate(config, loaded, split)})
    return rows


def tuning_grid(hooks: Sequence[str]) -> list[LabConfig]:
    """Fusion settings to search: RRF (k 60 and 20, weighted), min-max and z-score sums, by dense weight."""
    weights = [round(w, 2) for w in np.arange(0.1, 0.95, 0.1)]
    specs = ["rrf", "rrf+k=20"] + [f"wrrf:{w}" for w in weights]
    specs += [f"minmax:{w}" for w in weights] + [f"zscore:{w}" for w in weights]
    return [parse_config(spec if hook == "plain" else _with_hook(spec, hook)) for hook in hooks for spec in specs]


def _with_hook(spec: str, hook: str) -> str:
    base, plus, rest = spec.partition("+")
    return f"{base}@{hook}{plus}{rest}"


def tune(lab: Lab, names: Sequence[str], hooks: Sequence[str]) -> dict[str, Any]:
    """Grid search on the tuning splits; the best per dataset, then the best single setting by its worst gain.

    A setting's gain on a dataset is its primary metric minus that of plain dense retrieval
    (today's default) on the same split; the single setting maximises the smallest gain over
    the datasets. Only then is it evaluated on the reporting splits.
    """
    names = [name for name in names if not lab.lexical(name, "plain")]  # tuning needs dense to compare with
    hooks = [hook for hook in hooks if not any(lab.lexical(name, hook) for name in names)]
    grid = tuning_grid(hooks)
    dense = parse_config("dense")
    gains: dict[str, dict[str, float]] = defaultdict(dict)  # config -> dataset -> gain
    per_dataset: dict[str, Any] = {}
    for name in names:
        dataset = DATASETS[name]
        baseline = evaluate(dense, lab.load(name, "plain"), dataset.tune_split)[dataset.primary]
        scored = []
        for config in grid:
            value = evaluate(config, lab.load(name, config.hook), dataset.tune_split)[dataset.primary]
            gains[config.name][name] = round(value - baseline, 4)
            scored.append((value, config.name))
        scored.sort(key=lambda item: -item[0])
        per_dataset[name] = {
            "split": dataset.tune_split,
            "metric": dataset.primary,
            "dense": baseline,
            "best": [{"config": c, dataset.primary: v} for v, c in scored[:5]],
        }
        log(f"tune {name}: dense {baseline}, best {scored[0]}")
    ranking = sorted(gains, key=lambda c: (-min(gains[c].values()), -sum(gains[c].values())))
    best = ranking[0]
    configs = [dense, parse_config("rrf"), parse_config(best)]
    report = []
    for name in names:
        dataset = DATASETS[name]
        for config in configs:
            loaded = lab.load(name, config.hook)
            report.append(
                {
                    "dataset": name,
                    "split": dataset.report_split,
                    "config": config.name,
                    **evaluate(config, loaded, dataset.report_split),
                }
            )
    return {
        "hooks": hooks,
        "objective": "max over settings of min over datasets of (primary metric - dense primary metric), tuning splits",
        "per_dataset": per_dataset,
        "best_single": {"config": best, "gains": gains[best], "min_gain": min(gains[best].values())},
        "runner_up": [{"config": c, "gains": gains[c]} for c in ranking[1:6]],
        "report": report,
    }


# --- output ---------------------------------------------------------------------------------------------

_METRIC_ORDER = ("ndcg@10", "recall@10", "hit@5", "mrr@5", "evidence_recall@5", "doc_recall@5")


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    metrics = [m for m in _METRIC_ORDER if any(m in row for row in rows)]
    header = ["dataset", "split", "config", "questions", *metrics, "p50 ms"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        values = [str(row["dataset"]), str(row["split"]), f"`{row['config']}`", str(row["questions"])]
        values += [f"{row[m]:.4f}" if m in row else "" for m in metrics]
        values.append(f"{row['p50_ms']}")
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


_SUMMARY_METRICS = {"ndcg@10", "hit@5", "mrr@5", "evidence_recall@5"}


def summary_table(rows: Sequence[Mapping[str, Any]], split_kind: Literal["tune", "report"] = "report") -> str:
    """One line per configuration, one column per dataset metric, on the reporting (or tuning) splits."""
    wanted = {name: getattr(dataset, f"{split_kind}_split") for name, dataset in DATASETS.items()}
    picked = [row for row in rows if wanted.get(row["dataset"]) == row["split"]]
    columns = list(
        dict.fromkeys(
            (row["dataset"], metric)
            for row in picked
            for metric in _METRIC_ORDER
            if metric in row and metric in _SUMMARY_METRICS
        )
    )
    configs = list(dict.fromkeys(row["config"] for row in picked))
    cells = {
        (row["config"], row["dataset"], metric): row[metric]
        for row in picked
        for metric in _SUMMARY_METRICS
        if metric in row
    }
    header = ["config", *(f"{name} {metric}" for name, metric in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for config in configs:
        values = [f"{cells[(config, n, m)]:.4f}" if (config, n, m) in cells else "" for n, m in columns]
        lines.append(f"| `{config}` | " + " | ".join(values) + " |")
    return "\n".join(lines)


DEFAULT_CONFIGS = (
    "dense,bm25,rrf,wrrf:0.7,minmax:0.5,zscore:0.5,"
    "dense@title,rrf@title,minmax:0.5@title,dense@title_section,rrf@title_section,minmax:0.5@title_section"
)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="scifact,aragog,financebench,jsquad")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="comma-separated (see parse_config); '' for none")
    parser.add_argument("--tune", action="store_true", help="also grid-search fusion on the tuning splits")
    parser.add_argument("--hooks", default="plain,title,title_section", help="hooks the tuning grid covers")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--ingestion", default="{}", help="IngestionConfig fields as JSON (default: the defaults)")
    parser.add_argument("--model", default=DEFAULT_EMBEDDING_MODEL)
    parser.add_argument("--prepare", action="store_true", help="only parse, embed and search (fill the caches)")
    parser.add_argument(
        "--cached-only", action="store_true", help="never embed: what is not embedded yet gets BM25 only"
    )
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    parser.add_argument("--workers", type=int, default=1, help="processes that parse documents side by side")
    parser.add_argument(
        "--lexical-only", default="", help="datasets to evaluate with BM25 alone (nothing is embedded for them)"
    )
    parser.add_argument(
        "--import-texts",
        action="append",
        default=[],
        metavar="DATASET=FOLDER",
        help="take DATASET's chunk texts from a `bench.injection_fp --cache` FOLDER instead of parsing (no metadata)",
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        parser.error(f"unknown datasets {unknown}; known: {', '.join(DATASETS)}")
    imports = dict((item.split("=", 1)[0], Path(item.split("=", 1)[1])) for item in args.import_texts)
    lexical = frozenset(n.strip() for n in args.lexical_only.split(",") if n.strip())
    lab = Lab(
        IngestionConfig(**json.loads(args.ingestion)),
        args.model,
        args.cache,
        imports,
        lexical,
        args.cached_only,
        workers=max(1, args.workers),
    )
    configs = [parse_config(spec.strip()) for spec in args.configs.split(",") if spec.strip()]
    hooks = [h.strip() for h in args.hooks.split(",") if h.strip()]
    started = time.monotonic()
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": args.model,
        "ingestion": lab.ingestion.model_dump(),
        "parse_hash": lab.ingestion.parse_hash(),
        "bm25_source_sha": bm25_source_sha(),
        "configs": {c.name: asdict(c) for c in configs},
    }
    if args.prepare:
        for hook, name in itertools.product(hooks, names):
            lab.load(name, hook)
        return
    if configs:
        results["rows"] = run_configs(lab, names, configs)
        print(markdown_table(results["rows"]))
        for kind in ("tune", "report"):
            print(f"\n## Summary: {kind} splits\n")
            print(summary_table(results["rows"], kind))
    if args.tune:
        results["tune"] = tune(lab, names, hooks)
        _print_tuning(results["tune"])
    results["corpora"] = corpus_stats(lab)
    results["dense_skipped_not_embedded"] = sorted(f"{name}/{hook}" for name, hook in lab.skipped)
    results["seconds"] = round(time.monotonic() - started, 1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        log(f"written to {args.out}")


def _print_tuning(tuned: Mapping[str, Any]) -> None:
    print("## Best per dataset (tuning split)\n")
    print("| dataset | split | metric | dense | best configs |\n|---|---|---|---|---|")
    for name, best in tuned["per_dataset"].items():
        tops = ", ".join(f"`{b['config']}` {b[best['metric']]:.4f}" for b in best["best"][:3])
        print(f"| {name} | {best['split']} | {best['metric']} | {best['dense']:.4f} | {tops} |")
    single = tuned["best_single"]
    gains = ", ".join(f"{k} {v:+.4f}" for k, v in single["gains"].items())
    print(f"\n## Best single setting: `{single['config']}` (gains over dense on tuning splits: {gains})\n")
    print(markdown_table(tuned["report"]))


if __name__ == "__main__":
    main()
