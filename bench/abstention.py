"""``make bench``'s abstention section: does ragkeep decline what its knowledge base does not cover?

Unanswerable questions are made the standard way: answerable questions whose source documents
were removed from the collection. A corpus is cut in two halves of documents (by the sha256 of
the file name), each half its own collection; every question is asked of both: answerable where
its document is, unanswerable where it is not. The other half's documents stay lexically close
(same field, same company), which is what makes these hard.

Questions are split by the sha256 of their id (``bench.retrieval_lab.holdout``): the TRAIN half
fits the confidence model and chooses the default threshold (``--fit``), the TEST half reports.
Each /query (extractive, default config) returns ``confidence``, its signals (``evidence``) and
``answer_mode``; the analysis recomputes confidence from the signals with the model in
``query.evidence`` (the service's own function), so refitted coefficients can be scored on a
stored run without asking again.

    .venv/bin/python -m bench.run --only abstention                 # ARAGOG + Solana (about 15 min)
    .venv/bin/python -m bench.run --only abstention-financebench    # financebench-subset (slow: 4,806 pages)
    .venv/bin/python -m bench.abstention --fit bench/results/<date>.abstention.json   # coefficients from TRAIN
    .venv/bin/python -m bench.abstention bench/results/<date>.abstention.json         # tables
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import datasets, ingestion  # noqa: E402
from bench.retrieval_lab import aragog_splits, financebench_splits  # noqa: E402
from query import evidence as evidence_model  # noqa: E402

SIGNALS = ("top_score", "gap", "coverage", "agreement")
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


CORPORA: dict[str, Callable[[], tuple[list[tuple[str, bytes]], list[Probe]]]] = {
    "aragog+solana": aragog_solana,
    "financebench": financebench,
}


def ask(stack: Any, corpus: str, files: list[tuple[str, bytes]], probes: list[Probe]) -> list[dict[str, Any]]:
    """Ingest each half of ``files`` as its own collection; ask every probe of both. One row per (probe, half)."""
    rows: list[dict[str, Any]] = []
    half_of = halves([n for n, _ in files])
    slug = corpus.replace("+", "-")
    for half in ("a", "b"):
        members = [(n, d) for n, d in files if half_of[n] == half]
        collection = f"abst-{slug}-{half}"
        ingestion.ingest_ragkeep(stack, collection, members)
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
                        "answer_mode": result["answer_mode"],
                        "confidence": result["confidence"],
                        **{s: (result.get("evidence") or {}).get(s, 0.0) for s in SIGNALS},
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


def rescored(rows: Sequence[dict[str, Any]]) -> list[float]:
    """Each row's confidence under the model now in ``query.evidence``."""
    return [evidence_model.confidence(*(float(r[s]) for s in SIGNALS)) for r in rows]


def choose_threshold(scores: Sequence[float], answerable: Sequence[bool], answered: float = ANSWERED_MARGIN) -> float:
    """The largest threshold (0.01 steps) that still answers ``answered`` of the answerable questions."""
    best = 0.0
    for step in range(1, 100):
        threshold = step / 100
        if rates(scores, answerable, threshold)[1] >= answered:
            best = threshold
    return best


def fit(rows: Sequence[dict[str, Any]], l2: float = 0.1, iterations: int = 50) -> dict[str, float]:
    """Logistic regression of ``answerable`` on the signals (Newton's method, L2 on standardised signals)."""
    x = np.asarray([[float(r[s]) for s in SIGNALS] for r in rows])
    y = np.asarray([1.0 if r["answerable"] else 0.0 for r in rows])
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / std])
    w = np.zeros(z.shape[1])
    penalty = np.diag([0.0] + [l2] * len(SIGNALS))
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-z @ w))
        gradient = z.T @ (p - y) + penalty @ w
        hessian = z.T @ (z * (p * (1 - p))[:, None]) + penalty
        w -= np.linalg.solve(hessian, gradient)
    slopes = w[1:] / std
    return {"intercept": round(float(w[0] - (slopes * mean).sum()), 3)} | {
        s: round(float(v), 3) for s, v in zip(SIGNALS, slopes, strict=True)
    }


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
    signals = {s: [float(r[s]) for r in part] for s in SIGNALS} | {"confidence": scores}
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


def analyse(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per corpus and split: the default's outcome, the curve, each signal's separation, top_score alone."""
    report: dict[str, Any] = {}
    for corpus in sorted({r["corpus"] for r in rows}):
        of_corpus = [r for r in rows if r["corpus"] == corpus]
        train = [r for r in of_corpus if r["split"] == "train"]
        report[corpus] = {
            split: _split_report(part, train)
            for split in ("train", "test")
            if (part := [r for r in of_corpus if r["split"] == split])
        }
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
    lines += ["", "| corpus (TEST) | " + " | ".join(f"t={t}" for t in CURVE) + " |", "|---" * (len(CURVE) + 1) + "|"]
    for corpus, t in tested.items():
        cells = [f"{c['declined']:.2f} / {c['answered']:.2f}" for c in t["curve"]]
        lines.append(f"| {corpus} declined / answered | " + " | ".join(cells) + " |")
    names = [*SIGNALS, "confidence"]
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


def section(stack: Any, corpora: Sequence[str], results: dict[str, Any]) -> None:
    """Run the corpora through ``stack`` and put the rows and the analysis into ``results["abstention"]``."""
    rows: list[dict[str, Any]] = list(results.get("abstention", {}).get("rows", []))
    for corpus in corpora:
        files, probes = CORPORA[corpus]()
        rows += ask(stack, corpus, files, probes)
        results["abstention"] = {"rows": rows, "report": analyse(rows), "coefficients": evidence_model.COEFFICIENTS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="+", help="bench results files with an abstention section")
    parser.add_argument("--fit", action="store_true", help="fit the confidence model on the TRAIN rows and print it")
    args = parser.parse_args()
    rows = [row for path in args.results for row in json.loads(path.read_text())["abstention"]["rows"]]
    if args.fit:
        train = [r for r in rows if r["split"] == "train"]
        coefficients = fit(train)
        print("COEFFICIENTS =", json.dumps(coefficients))
        evidence_model.COEFFICIENTS.update(coefficients)  # for the threshold below
        scores = rescored(train)
        print("DEFAULT_ABSTAIN_THRESHOLD =", choose_threshold(scores, [bool(r["answerable"]) for r in train]))
        return
    print(markdown(analyse(rows)))


if __name__ == "__main__":
    main()
