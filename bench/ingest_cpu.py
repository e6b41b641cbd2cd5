"""CPU per chunk of SciFact ingestion by process and by worker phase, on both brokers and both models (issue 21).

CPU time, unlike wall time, measures the work on a machine others load too: compare two
versions of the code by running this once with each (``PYTHONPATH`` at a checkout of each).

    .venv/bin/python -m bench.ingest_cpu --docs 1000 --out /tmp/ingest-cpu.json

Each broker gets a ``ragkeep up`` of its own (Redis on 127.0.0.1:6379, then the embedded
default), warmed up with a few documents, then ingests the first ``--docs`` abstracts over HTTP
with the float model and again with the int8 model. Per-process costs that run whatever the
load (Chroma's and beat's timers, the bench polling jobs) grow per chunk when a loaded machine
makes a run slower; the worker's task processes and their phases do not.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import datasets, ingestion  # noqa: E402
from bench.stack import ragkeep_up, redis_available  # noqa: E402
from core.config import DEFAULT_EMBEDDING_MODEL, INT8_EMBEDDING_MODEL  # noqa: E402


def per_chunk(run: dict[str, Any]) -> dict[str, dict[str, float]]:
    """A run's CPU seconds by process and by phase as milliseconds per chunk."""
    return {
        key: {name: round(1000 * seconds / run["chunks"], 2) for name, seconds in run[key].items() if seconds}
        for key in ("cpu_seconds", "worker_cpu_seconds")
    }


def measure(docs: int, workdir: Path) -> dict[str, Any]:
    files = datasets.scifact_files(docs)
    results: dict[str, Any] = {"documents": docs, "load_average_start": os.getloadavg()[0], "runs": []}
    for broker in ("redis", "embedded") if redis_available() else ("embedded",):
        (workdir / broker).mkdir()
        with ragkeep_up(workdir / broker, broker=broker) as stack:
            ingestion.ingest_ragkeep(stack, "warm-up", files[:8])
            for model, collection in ((DEFAULT_EMBEDDING_MODEL, "float"), (INT8_EMBEDDING_MODEL, "int8")):
                run = ingestion.ingest_ragkeep(stack, collection, files, model).as_dict()
                run["load_average"] = os.getloadavg()[0]
                run["ms_per_chunk"] = per_chunk(run)
                results["runs"].append(run)
                total = sum(run["ms_per_chunk"]["cpu_seconds"].values())
                print(
                    f"[{time.strftime('%H:%M:%S')}] {broker} {model}: {run['chunks']} chunks, {total:.1f} ms CPU "
                    f"a chunk {run['ms_per_chunk']}",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1000, help="SciFact abstracts per ingestion")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ragkeep-ingest-cpu-") as tmp:
        results = measure(args.docs, Path(tmp))
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
