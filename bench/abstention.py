"""``make bench``'s abstention section: does ragkeep decline what its knowledge base does not cover?

Unanswerable questions are made the standard way: answerable questions whose source documents
were removed from the collection. A corpus is cut in two halves of documents (by the sha256 of
the file name), each half its own collection; every question is asked of both: answerable where
its document is, unanswerable where it is not. The other half's documents stay lexically close
(same field, same company), which is what makes these hard.

Corpora: ARAGOG + Solana; ``small``, 27 groups of 2-6 short documents (JSQuAD paragraphs, Solana
passages, SciFact abstracts), each cut in halves the same way (see ``small_groups``: the day-one
case of a tiny collection and a short question); JSQuAD (59 articles, every 16th question);
financebench-subset (slow, its own section).

Questions are split by the sha256 of their id (``bench.retrieval_lab.holdout``): the TRAIN half
fits the confidence model and chooses the default threshold (``--fit``), the TEST half reports.
Each /query (extractive, default config) returns ``confidence``, its signals (``evidence``) and
``answer_mode``; the analysis recomputes confidence from the signals with the model in
``query.evidence`` (the service's own function), so refitted coefficients can be scored on a
stored run without asking again.

    .venv/bin/python -m bench.run --only abstention                 # ARAGOG + Solana, small, JSQuAD (~30 min)
    .venv/bin/python -m bench.run --only abstention-financebench    # financebench-subset (slow: 4,806 pages)
    .venv/bin/python -m bench.abstention --fit --cjk-corpora jsquad,small bench/results/<date>.abstention.json
                                                    # the models (Latin script, CJK) and the threshold, from TRAIN
    .venv/bin/python -m bench.abstention --fit --cross --cjk-corpora jsquad,small <results>   # scored both ways
    .venv/bin/python -m bench.abstention bench/results/<date>.abstention.json         # tables
    .venv/bin/python -m bench.abstention --held-elsewhere <results>   # financebench's label noise
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import datasets, ingestion  # noqa: E402
from bench.retrieval_lab import aragog_splits, financebench_splits  # noqa: E402
from eval.abstention import calibrate  # noqa: E402
from query import evidence as evidence_model  # noqa: E402

# Every signal a row records (the service's ``evidence``; rows of older runs lack the newer ones); the
# models weigh MODEL_TERMS (``--fit`` fits those; query.evidence.MODELS holds the result).
SIGNALS = ("top_score", "gap", "coverage", "agreement", "held", "phrase", "named", "period", "known", "small")
BASE = SIGNALS[:-1]
# The terms ``--fit`` fits by default: every signal, and every signal but ``small`` times ``small``.
MODEL_TERMS = (*SIGNALS, *(f"{s}*small" for s in BASE))
TOP_K = 5
TARGET_DECLINED, TARGET_ANSWERED = 0.80, 0.90  # issue 18: on unanswerable / answerable questions
ANSWERED_MARGIN = 0.92  # the default threshold keeps this share of TRAIN's answerable questions answered
CURVE = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SOLANA = datasets.DATASETS / "llamaindex-blockchain-solana"


@dataclass(frozen=True)
class Probe:
    id: str
    text: str
    documents: frozenset[str]
    split: str  # train | test


def split_of(question_id: str) -> str:
    return "train" if hashlib.sha256(question_id.encode()).digest()[0] % 2 == 0 else "test"


def halves(names: Sequence[str]) -> dict[str, str]:
    """File name -> half ("a" or "b"): alternately in the order of their sha256, so the halves are even."""
    ordered = sorted(names, key=lambda name: hashlib.sha256(name.encode()).hexdigest())
    return {name: "ab"[position % 2] for position, name in enumerate(ordered)}


def _probes(questions: Sequence[Any]) -> list[Probe]:
    return [Probe(q.id, q.text, frozenset(q.relevant), split_of(q.id)) for q in questions]


def aragog_solana() -> tuple[list[tuple[str, bytes]], list[Probe]]:
    """ARAGOG's 15 PDFs and the Solana paper as one corpus; their questions whose document is present."""
    files = datasets.aragog_files() + [
        (p.name, p.read_bytes()) for p in sorted((SOLANA / "source_files").glob("*.pdf"))
    ]
    splits = aragog_splits()
    probes = _probes(splits["tune"] + splits["report"])
    examples = json.loads((SOLANA / "rag_dataset.json").read_text(encoding="utf-8"))["examples"]
    probes += [
        Probe(f"solana-{i:03d}", e["query"], frozenset(["BlockchainSolana.pdf"]), split_of(f"solana-{i:03d}"))
        for i, e in enumerate(examples)
    ]
    return files, probes


def financebench(limit: int | None = None) -> tuple[list[tuple[str, bytes]], list[Probe]]:
    files = datasets.financebench_files(limit)
    names = {n for n, _ in files}
    splits = financebench_splits()
    probes = [p for p in _probes(splits["tune"] + splits["report"]) if p.documents <= names]
    return files, probes


JSQUAD = datasets.DATASETS / "jsquad-v1.3-valid"
JSQUAD_EVERY = 16  # every 16th JSQuAD question (278 of 4,442): each is asked twice


def jsquad() -> tuple[list[tuple[str, bytes]], list[Probe]]:
    """JSQuAD's 59 Japanese articles and every ``JSQUAD_EVERY``-th question, each with its article."""
    files, questions = datasets.jsquad()
    items = [json.loads(line) for line in (JSQUAD / "qa.jsonl").read_text(encoding="utf-8").splitlines()]
    del questions
    return files, [
        Probe(q["id"], q["question"], frozenset([q["doc_id"]]), split_of(q["id"])) for q in items[::JSQUAD_EVERY]
    ]


# ---------------------------------------------------------------- small collections
#
# The day-one case: a collection of one to three short documents and a short question whose
# answer is in one of them. A group is 2, 4 or 6 short documents of one source that belong
# together (consecutive paragraphs of one JSQuAD article, consecutive passages of the Solana
# paper, SciFact abstracts), with at most two of each document's own questions; ``ask`` cuts it
# into halves like a corpus, so every question is answerable in one half and unanswerable (its
# document removed, its neighbours kept) in the other. Groups are chosen by sha256, not by hand.

SMALL_GROUPS = 10  # per source
SMALL_QUESTIONS_PER_DOCUMENT = 2


@dataclass(frozen=True)
class Group:
    name: str
    files: list[tuple[str, bytes]]
    probes: list[Probe]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _documents_per_group(index: int) -> int:
    return 2 * (1 + index % 3)  # 2, 4, 6: halves of 1, 2, 3 documents


def _small_jsquad() -> list[Group]:
    items = [json.loads(line) for line in (JSQUAD / "qa.jsonl").read_text(encoding="utf-8").splitlines()]
    by_article: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for item in items:
        by_article.setdefault(item["doc_id"], {}).setdefault(item["paragraph_index"], []).append(item)
    groups: list[Group] = []
    for article in sorted(by_article, key=_sha):
        index = len(groups)
        if index == SMALL_GROUPS:
            break
        paragraphs = sorted(by_article[article].items())[: _documents_per_group(index)]
        if len(paragraphs) < _documents_per_group(index):
            continue  # a short article: the next one
        files, probes = [], []
        for number, questions in paragraphs:
            name = f"{Path(article).stem}-{number:03d}.txt"
            files.append((name, questions[0]["reference_context"].encode()))
            probes += [
                Probe(q["id"], q["question"], frozenset([name]), split_of(q["id"]))
                for q in questions[:SMALL_QUESTIONS_PER_DOCUMENT]
            ]
        groups.append(Group(f"jsquad-{index:02d}", files, probes))
    return groups


def _small_solana() -> list[Group]:
    examples = json.loads((SOLANA / "rag_dataset.json").read_text(encoding="utf-8"))["examples"]
    contexts: dict[str, list[int]] = {}
    for i, example in enumerate(examples):
        for context in example["reference_contexts"]:
            contexts.setdefault(context, []).append(i)
    passages = list(contexts.items())  # in the paper's order: consecutive passages share a topic
    groups: list[Group] = []
    start = 0
    while len(groups) < SMALL_GROUPS and start + _documents_per_group(len(groups)) <= len(passages):
        index = len(groups)
        chosen = passages[start : start + _documents_per_group(index)]
        files, probes = [], []
        for offset, (text, asked) in enumerate(chosen):
            name = f"solana-passage-{start + offset:02d}.txt"
            files.append((name, text.encode()))
            probes += [
                Probe(f"solana-{i:03d}", examples[i]["query"], frozenset([name]), split_of(f"solana-{i:03d}"))
                for i in asked[:SMALL_QUESTIONS_PER_DOCUMENT]
            ]
        groups.append(Group(f"solana-{index:02d}", files, probes))
        start += len(chosen)
    return groups


def _small_scifact() -> list[Group]:
    texts = {
        (q := json.loads(line))["_id"]: q["text"]
        for line in (datasets.SCIFACT / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    }
    claims: dict[str, list[str]] = {}
    for line in (datasets.SCIFACT / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        query_id, doc_id, score = line.split("\t")
        if int(score) > 0:
            claims.setdefault(f"{doc_id}.txt", []).append(query_id)
    abstracts = dict(datasets.scifact_files())
    ordered = sorted(claims, key=_sha)
    groups, position = [], 0
    for index in range(SMALL_GROUPS):
        chosen = ordered[position : position + _documents_per_group(index)]
        position += len(chosen)
        probes = [
            Probe(f"scifact-{q}", texts[q], frozenset(d for d in chosen if q in claims[d]), split_of(f"scifact-{q}"))
            for q in dict.fromkeys(q for d in chosen for q in claims[d][:SMALL_QUESTIONS_PER_DOCUMENT])
        ]
        groups.append(Group(f"scifact-{index:02d}", [(d, abstracts[d]) for d in chosen], probes))
    return groups


def small_groups() -> list[Group]:
    """The small-collection groups: 10 of JSQuAD paragraphs, 7 of Solana passages, 10 of SciFact abstracts."""
    return _small_jsquad() + _small_solana() + _small_scifact()


CORPORA: dict[str, Callable[[], tuple[list[tuple[str, bytes]], list[Probe]]]] = {
    "aragog+solana": aragog_solana,
    "financebench": financebench,
    "jsquad": jsquad,
}


def ask(
    stack: Any, corpus: str, files: list[tuple[str, bytes]], probes: list[Probe], slug: str | None = None
) -> list[dict[str, Any]]:
    """Ingest each half of ``files`` as its own collection; ask every probe of both. One row per (probe, half)."""
    rows: list[dict[str, Any]] = []
    half_of = halves([n for n, _ in files])
    slug = slug or corpus.replace("+", "-")
    for half in ("a", "b"):
        members = [(n, d) for n, d in files if half_of[n] == half]
        collection = f"abst-{slug}-{half}"
        ingested = ingestion.ingest_ragkeep(stack, collection, members)
        present = {n for n, _ in members}
        with stack.server() as server:
            for probe in probes:
                body = {"collection": collection, "question": probe.text, "top_k": TOP_K, "mode": "answer"}
                result = server.call("POST", "/query", json=body)
                rows.append(
                    {
                        "corpus": corpus,
                        "id": probe.id,
                        "split": probe.split,
                        "half": half,
                        "answerable": bool(probe.documents & present),
                        "chunks": ingested.chunks,
                        "words": len(probe.text.split()),
                        "script": evidence_model.script(probe.text),
                        "answer_mode": result["answer_mode"],
                        "confidence": result["confidence"],
                        **{s: v for s in SIGNALS if (v := (result.get("evidence") or {}).get(s)) is not None},
                    }
                )
    return rows


# ---------------------------------------------------------------- analysis (pure)


def auc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """P(a random answerable score > a random unanswerable one), ties half: the separation of a signal."""
    if not positive or not negative:
        return None
    pos, neg = np.asarray(positive, dtype=float), np.asarray(negative, dtype=float)
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def rates(scores: Sequence[float], answerable: Sequence[bool], threshold: float) -> tuple[float, float]:
    """(share of unanswerable declined, share of answerable answered) when declining below ``threshold``."""
    declined = [s < threshold for s in scores]
    unanswerable = [d for d, a in zip(declined, answerable, strict=True) if not a]
    answerable_kept = [not d for d, a in zip(declined, answerable, strict=True) if a]
    return (
        sum(unanswerable) / len(unanswerable) if unanswerable else math.nan,
        sum(answerable_kept) / len(answerable_kept) if answerable_kept else math.nan,
    )


class MissingSignal(ValueError):
    """A stored row lacks a signal the current model weighs (recorded before the signal existed)."""


def completed(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with ``small`` derived from its version's chunk count when the run predates the signal."""
    if "small" not in row and "chunks" in row:
        return {**row, "small": evidence_model.size_weight(int(row["chunks"]))}
    return row


def script_of(row: dict[str, Any]) -> str:
    """The model that scores a row (``query.evidence.script``): recorded since 2026-12-02; older rows'
    Japanese questions are JSQuAD's and the small collections' JSQuAD groups'."""
    if "script" in row:
        return str(row["script"])
    return "cjk" if row["corpus"] == "jsquad" or str(row.get("group", "")).startswith("jsquad") else "latin"


def rescored(rows: Sequence[dict[str, Any]], models: Mapping[str, Mapping[str, float]] | None = None) -> list[float]:
    """Each row's confidence under ``models`` (by script; default: the models now in ``query.evidence``).

    A row recorded before a signal the model now weighs existed cannot be rescored: that is an
    error naming the signal (rescoring it as 0 would silently decline what the run answered).
    """
    models = evidence_model.MODELS if models is None else models
    needed = evidence_model.model_signals(models)
    scores = []
    for row in map(completed, rows):
        missing = [name for name in needed if name not in row]
        if missing:
            raise MissingSignal(
                f"row {row.get('corpus')}/{row.get('id')} was recorded without {', '.join(missing)}, which the "
                "current confidence model weighs: run its corpus again (python -m bench.run --only abstention...)"
            )
        scores.append(evidence_model.score(models.get(script_of(row), models["latin"]), row))
    return scores


def choose_threshold(scores: Sequence[float], answerable: Sequence[bool], answered: float = ANSWERED_MARGIN) -> float:
    """The largest threshold (0.01 steps) that still answers ``answered`` of the answerable questions."""
    best = 0.0
    for step in range(1, 100):
        threshold = step / 100
        if rates(scores, answerable, threshold)[1] >= answered:
            best = threshold
    return best


def fit(
    rows: Sequence[dict[str, Any]], signals: Sequence[str] = MODEL_TERMS, l2: float = 0.1, iterations: int = 50
) -> dict[str, float]:
    """Logistic regression of ``answerable`` on ``signals`` (terms: a signal or a product ``a*b``; Newton's
    method, L2 on standardised terms)."""
    x = np.asarray([[evidence_model.feature(r, s) for s in signals] for r in map(completed, rows)])
    y = np.asarray([1.0 if r["answerable"] else 0.0 for r in rows])
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / std])
    w = np.zeros(z.shape[1])
    penalty = np.diag([0.0] + [l2] * len(signals))
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-z @ w))
        gradient = z.T @ (p - y) + penalty @ w
        hessian = z.T @ (z * (p * (1 - p))[:, None]) + penalty
        w -= np.linalg.solve(hessian, gradient)
    slopes = w[1:] / std
    return {"intercept": round(float(w[0] - (slopes * mean).sum()), 3)} | {
        s: round(float(v), 3) for s, v in zip(signals, slopes, strict=True)
    }


# The embedding's cosine signals: all-MiniLM-L6-v2 reads English, so on CJK questions they are close to noise
# (JSQuAD top_score AUC 0.69 against ARAGOG + Solana's 0.94): the CJK model does without them.
COSINE = frozenset({"top_score", "gap"})


def terms_of(script: str, signals: Sequence[str]) -> list[str]:
    """The terms ``script``'s model weighs: ``signals``, for CJK without those of ``COSINE``."""
    if script == "latin":
        return list(signals)
    return [term for term in signals if not COSINE & set(term.split("*"))]


def _logit(p: float) -> float:
    p = min(max(p, 0.005), 0.995)
    return math.log(p / (1 - p))


def fit_models(
    train: Sequence[dict[str, Any]], corpora: Mapping[str, set[str]], signals: Sequence[str] = MODEL_TERMS
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """The fitting procedure: per script named in ``corpora``, a model fitted on the ``train`` rows of its
    corpora in that script ("latin" also on the rows of scripts without a model of their own, which it
    scores), and its threshold, ``choose_threshold`` on those rows. "latin"'s is the default threshold;
    every other script's intercept is moved so that its own threshold falls on the default: one threshold
    (and one per-version calibration) then means the same in every script. Returns the models and each
    script's threshold before the move."""
    full = [completed(r) for r in train]

    def rows_of(script: str) -> list[dict[str, Any]]:
        def scored_by(row: dict[str, Any]) -> str:
            return script_of(row) if script_of(row) in corpora else "latin"

        return [r for r in full if r["corpus"] in corpora[script] and scored_by(r) == script]

    models: dict[str, dict[str, float]] = {}
    thresholds: dict[str, float] = {}
    for script in corpora:
        part = rows_of(script)
        models[script] = fit(part, terms_of(script, signals))
        scores = [evidence_model.score(models[script], r) for r in part]
        thresholds[script] = choose_threshold(scores, [bool(r["answerable"]) for r in part])
        print(f"{script}: {len(part)} TRAIN rows of {', '.join(sorted(corpora[script]))}", file=sys.stderr)
    for script, model in models.items():
        if script != "latin":
            model["intercept"] = round(model["intercept"] + _logit(thresholds["latin"]) - _logit(thresholds[script]), 3)
    return models, thresholds


def cross_fit(
    rows: Sequence[dict[str, Any]], corpora: Mapping[str, set[str]], signals: Sequence[str] = MODEL_TERMS
) -> dict[str, list[dict[str, Any]]]:
    """A fitting procedure (``fit_models``) scored both ways: fitted on the TRAIN rows and scored on every
    corpus's TEST rows, then the other way round. Per corpus (the small collections also per script), one
    entry per direction: the threshold, the shares declined and answered there, and the AUC of confidence.
    Compares procedures (which signals, which corpora, one model or one per script) on more than one half;
    leaves ``query.evidence.MODELS`` as they were."""
    full = [completed(r) for r in rows]
    results: dict[str, list[dict[str, Any]]] = {}
    for fitted, scored in (("train", "test"), ("test", "train")):
        models, thresholds = fit_models([r for r in full if r["split"] == fitted], corpora, signals)
        threshold = thresholds["latin"]
        held_out = [r for r in full if r["split"] == scored]
        for name, part in _parts(held_out).items():
            scores, answerable = rescored(part, models), [bool(r["answerable"]) for r in part]
            declined, answered = rates(scores, answerable, threshold)
            results.setdefault(name, []).append(
                {
                    "fitted_on": fitted,
                    "threshold": threshold,
                    "declined": round(declined, 3),
                    "answered": round(answered, 3),
                    "auc": round(auc(*_sides(scores, answerable)) or math.nan, 3),
                }
            )
    return results


def _parts(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """``rows`` by corpus, the small collections also by script ("small", "small/cjk", "small/latin")."""
    parts: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        parts.setdefault(row["corpus"], []).append(row)
        if row["corpus"] == "small":
            parts.setdefault(f"small/{script_of(row)}", []).append(row)
    return dict(sorted(parts.items()))


def _sides(values: Sequence[float], answerable: Sequence[bool]) -> tuple[list[float], list[float]]:
    """``values`` of the answerable questions, and of the unanswerable ones."""
    pairs = list(zip(values, answerable, strict=True))
    return [v for v, a in pairs if a], [v for v, a in pairs if not a]


def _outcome(scores: Sequence[float], answerable: Sequence[bool], threshold: float) -> dict[str, float]:
    declined, answered = rates(scores, answerable, threshold)
    return {"declined_unanswerable": round(declined, 3), "answered_answerable": round(answered, 3)}


def _split_report(part: Sequence[dict[str, Any]], train: Sequence[dict[str, Any]]) -> dict[str, Any]:
    answerable = [bool(r["answerable"]) for r in part]
    scores = rescored(part)
    threshold = evidence_model.DEFAULT_ABSTAIN_THRESHOLD
    default = _outcome(scores, answerable, threshold)
    # answer_mode as the API answered during the run (with the model of that run): 0 declined, 1 answered
    served = [0.0 if r["answer_mode"] == "abstained" else 1.0 for r in part]
    full = [completed(r) for r in part]
    recorded = [s for s in SIGNALS if all(s in r for r in full)]  # older rows lack the newer signals
    signals = {s: [float(r[s]) for r in full] for s in recorded} | {"confidence": scores}
    top = [float(r["top_score"]) for r in part]
    top_threshold = choose_threshold([float(r["top_score"]) for r in train], [bool(r["answerable"]) for r in train])
    return {
        "questions": len(part),
        "unanswerable": answerable.count(False),
        "default": {
            "threshold": threshold,
            **default,
            "met": default["declined_unanswerable"] >= TARGET_DECLINED
            and default["answered_answerable"] >= TARGET_ANSWERED,
        },
        "as_served": _outcome(served, answerable, 0.5),
        "curve": [
            {"threshold": t, "declined": o["declined_unanswerable"], "answered": o["answered_answerable"]}
            for t in CURVE
            for o in [_outcome(scores, answerable, t)]
        ],
        "auc": {name: _round1(auc(*_sides(values, answerable))) for name, values in signals.items()},
        "top_score_alone": {"threshold (chosen on train)": top_threshold, **_outcome(top, answerable, top_threshold)},
        "means": {
            name: {"answerable": _mean(_sides(v, answerable)[0]), "unanswerable": _mean(_sides(v, answerable)[1])}
            for name, v in signals.items()
        },
    }


def _version(row: dict[str, Any]) -> tuple[str, str, str]:
    """The collection version a row was asked of: corpus, small-collection group, half."""
    return row["corpus"], row.get("group", ""), row["half"]


def calibrated(part: Sequence[dict[str, Any]], train: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``abstain: auto`` after each version's evaluation calibrated it: every version's TRAIN questions
    are its golden set (answerable where their document is in it, ``answerable: false`` where not),
    ``eval.abstention.calibrate`` (what an evaluation run stores) chooses its threshold, and ``part``
    (the TEST questions) is declined below it; a version whose golden set is too small for a
    threshold keeps the default, as ``auto`` does."""
    golden: dict[tuple[str, str, str], list[tuple[float, bool]]] = {}
    for row, score in zip(train, rescored(train), strict=True):
        golden.setdefault(_version(row), []).append((score, bool(row["answerable"])))
    thresholds = {version: calibrate(points).threshold for version, points in golden.items()}
    scores, answerable = rescored(part), [bool(r["answerable"]) for r in part]
    declined = [
        score < (evidence_model.abstain_threshold("auto", calibrated=thresholds.get(_version(r))) or 0.0)
        for r, score in zip(part, scores, strict=True)
    ]
    # rates() with a per-row threshold: a declined row scores 0, an answered one 1, cut at 0.5
    outcome = _outcome([0.0 if d else 1.0 for d in declined], answerable, 0.5)
    versions = {_version(r) for r in part}
    return {
        **outcome,
        "versions": len(versions),
        "calibrated_versions": sum(thresholds.get(v) is not None for v in versions),
        "met": outcome["declined_unanswerable"] >= TARGET_DECLINED
        and outcome["answered_answerable"] >= TARGET_ANSWERED,
    }


def analyse(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per corpus (the small collections also per script: ``_parts``) and split: the default's outcome, the
    curve, each signal's separation, top_score alone; on TEST, also the outcome with each version calibrated
    on its TRAIN questions (``calibrated``)."""
    report: dict[str, Any] = {}
    for corpus, of_corpus in _parts(rows).items():
        train = [r for r in of_corpus if r["split"] == "train"]
        report[corpus] = {
            split: _split_report(part, train)
            for split in ("train", "test")
            if (part := [r for r in of_corpus if r["split"] == split])
        }
        if "test" in report[corpus] and train:
            report[corpus]["test"]["calibrated"] = calibrated([r for r in of_corpus if r["split"] == "test"], train)
    return report


def _mean(values: Sequence[float]) -> float | None:
    return round(float(np.mean(values)), 3) if values else None


def _round1(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def markdown(report: dict[str, Any]) -> str:
    """The README's tables: the default on the TEST split, its curve, and each signal's separation."""
    lines = [
        "| corpus (TEST split) | questions (unanswerable) | declined unanswerable | answered answerable | target |",
        "|---|---|---|---|---|",
    ]
    tested = {corpus: splits["test"] for corpus, splits in report.items() if "test" in splits}
    for corpus, t in tested.items():
        d = t["default"]
        lines.append(
            f"| {corpus} | {t['questions']} ({t['unanswerable']}) | {d['declined_unanswerable']:.3f} | "
            f"{d['answered_answerable']:.3f} | {'met' if d['met'] else 'not met'} |"
        )
    lines += [
        "",
        "| corpus (TEST split), each version calibrated on its TRAIN questions | versions calibrated | "
        "declined unanswerable | answered answerable | target |",
        "|---|---|---|---|---|",
    ]
    for corpus, t in tested.items():
        if c := t.get("calibrated"):
            lines.append(
                f"| {corpus} | {c['calibrated_versions']} of {c['versions']} | {c['declined_unanswerable']:.3f} | "
                f"{c['answered_answerable']:.3f} | {'met' if c['met'] else 'not met'} |"
            )
    lines += ["", "| corpus (TEST) | " + " | ".join(f"t={t}" for t in CURVE) + " |", "|---" * (len(CURVE) + 1) + "|"]
    for corpus, t in tested.items():
        cells = [f"{c['declined']:.2f} / {c['answered']:.2f}" for c in t["curve"]]
        lines.append(f"| {corpus} declined / answered | " + " | ".join(cells) + " |")
    names = [s for s in [*SIGNALS, "confidence"] if all(s in t["auc"] for t in tested.values())]
    lines += ["", "| corpus (TEST) | " + " | ".join(f"AUC {n}" for n in names) + " | top_score alone |"]
    lines.append("|---" * (len(names) + 2) + "|")
    for corpus, t in tested.items():
        alone = t["top_score_alone"]
        lines.append(
            f"| {corpus} | "
            + " | ".join(f"{t['auc'][n]:.3f}" for n in names)
            + f" | {alone['declined_unanswerable']:.2f} declined / {alone['answered_answerable']:.2f} answered |"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- label noise (financebench)

SHINGLE = 5  # words
HELD_ELSEWHERE = 0.5  # share of a reference passage's word 5-grams (fixed before measuring)


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}


def held_elsewhere(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each unanswerable financebench row: how much of its question's reference evidence a filing present in
    the half holds verbatim (the mean over the reference passages of the share of their word 5-grams the filing's
    text layer holds; the best filing). At ``HELD_ELSEWHERE`` or more, a sibling filing repeats the evidence and
    the "unanswerable" label (its own filing was removed) is doubtful. Reads every filing's text (PDFium)."""
    from ingest.pdfium import page_texts

    files = datasets.financebench_files()
    held = {name: _shingles("\n".join(page_texts(data))) for name, data in files}
    half_of = halves([name for name, _ in files])
    questions = {q.id: q for split in financebench_splits().values() for q in split}
    found = []
    for row in rows:
        if row["corpus"] != "financebench" or row["answerable"]:
            continue
        passages = [_shingles(text) for text in questions[row["id"]].evidence]

        def share(name: str, passages: list[set[tuple[str, ...]]] = passages) -> float:
            return sum(len(p & held[name]) / max(len(p), 1) for p in passages) / max(len(passages), 1)

        best = max((name for name in held if half_of[name] == row["half"]), key=share)
        found.append({**row, "held_by": best, "held_share": round(share(best), 3)})
    return found


def held_elsewhere_report(rows: Sequence[dict[str, Any]]) -> str:
    """Per split, financebench's unanswerable rows declined at the default threshold: apart for the rows whose
    evidence a present filing repeats (``held_elsewhere``) and for the rest."""
    checked = held_elsewhere(rows)
    lines = [
        f"| financebench unanswerable, by split | rows | a present filing holds >= {HELD_ELSEWHERE} of the evidence | "
        "declined at the default: held elsewhere / not |",
        "|---|---|---|---|",
    ]
    for split in ("train", "test"):
        part = [r for r in checked if r["split"] == split]
        if not part:
            continue
        scores = rescored(part)
        threshold = evidence_model.DEFAULT_ABSTAIN_THRESHOLD
        elsewhere = [s < threshold for r, s in zip(part, scores, strict=True) if r["held_share"] >= HELD_ELSEWHERE]
        rest = [s < threshold for r, s in zip(part, scores, strict=True) if r["held_share"] < HELD_ELSEWHERE]
        lines.append(
            f"| {split} | {len(part)} | {len(elsewhere)} | {sum(elsewhere)} of {len(elsewhere)} / "
            f"{sum(rest)} of {len(rest)} |"
        )
    return "\n".join(lines)


def section(stack: Any, corpora: Sequence[str], results: dict[str, Any], small_limit: int | None = None) -> None:
    """Run the corpora through ``stack`` and put the rows and the analysis into ``results["abstention"]``.

    ``small_limit``: only that many of the small-collection groups (a smoke run checks the harness).
    """
    rows: list[dict[str, Any]] = list(results.get("abstention", {}).get("rows", []))
    for corpus in corpora:
        if corpus == "small":
            for group in small_groups()[:small_limit]:
                asked = ask(stack, corpus, group.files, group.probes, f"small-{group.name}")
                rows += [{**row, "group": group.name} for row in asked]
        else:
            files, probes = CORPORA[corpus]()
            rows += ask(stack, corpus, files, probes)
        results["abstention"] = {"rows": rows, "report": analyse(rows), "models": evidence_model.MODELS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="+", help="bench results files with an abstention section")
    parser.add_argument("--fit", action="store_true", help="fit the confidence model on the TRAIN rows and print it")
    parser.add_argument(
        "--signals",
        default=",".join(MODEL_TERMS),
        help=f"with --fit: the terms to weigh: signals of {', '.join(SIGNALS)} or products a*b",
    )
    parser.add_argument(
        "--cross",
        action="store_true",
        help="with --fit: score the procedure both ways (fit on TRAIN, score TEST; fit on TEST, score TRAIN)",
    )
    parser.add_argument(
        "--corpora",
        default="aragog+solana,small,financebench",
        help="with --fit: fit the Latin-script model on these corpora's TRAIN rows (comma-separated)",
    )
    parser.add_argument(
        "--cjk-corpora",
        help="with --fit: fit a model of its own for CJK questions on these corpora's CJK TRAIN rows (else the "
        "Latin-script model scores them too, fitted on them where they are in --corpora)",
    )
    parser.add_argument(
        "--held-elsewhere",
        action="store_true",
        help="financebench's unanswerable rows whose reference evidence a present filing repeats (label noise)",
    )
    args = parser.parse_args()
    rows = [row for path in args.results for row in json.loads(path.read_text())["abstention"]["rows"]]
    if args.held_elsewhere:
        print(held_elsewhere_report(rows))
        return
    if args.fit:
        corpora = {"latin": set(args.corpora.split(","))}
        if args.cjk_corpora:
            corpora["cjk"] = set(args.cjk_corpora.split(","))
        train = [completed(r) for r in rows if r["split"] == "train"]
        signals = args.signals.split(",")
        if unknown := {p for s in signals for p in s.split("*")} - set(SIGNALS):
            parser.error(f"unknown signals: {', '.join(sorted(unknown))}")
        if lacking := [r for r in train if not all(p in r for s in signals for p in s.split("*"))]:
            parser.error(f"{len(lacking)} TRAIN rows lack some of {', '.join(signals)}: recorded by an older run")
        if args.cross:
            for name, directions in cross_fit(rows, corpora, signals).items():
                print(name, " | ".join(json.dumps(d) for d in directions))
            return
        models, thresholds = fit_models(train, corpora, signals)
        for script, model in models.items():
            print(f"{script} (own threshold {thresholds[script]}):", json.dumps(model))
        print("DEFAULT_ABSTAIN_THRESHOLD =", thresholds["latin"])
        return
    try:
        print(markdown(analyse(rows)))
    except MissingSignal as exc:
        parser.exit(2, f"{exc}\n")


if __name__ == "__main__":
    main()
