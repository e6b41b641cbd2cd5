"""``make bench``: ingestion, incremental builds, query latency and retrieval quality, with baselines.

    .venv/bin/python -m bench.run            # the full run (about an hour on 2 cores)
    .venv/bin/python -m bench.run --smoke    # a few minutes: keeps the harness working (CI)

Starts a real ragkeep (``ragkeep up`` in a temporary folder: Chroma server, Celery worker,
beat, API; Redis as the broker when it runs on 127.0.0.1:6379) and measures it side by
side with the bare embedding model and with what a LlamaIndex user would write.
Retrieval quality (``bench/quality.py``) is measured on SciFact, ARAGOG, JSQuAD and
financebench-subset (and hand-written multi-document questions over it) for the default
retrieval config and for dense-only, side by side; query latency compares the two at top_k 10
and 100. Writes ``<out>/<date>.json`` and ``<out>/<date>.md`` (and ``<date>.partial.json``
after each section while it runs); a full run also puts the tables into README.md between the
``bench:begin``/``bench:end`` markers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import abstention, datasets, ingestion, latency, quality  # noqa: E402
from bench import ocr as ocr_bench  # noqa: E402
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
    jsquad_docs: int | None
    financebench_docs: int | None  # smallest first
    abstention_small_groups: int | None  # None: every corpus; else only that many small collections


FULL = Plan(None, None, 300, (1, 8, 32), (1, 8, 32), 300, 8.0, None, 700, None, None, None)
SMOKE = Plan(120, 1, 32, (1, 8), (1, 8), 24, 5.0, 20, None, 4, 2, 3)
HYBRID_COST_TOP_K = (10, 100)  # issue 16: hybrid p50 at most 1.3x dense at top_k 10, 2x at top_k 100
COST_NO_CAP = "dense-only, no cap"


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
                    stages=True,  # the server's own retrieve / generate / ground (grounding) times
                )
                label = "retrieve" if mode == "retrieve" else "extractive answer"
                measure("ragkeep /query", label, concurrency, target.model, load)
        if target is targets[0]:
            hybrid_cost(stack, target, plan, questions, measure)
    baseline = targets[0]
    endpoint = latency.baseline_endpoint(stack.chroma_url, baseline.chroma_collection, workdir / "baseline-api.log")
    with endpoint as (url, pid):
        others["baseline endpoint"] = psutil.Process(pid)
        bodies = [{"question": q, "top_k": 5} for q in questions]
        for concurrency in plan.concurrency:
            load = partial(latency.http_load, f"{url}/query", bodies, concurrency, plan.max_requests, plan.max_seconds)
            measure("baseline LlamaIndex endpoint", "retrieve", concurrency, baseline.model, load)
    return {"top_k": 5, "max_requests": plan.max_requests, "max_seconds": plan.max_seconds, "runs": runs}


def hybrid_cost(
    stack: Any,
    target: LatencyTarget,
    plan: Plan,
    questions: list[str],
    measure: Callable[[str, str, int, str, Callable[..., dict[str, Any]]], None],
) -> None:
    """/query retrieve at concurrency 1, top_k 10 and 100: dense-only without the per-document cap, the
    default config, then dense-only (``retrieval.hybrid: false``, the rest as the default).

    Dense-only without the cap is the dense path before issue 16: the cap reads a larger pool of
    chunks (with their text) from Chroma, so dense-only with it is not the cost hybrid adds.
    Each run is labelled ``retrieve, top_k N, <config>``; ``report.hybrid_cost_table`` sets them side by side.
    """
    with stack.server() as server:
        own = quality.collection_retrieval(server, target.collection)
        configs: tuple[tuple[str, dict[str, Any]], ...] = (
            (COST_NO_CAP, {"hybrid": False, "max_chunks_per_document": None}),
            (f"default (hybrid {'on' if own['hybrid'] else 'off'})", {}),
            ("dense-only", {"hybrid": False}),
        )
        try:
            for name, change in configs:
                retrieval = {**own, **change}
                server.call("PATCH", f"/collections/{target.collection}", json={"config": {"retrieval": retrieval}})
                for top_k in HYBRID_COST_TOP_K:
                    bodies = [
                        {"collection": target.collection, "question": q, "top_k": top_k, "mode": "retrieve"}
                        for q in questions
                    ]
                    load = partial(
                        latency.http_load,
                        f"{stack.url}/query",
                        bodies,
                        1,
                        plan.max_requests,
                        plan.max_seconds,
                        latency.ragkeep_headers(),
                    )
                    measure("ragkeep /query", f"retrieve, top_k {top_k}, {name}", 1, target.model, load)
        finally:
            server.call("PATCH", f"/collections/{target.collection}", json={"config": {"retrieval": own}})


def record_quality(results: dict[str, Any], key: str, evaluate: Callable[[], dict[str, Any]]) -> None:
    """``results["quality"][key] = evaluate()``; an error is recorded (and logged) and the run goes on."""
    try:
        results["quality"][key] = evaluate()
    except Exception as exc:  # one set's failure must not lose the rest of an hour-long run
        results["quality"][key] = {"error": f"{type(exc).__name__}: {exc}"}
    log(f"  {key}: {results['quality'][key]}")


def aragog_section(stack: Any, plan: Plan, results: dict[str, Any]) -> None:
    pdfs = datasets.aragog_files(plan.pdfs)
    log(f"ragkeep: ingesting {len(pdfs)} ARAGOG PDFs over HTTP")
    full_pdf = ingestion.ingest_ragkeep(stack, "aragog", pdfs)
    log(f"  {full_pdf.as_dict()}")
    results["ingestion"]["aragog"] = {"ragkeep": full_pdf.as_dict(), "corpus": "ARAGOG arXiv PDFs"}
    names = {n for n, _ in pdfs}
    with stack.server() as server:
        record_quality(results, "aragog", lambda: quality.evaluate(server, "aragog", quality.aragog_set(names)))


def jsquad_section(stack: Any, plan: Plan, results: dict[str, Any]) -> None:
    log("JSQuAD: ingest and retrieval quality")
    files_ja = datasets.jsquad()[0][: plan.jsquad_docs]
    ingest_ja = ingestion.ingest_ragkeep(stack, "jsquad", files_ja)
    results["ingestion"]["jsquad"] = {"ragkeep": ingest_ja.as_dict(), "corpus": "JSQuAD v1.3 valid articles"}
    names = {n for n, _ in files_ja}
    with stack.server() as server:
        record_quality(results, "jsquad", lambda: quality.evaluate(server, "jsquad", quality.jsquad_set(names)))


def financebench_section(stack: Any, plan: Plan, results: dict[str, Any]) -> None:
    """Ingest financebench-subset; its questions' and the multi-document questions' quality."""
    finance = datasets.financebench_files(plan.financebench_docs)
    log(f"financebench-subset: ingesting {len(finance)} filings over HTTP")
    ingest_fb = ingestion.ingest_ragkeep(stack, "financebench", finance)
    log(f"  {ingest_fb.as_dict()}")
    results["ingestion"]["financebench"] = {
        "ragkeep": ingest_fb.as_dict(),
        "corpus": "financebench-subset filings (PDF)",
    }
    names = {n for n, _ in finance}
    with stack.server() as server:
        record_quality(
            results,
            "financebench",
            lambda: quality.evaluate(server, "financebench", quality.financebench_set(names)),
        )
        record_quality(
            results,
            "financebench multi-document",
            lambda: quality.evaluate(server, "financebench", quality.multidoc_set(names)),
        )


def abstention_section(stack: Any, plan: Plan, results: dict[str, Any]) -> None:
    """Issue 18: unanswerable questions (their documents removed) declined, answerable ones answered."""
    if plan.abstention_small_groups is not None:  # a smoke run: the whole section takes 10-15 min
        log(f"abstention: {plan.abstention_small_groups} of the small collections only")
        abstention.section(stack, ["small"], results, plan.abstention_small_groups)
    else:
        log("abstention: ARAGOG + Solana, small collections (27 groups of 2-6 short documents), JSQuAD (1/16)")
        abstention.section(stack, ["aragog+solana", "small", "jsquad"], results)
    log(f"  {abstention.markdown(results['abstention']['report'])}")


def abstention_financebench_section(stack: Any, plan: Plan, results: dict[str, Any]) -> None:
    if plan.financebench_docs is not None:  # a smoke run: the whole subset (4,806 pages) takes 15-60 min
        log("abstention: financebench-subset skipped (it needs every filing; smoke runs take a few)")
        return
    log("abstention: financebench-subset, each half of the filings its own collection")
    abstention.section(stack, ["financebench"], results)
    log(f"  {abstention.markdown(results['abstention']['report'])}")


def ocr_section(stack: Any, plan: Plan, results: dict[str, Any]) -> None:
    """Issue 19: OCR pages per second, the recogniser alone and a scanned PDF through ragkeep's ocr queue."""
    pages = ocr_bench.PAGES if plan == FULL else 2  # a smoke run only checks the harness
    log(f"ocr: a {pages}-page scan, the recogniser alone and through ragkeep")
    ocr_bench.section(stack, results, pages)
    log(f"  {results['ocr']}")


SECTIONS: dict[str, Callable[[Any, Plan, dict[str, Any]], None]] = {
    "aragog": aragog_section,
    "jsquad": jsquad_section,
    "financebench": financebench_section,
    "abstention": abstention_section,
    "abstention-financebench": abstention_financebench_section,
    "ocr": ocr_section,
}


def _header(plan: Plan) -> dict[str, Any]:
    """What every results file starts with: when, where, which model and plan, and the load."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "model": "all-MiniLM-L6-v2",
        "plan": plan.__dict__,
        "load_average": {"start": os.getloadavg()[0], "cores": os.cpu_count()},
    }


def run_sections(
    names: list[str], plan: Plan, workdir: Path, checkpoint: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """``--only a,b``: those quality sections alone, on a stack of their own."""
    results: dict[str, Any] = {**_header(plan), "ingestion": {}, "quality": {}}
    with ragkeep_up(workdir) as stack:
        for name in names:
            SECTIONS[name](stack, plan, results)
            checkpoint(results)
    results["load_average"]["end"] = os.getloadavg()[0]
    return results


def embedded_rows(workdir: Path, scifact: list[tuple[str, bytes]], results: dict[str, Any]) -> dict[str, Any]:
    """Full SciFact on the embedded default too (both models), on a stack of its own, when the main stack uses Redis.

    Issue 21: the ratio to the embedding floor on both brokers, and the embedded default's documents/s
    against Redis's in the same run. The order (Redis float, Redis int8, embedded int8, embedded float)
    puts each model's two rows on either side of the middle of the run, so that a drifting machine
    load favours neither broker. Returns the ingestion rows to add; sets ``results["embedded"]``.
    """
    if "RAGKEEP_REDIS_URL" not in results["stack"]:
        log("no Redis on 127.0.0.1:6379: the main stack is the embedded default, measured once")
        return {}
    int8 = INT8_EMBEDDING_MODEL
    rows: dict[str, Any] = {}
    (workdir / "embedded").mkdir()
    with ragkeep_up(workdir / "embedded", broker="embedded") as stack:
        for key, collection, model in (
            ("ragkeep_embedded_int8", "scifact-int8", int8),
            ("ragkeep_embedded", "scifact", DEFAULT_EMBEDDING_MODEL),
        ):
            log(f"ragkeep, embedded default: ingesting {len(scifact)} SciFact abstracts with {model}")
            rows[key] = ingestion.ingest_ragkeep(stack, collection, scifact, model).as_dict()
            log(f"  {rows[key]}")
    redis = results["ingestion"]["scifact"]
    by_model = [
        (rows[embedded]["documents"] / rows[embedded]["seconds"], redis[other]["documents"] / redis[other]["seconds"])
        for embedded, other in (("ragkeep_embedded", "ragkeep"), ("ragkeep_embedded_int8", "ragkeep_int8"))
    ]
    results["embedded"] = {
        "documents": len(scifact),
        "documents_per_s": {"embedded": round(by_model[0][0], 2), "redis": round(by_model[0][1], 2)},
        "ratio": round(by_model[0][0] / by_model[0][1], 3),
        "ratio_by_round": [round(e / r, 3) for e, r in by_model],
        "rounds": ["float model", "int8 model"],
    }
    return rows


def rest_of_run(stack: Any, plan: Plan, results: dict[str, Any], checkpoint: Callable[[dict[str, Any]], None]) -> None:
    """After the timing part: every quality section, then the LlamaIndex baselines and the int8 PDFs."""
    # The quality sets before the baselines and the int8 PDFs, so that a run stopped early has them.
    for section in SECTIONS.values():
        section(stack, plan, results)
        checkpoint(results)

    log("baseline: LlamaIndex IngestionPipeline on the same abstracts")
    scifact = datasets.scifact_files(plan.scifact_docs)
    int8 = INT8_EMBEDDING_MODEL
    baseline_scifact = ingestion.ingest_baseline(stack.chroma_url, "baseline-scifact", scifact[: plan.baseline_docs])
    log(f"  {baseline_scifact}")
    results["ingestion"]["scifact"]["baseline"] = baseline_scifact
    full_pdf_int8 = ingestion.ingest_ragkeep(stack, "aragog-int8", datasets.aragog_files(plan.pdfs), int8)
    log(f"  {int8}: {full_pdf_int8.as_dict()}")
    results["ingestion"]["aragog"]["ragkeep_int8"] = full_pdf_int8.as_dict()
    log("baseline: LlamaIndex IngestionPipeline on the same PDFs")
    baseline_pdf = ingestion.ingest_baseline(stack.chroma_url, "baseline-aragog", datasets.aragog_files(plan.pdfs))
    log(f"  {baseline_pdf}")
    results["ingestion"]["aragog"]["baseline"] = baseline_pdf


def run(plan: Plan, workdir: Path, checkpoint: Callable[[dict[str, Any]], None], core: bool = False) -> dict[str, Any]:
    """The whole bench; ``core``: only what the timing comparison needs (ingestion, floor, incremental,
    SciFact quality, latency), without the other quality sets and the baselines."""
    results = _header(plan)
    results["core_only"] = core
    scifact = datasets.scifact_files(plan.scifact_docs)
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
        results["ingestion"] = {
            "scifact": {
                "ragkeep": full.as_dict(),
                "ragkeep_int8": full_int8.as_dict(),
                "corpus": "BEIR SciFact abstracts",
            },
        }
        checkpoint(results)
        results["ingestion"]["scifact"].update(embedded_rows(workdir, scifact, results))
        checkpoint(results)

        log("floor: the bare embedding model on a sample of the same chunks, as the workers embedded them")
        bare, texts = ingestion.chunk_texts(stack, "scifact", full.version)
        floor = ingestion.embedding_floor(texts, plan.floor_sample, plan.batch_sizes)
        # Runs before 2026-12-01d embedded the chunks' own text, without their context header: for comparison.
        floor["bare_chunks"] = ingestion.embedding_floor(
            bare, plan.floor_sample, plan.batch_sizes, ["onnx"], one_thread_processes=False
        )["onnx"]
        log(f"  {floor}")
        results["floor"] = floor

        log("incremental: one changed abstract")
        name, data = scifact[len(scifact) // 2]
        incremental = ingestion.change_one(stack, "scifact", name, data + b"\n\nErratum: see the corrected figure.")
        log(f"  {incremental}")
        results["incremental"] = {**incremental, "full_seconds": round(full.seconds, 3)}

        log("retrieval quality over /query: SciFact test, default config and dense-only")
        scifact_set = quality.scifact_set({n for n, _ in scifact}, plan.quality_queries)
        with stack.server() as server:
            results["quality"] = {
                "scifact": quality.evaluate(server, "scifact", scifact_set),
                # BM25's half of hybrid does not depend on the model: dense tells the int8 model's quality.
                "scifact, int8 model": quality.evaluate(server, "scifact-int8", scifact_set, configs=("dense",)),
            }
        log(f"  {results['quality']}")
        checkpoint(results)

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
        checkpoint(results)
        if not core:
            rest_of_run(stack, plan, results, checkpoint)

    results["load_average"]["end"] = os.getloadavg()[0]
    return results


@contextlib.contextmanager
def working_folder(keep: Path | None) -> Iterator[Path]:
    """The run's data folder (catalog, blobs, Chroma, logs): a temporary one removed at the end, or ``keep``
    (created; it must not exist or must be empty), left in place to inspect after the run."""
    if keep is None:
        with tempfile.TemporaryDirectory(prefix="ragkeep-bench-") as tmp:
            yield Path(tmp)
        return
    keep.mkdir(parents=True, exist_ok=True)
    if any(keep.iterdir()):
        raise SystemExit(f"--keep {keep}: the folder is not empty")
    yield keep.resolve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a small run that only checks the harness")
    parser.add_argument(
        "--note",
        default="",
        help="a sentence for the results, e.g. what else ran on the machine (latency is then comparable only "
        "within the run)",
    )
    parser.add_argument(
        "--only",
        type=lambda value: value.split(","),
        help="quality sections (comma-separated: " + ", ".join(SECTIONS) + ") on a stack of their own, "
        "written to <date>.<sections>.json (no README update)",
    )
    parser.add_argument(
        "--core",
        action="store_true",
        help="ingestion (both brokers, both models), floor, incremental build, SciFact quality and query latency "
        "only (about 35 min): the timing comparison with an earlier run, written to <date>.core.json/.md",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="folder for the results")
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep the run's data folder (catalog, blobs, Chroma, logs) here instead of a temporary one, e.g. to "
        "recompute signals from the stored indexes afterwards",
    )
    args = parser.parse_args()
    # A terminated run still stops the ragkeep it started (the context managers unwind).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    stem = ("smoke-" if args.smoke else "") + datetime.now(UTC).date().isoformat()
    if args.only and not set(args.only) <= set(SECTIONS):
        parser.error(f"--only takes {', '.join(SECTIONS)}")
    stem += f".{'-'.join(args.only)}" if args.only else ""
    stem += ".core" if args.core and not args.only else ""
    args.out.mkdir(parents=True, exist_ok=True)
    partial_file = args.out / f"{stem}.partial.json"

    def checkpoint(results: dict[str, Any]) -> None:
        """What is measured so far, in case the run is stopped before the end (removed when it ends)."""
        partial_file.write_text(json.dumps(results, indent=2) + "\n")

    with working_folder(args.keep) as workdir:
        plan = SMOKE if args.smoke else FULL
        results = (
            run_sections(args.only, plan, workdir, checkpoint)
            if args.only
            else run(plan, workdir, checkpoint, core=args.core)
        )
    results["bench_seconds"] = round(time.monotonic() - started, 1)
    results["note"] = args.note
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.only:  # a section's results: tables only with the rest (python -m bench.report)
        partial_file.unlink(missing_ok=True)
        log(f"done in {results['bench_seconds']:.0f} s; written to {args.out / stem}.json")
        return
    table = markdown(results)
    (args.out / f"{stem}.md").write_text(table)
    if not args.smoke and not args.core:
        update_readme(ROOT / "README.md", table, f"bench/results/{stem}.json")
    print(table)
    partial_file.unlink(missing_ok=True)
    log(f"done in {results['bench_seconds']:.0f} s; written to {args.out / stem}.json and .md")


if __name__ == "__main__":
    main()
