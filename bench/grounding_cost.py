"""What grounding (query.grounding.check) costs per answer, in CPU time of this process.

/query checks every answer's sentences against its passages on the hot path. This measures the
check alone, in process, so its cost is robust to what else runs on the machine (CPU seconds,
not wall time): SciFact test questions, the top 5 abstracts by BM25 as passages, and

- ``extractive``: the extractive answer /query gives (sentences copied from the passages);
- ``paraphrased``: the same sentences with every fourth word dropped, as an LLM answer is not
  word for word: each needs the embedding model (compared with every sentence of its passages),
  once with a cold per-process cache of sentence vectors and once again with it warm.

    .venv/bin/python -m bench.grounding_cost [--questions 150]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import datasets  # noqa: E402
from core.bm25 import BM25Index  # noqa: E402
from core.embedding import Embedder  # noqa: E402
from query import grounding  # noqa: E402
from query.answer import extractive_answer  # noqa: E402
from query.retrieval import Hit  # noqa: E402

Case = tuple[str, list[str], list[int]]  # answer, passages, cited
_MARKER = re.compile(r"(\s*\[\d{1,3}\])")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process (ONNX Runtime's too)
    return usage.ru_utime + usage.ru_stime


def paraphrased(answer: str) -> str:
    """Every fourth word of each sentence dropped, citation markers kept."""
    out = []
    for part in _MARKER.split(answer):
        if _MARKER.fullmatch(part):
            out.append(part)
            continue
        words = part.split(" ")
        out.append(" ".join(w for i, w in enumerate(words) if i % 4 != 3 or not w))
    return "".join(out)


def cases(questions: int) -> list[Case]:
    files = datasets.scifact_files()
    texts = {name: data.decode() for name, data in files}
    index = BM25Index.build(list(texts), list(texts.values()))
    found = []
    for question, _ in datasets.scifact_queries()[:questions]:
        hits = [Hit(i, texts[i], score, {}) for i, score in index.search(question, 5)]
        if hits:
            answer = extractive_answer(question, hits)
            found.append((answer.text, [h.text for h in hits], answer.cited))
    return found


def measure(label: str, checked: Sequence[Case], embed: Callable[[list[str]], np.ndarray]) -> dict[str, Any]:
    calls = {"calls": 0, "texts": 0}

    def counted(texts: list[str]) -> np.ndarray:
        calls["calls"] += 1
        calls["texts"] += len(texts)
        return embed(texts)

    cpu, wall = _cpu(), time.perf_counter()
    for answer, passages, cited in checked:
        grounding.check(answer, passages, cited, counted)
    n = len(checked)
    return {
        "answers": label,
        "count": n,
        "cpu_ms_per_answer": round((_cpu() - cpu) * 1000 / n, 2),
        "wall_ms_per_answer": round((time.perf_counter() - wall) * 1000 / n, 2),
        "embedding_calls": calls["calls"],
        "texts_embedded": calls["texts"],
    }


def run(questions: int) -> list[dict[str, Any]]:
    embedder = Embedder()
    embedder.warm_up()
    extractive = cases(questions)
    loose = [(paraphrased(a), p, c) for a, p, c in extractive]
    cache = grounding.SentenceVectors(embedder.embed)
    return [
        measure("extractive", extractive, embedder.embed),
        measure("paraphrased, no cache", loose, embedder.embed),
        measure("paraphrased, cold sentence-vector cache", loose, cache),
        measure("paraphrased, warm sentence-vector cache (same passages again)", loose, cache),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=150)
    args = parser.parse_args()
    import os

    rows = run(args.questions)
    print(json.dumps({"load_average": os.getloadavg(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
