"""The embedded default against the Redis path: many small documents, uploaded over HTTP, until live.

Two ``ragkeep up`` stacks run side by side: one on the embedded default (Kombu's SQLAlchemy
broker on SQLite, as a first run gets) and one with ``RAGKEEP_REDIS_URL``; everything else is the
same (SQLite catalog, Chroma child, two worker processes). Each round uploads the same short
SciFact abstracts into a new collection of each stack, one stack after the other, the order
alternating between rounds, so that both see the same machine load. The result is the ratio of
their documents per second; on a shared machine the absolute rates mean little.

    .venv/bin/python -m bench.embedded --docs 500 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import datasets, ingestion  # noqa: E402
from bench.stack import Stack, ragkeep_up, redis_available  # noqa: E402

BROKERS = ("embedded", "redis")


def _log(message: str) -> None:
    print(f"[bench.embedded {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def compare(workdir: Path, files: list[tuple[str, bytes]], rounds: int, prefix: str = "small") -> dict[str, Any]:
    """``rounds`` interleaved ingestions of ``files`` on each broker; documents/s and their ratio."""
    if not redis_available():
        raise RuntimeError("the comparison needs Redis on 127.0.0.1:6379")
    runs: dict[str, list[dict[str, Any]]] = {broker: [] for broker in BROKERS}
    for broker in BROKERS:
        (workdir / broker).mkdir(parents=True, exist_ok=True)
    with ExitStack() as stacks:
        started: dict[str, Stack] = {
            broker: stacks.enter_context(ragkeep_up(workdir / broker, broker=broker)) for broker in BROKERS
        }
        for stack in started.values():  # load the models and open the brokers before timing
            ingestion.ingest_ragkeep(stack, f"{prefix}-warmup", files[:4])
        for number in range(rounds):
            order = BROKERS if number % 2 == 0 else BROKERS[::-1]
            for broker in order:
                result = ingestion.ingest_ragkeep(started[broker], f"{prefix}-{number}", files)
                run = {**result.as_dict(), "documents_per_s": round(result.documents / result.seconds, 2)}
                runs[broker].append(run)
                _log(f"round {number + 1}/{rounds} {broker}: {run['documents_per_s']} documents/s {run}")
    return summarise(runs, len(files))


def summarise(runs: dict[str, list[dict[str, Any]]], documents: int) -> dict[str, Any]:
    """Median documents/s per broker and the embedded default's ratio to Redis (round by round too)."""
    rates = {broker: [run["documents_per_s"] for run in runs[broker]] for broker in BROKERS}
    medians = {broker: statistics.median(rates[broker]) for broker in BROKERS}
    return {
        "documents": documents,
        "runs": runs,
        "documents_per_s": {broker: round(medians[broker], 2) for broker in BROKERS},
        "ratio": round(medians["embedded"] / medians["redis"], 3),
        "ratio_by_round": [round(e / r, 3) for e, r in zip(rates["embedded"], rates["redis"], strict=True)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=500, help="SciFact abstracts per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--workdir", type=Path, help="keep the stacks' folders (logs) here instead of a temporary one")
    args = parser.parse_args()
    files = datasets.scifact_files(args.docs)
    if args.workdir:
        result = compare(args.workdir, files, args.rounds)
    else:
        with tempfile.TemporaryDirectory(prefix="ragkeep-embedded-") as tmp:
            result = compare(Path(tmp), files, args.rounds)
    text = json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2)
    print(text)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
