"""``make bench``: ingestion, incremental builds, query latency and retrieval quality, with baselines.

    .venv/bin/python -m bench.run            # the full run (~20 minutes on 2 cores)
    .venv/bin/python -m bench.run --smoke    # a minute or two: keeps the harness working (CI)

Starts a real ragkeep (``ragkeep up`` in a temporary folder: Chroma server, Celery worker,
beat, API; Redis as the broker when it runs on 127.0.0.1:6379) and measures it side by
side with the bare embedding model and with what a LlamaIndex user would write.
Writes ``<out>/<date>.json`` and ``<out>/<date>.md``; a full run also puts the tables
into README.md between the ``bench:begin``/``bench:end`` markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import datasets, ingestion, latency, quality  # noqa: E402
from bench.report import markdown, update_readme  # noqa: E402
from bench.stack import ragkeep_up, tree_cpu_seconds  # noqa: E402
from core.config import DEFAULT_EMBEDDING_MODEL, INT8_EMBEDDING_MODEL  # noqa: E402


@dataclass(frozen=True)
class Plan:
    scifact_docs: int | None
    pdfs: int | None
    floor_sample: int
    batch_sizes: tuple[int, ...]
    concurrency: tuple[int, ...]
    max_requests: int
    max_seconds: float
    quality_queries: int | None
    baseline_docs: int | None  # the LlamaIndex baseline's share of SciFact (its rate does not depend on size)


FULL = Plan(None, None, 300, (1, 8, 32), (1, 8, 32), 300, 8.0, None, 700)
SMOKE = Plan(120, 1, 32, (1, 8), (1, 8), 24, 5.0, 20, None)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory_gib:.0f} GiB, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}"
    )


@dataclass(frozen=True)
class LatencyTarget:
    collection: str  # ragkeep's collection (its live version answers)
    chroma_collection: str  # its full version's Chroma collection, for the floor and the baseline
    model: str


def latency_section(stack: Any, targets: list[LatencyTarget], plan: Plan, workdir: Path) -> dict[str, Any]:
    """For each embedding model: the floor, then ragkeep's /query; then the baseline (float model) once.

    Each run also records the CPU that every process spent per request: the stack's parts,
    this process (the floor itself, or the load generator) and the baseline endpoint.
    """
    questions = [q for q, _ in datasets.scifact_queries()]
    runs: list[dict[str, Any]] = []
    me = psutil.Process()
    others: dict[str, psutil.Process] = {}  # processes outside the stack, by name

    def cpu() -> dict[str, float]:
        own = me.cpu_times()  # this process's threads only: `ragkeep up` is one of its children
        seconds = {**stack.cpu_seconds(), "bench process": own.user + own.system}
        return seconds | {name: tree_cpu_seconds(process) for name, process in others.items()}

    def measure(target: str, mode: str, concurrency: int, model: str, load: Callable[..., dict[str, Any]]) -> None:
        before: dict[str, float] = {}
        result = load(on_start=lambda: before.update(cpu()))  # after the warm-up requests
        result["cpu_ms_per_request"] = latency.cpu_per_request(before, cpu(), result.get("requests", 0))
        runs.append({"target": target, "mode": mode, "concurrency": concurrency, "model": model, **result})
        log(f"  {target} {mode} ({model}) c={concurrency}: {result}")

    for target in targets:
        floor = latency.Floor(stack.chroma_url, target.chroma_collection, top_k=5, model=target.model)
        for concurrency in plan.concurrency:
            measure(
                "floor (in-process)",
                "retrieve",
                concurrency,
                target.model,
                partial(latency.inprocess_load, floor, questions, concurrency, plan.max_requests, plan.max_seconds),
            )
        del floor
        # Extractive answers cost the same whatever the model: measured once, with the default one.
        modes = ("retrieve", "answer") if target is targets[0] else ("retrieve",)
        for mode in modes:
            bodies = [{"collection": target.collection, "question": q, "top_k": 5, "mode": mode} for q in questions]
            for concurrency in plan.concurrency:
                load = partial(
                    latency.http_load,
                    f"{stack.url}/query",
                    bodies,
                    concurrency,
                    plan.max_requests,
                    plan.max_seconds,
                    latency.ragkeep_headers(),
                )
                label = "retrieve" if mode == "retrieve" else "extractive answer"
                measure("ragkeep /query", label, concurrency, target.model, load)
    baseline = targets[0]
    endpoint = latency.baseline_endpoint(stack.chroma_url, baseline.chroma_collection, workdir / "baseline-api.log")
    with endpoint as (url, pid):
        others["baseline endpoint"] = psutil.Process(pid)
        bodies = [{"question": q, "top_k": 5} for q in questions]
        for concurrency in plan.concurrency:
            load = partial(latency.http_load, f"{url}/query", bodies, concurrency, plan.max_requests, plan.max_seconds)
            measure("baseline LlamaIndex endpoint", "retrieve", concurrency, baseline.model, load)
    return {"top_k": 5, "max_requests": plan.max_requests, "max_seconds": plan.max_seconds, "runs": runs}


def run(plan: Plan, workdir: Path, jsquad: bool) -> dict[str, Any]:
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "model": "all-MiniLM-L6-v2",
        "plan": plan.__dict__,
    }
    scifact = datasets.scifact_files(plan.scifact_docs)
    pdfs = datasets.aragog_files(plan.pdfs)
    int8 = INT8_EMBEDDING_MODEL
    with ragkeep_up(workdir) as stack:
        results["stack"] = {k: v for k, v in stack.settings.items() if "KEY" not in k and "PORT" not in k}
        results["stack"]["RAGKEEP_DATA_DIR"] = "<temporary folder>"

        log(f"ragkeep: ingesting {len(scifact)} SciFact abstracts over HTTP")
        full = ingestion.ingest_ragkeep(stack, "scifact", scifact)
        log(f"  {full.as_dict()}")
        log(f"ragkeep: the same abstracts with the {int8} model")
        full_int8 = ingestion.ingest_ragkeep(stack, "scifact-int8", scifact, int8)
        log(f"  {full_int8.as_dict()}")

        log("floor: the bare embedding model on a sample of the same chunks")
        texts = ingestion.chunk_texts(stack, "scifact", full.version)
        floor = ingestion.embedding_floor(texts, plan.floor_sample, plan.batch_sizes)
        log(f"  {floor}")

        log("incremental: one changed abstract")
        name, data = scifact[len(scifact) // 2]
        incremental = ingestion.change_one(stack, "scifact", name, data + b"\n\nErratum: see the corrected figure.")
        log(f"  {incremental}")

        log("retrieval quality over /query")
        items = datasets.scifact_queries({n for n, _ in scifact})[: plan.quality_queries]
        with stack.server() as server:
            results["quality"] = {
                "scifact": quality.evaluate(server, "scifact", items),
                # BM25's half of hybrid does not depend on the model: dense tells the int8 model's quality.
                "scifact, int8 model": quality.evaluate(server, "scifact-int8", items, hybrid_too=False),
            }
        log(f"  {results['quality']}")

        log("query latency")
        with stack.server() as server:
            # ragkeep answers from the live version (for `scifact`, a delta of version 1 after the
            # incremental build); the floor and the baseline query version 1's full collection of the same chunks.
            targets = [
                LatencyTarget(
                    collection,
                    server.call("GET", f"/collections/{collection}/versions/1")["chroma_collection"],
                    model,
                )
                for collection, model in (("scifact", DEFAULT_EMBEDDING_MODEL), ("scifact-int8", int8))
            ]
        results["latency"] = latency_section(stack, targets, plan, workdir)

        log("baseline: LlamaIndex IngestionPipeline on the same abstracts")
        baseline_scifact = ingestion.ingest_baseline(
            stack.chroma_url, "baseline-scifact", scifact[: plan.baseline_docs]
        )
        log(f"  {baseline_scifact}")

        log(f"ragkeep: ingesting {len(pdfs)} ARAGOG PDFs over HTTP")
        full_pdf = ingestion.ingest_ragkeep(stack, "aragog", pdfs)
        log(f"  {full_pdf.as_dict()}")
        full_pdf_int8 = ingestion.ingest_ragkeep(stack, "aragog-int8", pdfs, int8)
        log(f"  {int8}: {full_pdf_int8.as_dict()}")
        log("baseline: LlamaIndex IngestionPipeline on the same PDFs")
        baseline_pdf = ingestion.ingest_baseline(stack.chroma_url, "baseline-aragog", pdfs)
        log(f"  {baseline_pdf}")

        if jsquad:
            log("JSQuAD: ingest and retrieval quality")
            with stack.server() as server:
                files, items_ja = datasets.jsquad()
                ingestion.ingest_ragkeep(stack, "jsquad", files)
                results["quality"]["jsquad"] = quality.evaluate(server, "jsquad", items_ja)

    results["floor"] = floor
    results["ingestion"] = {
        "scifact": {
            "ragkeep": full.as_dict(),
            "ragkeep_int8": full_int8.as_dict(),
            "baseline": baseline_scifact,
            "corpus": "BEIR SciFact abstracts",
        },
        "aragog": {
            "ragkeep": full_pdf.as_dict(),
            "ragkeep_int8": full_pdf_int8.as_dict(),
            "baseline": baseline_pdf,
            "corpus": "ARAGOG arXiv PDFs",
        },
    }
    results["incremental"] = {**incremental, "full_seconds": round(full.seconds, 3)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a small run that only checks the harness")
    parser.add_argument("--jsquad", action="store_true", help="also JSQuAD retrieval quality (about 10 min more)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="folder for the results")
    args = parser.parse_args()
    # A terminated run still stops the ragkeep it started (the context managers unwind).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ragkeep-bench-") as tmp:
        results = run(SMOKE if args.smoke else FULL, Path(tmp), args.jsquad)
    results["bench_seconds"] = round(time.monotonic() - started, 1)
    stem = ("smoke-" if args.smoke else "") + datetime.now(UTC).date().isoformat()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (args.out / f"{stem}.md").write_text(table)
    if not args.smoke:
        update_readme(ROOT / "README.md", table, f"bench/results/{stem}.json")
    print(table)
    log(f"done in {results['bench_seconds']:.0f} s; written to {args.out / stem}.json and .md")


if __name__ == "__main__":
    main()
