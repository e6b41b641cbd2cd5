"""The benchmark's Markdown tables, and their copy in README.md."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from bench.ocr import markdown as ocr_markdown

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
# MTEB's SciFact nDCG@10 for all-MiniLM-L6-v2 (whole abstracts, no chunking).
PUBLISHED_SCIFACT_NDCG = 0.645


EMBEDDED_TARGET = 0.8  # issue 21: the embedded default's documents/s against the Redis path's, same run


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


FLOOR_KEYS = ("torch", "onnx", "onnx_int8")
SYSTEMS = (  # key in results["ingestion"][corpus], label
    ("ragkeep", "ragkeep (HTTP upload → live version)"),
    ("ragkeep_int8", "ragkeep, int8 model"),
    ("ragkeep_redis", "ragkeep, Redis broker"),
    ("ragkeep_embedded", "ragkeep, embedded default (SQLite broker)"),
    ("ragkeep_embedded_int8", "ragkeep, embedded default (SQLite broker), int8 model"),
    ("baseline", "LlamaIndex IngestionPipeline → Chroma"),
)
BROKERS = {"redis": "Redis", "embedded": "embedded SQLite"}


def _label(key: str, label: str, run: dict[str, Any]) -> str:
    """The system's label, with the broker of a ragkeep row whose label does not name it."""
    broker = run.get("broker")
    return f"{label} [{BROKERS[broker]} broker]" if broker in BROKERS and "broker" not in label else label


def ingestion_table(results: dict[str, Any]) -> list[str]:
    floor = results.get("floor", {})
    floors = [floor[key] for key in FLOOR_KEYS if key in floor]
    lines = [
        "| corpus | system | documents | chunks | wall s | chunks/s | "
        + "".join(f"x {floor['name']} | " for floor in floors)
        + "worker peak MiB |",
        "|---|---|---|---|---|---|" + "---|" * len(floors) + "---|",
    ]
    for entry in results["ingestion"].values():
        for key, label in SYSTEMS:
            if key not in entry:
                continue
            run = entry[key]
            ratios = "".join(_ratio(run["chunks_per_s"], floor["chunks_per_s"]) + " | " for floor in floors)
            peak = f"{run['peak_worker_mb']:.0f}" if "peak_worker_mb" in run else "-"
            lines.append(
                f"| {entry['corpus']} | {_label(key, label, run)} | {run['documents']} | {run['chunks']} | "
                f"{run['seconds']:.1f} | "
                f"{run['chunks_per_s']:.1f} | {ratios}{peak} |"
            )
    return lines


INGEST_PROCESSES = (  # key in a run's cpu_seconds (bench.stack.PROCESS_KINDS), heading
    ("api", "API"),
    ("worker", "worker main"),
    ("worker tasks", "worker tasks"),
    ("parse helpers", "parse helpers"),
    ("ocr worker", "OCR worker"),
    ("beat", "beat"),
    ("chroma", "Chroma"),
    ("broker", "Redis"),
)
INGEST_PHASES = (  # key in a run's worker_cpu_seconds (workers/observe.py), heading
    ("embed", "embed"),
    ("parse (helper process)", "parse helper"),
    ("parse", "parse, worker side"),
    ("injection scan", "injection scan"),
    ("catalog and task code", "catalog and task code"),
    ("celery (around tasks)", "Celery around tasks"),
    ("chroma write", "Chroma write"),
    ("bm25 index", "BM25 index"),
)


def _ingestion_runs(results: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(corpus, system label, run) of every ragkeep ingestion whose CPU was measured."""
    return [
        (entry["corpus"], _label(key, label, entry[key]), entry[key])
        for entry in results["ingestion"].values()
        for key, label in SYSTEMS
        if key in entry and entry[key].get("cpu_seconds") and entry[key].get("chunks")
    ]


def _floor_for(run: dict[str, Any], results: dict[str, Any]) -> dict[str, Any] | None:
    key = "onnx_int8" if "int8" in str(run.get("model", "")) else "onnx"
    floor: dict[str, Any] | None = results.get("floor", {}).get(key)
    return floor


def ingestion_cpu_table(results: dict[str, Any]) -> list[str]:
    """CPU milliseconds per chunk of each ingestion by process, against the floor's, and the ratio to the floor."""
    runs = _ingestion_runs(results)
    if not runs:
        return []
    lines = [
        "| corpus | system | "
        + " | ".join(h for _, h in INGEST_PROCESSES)
        + " | all | floor's CPU ms/chunk | embed share of all | chunks/s x floor of its model"
        + " | x its floor in one-thread processes |",
        "|---|---|" + "---|" * (len(INGEST_PROCESSES) + 5),
    ]
    for corpus, label, run in runs:
        per_chunk = {k: 1000 * v / run["chunks"] for k, v in run["cpu_seconds"].items()}
        total = sum(per_chunk.values())
        cells = " | ".join(f"{per_chunk[k]:.1f}" if k in per_chunk else "-" for k, _ in INGEST_PROCESSES)
        embed = 1000 * run.get("worker_cpu_seconds", {}).get("embed", 0.0) / run["chunks"]
        floor = _floor_for(run, results)
        floor_cpu = f"{floor['cpu_ms_per_chunk']:.1f}" if floor and "cpu_ms_per_chunk" in floor else "-"
        ratio = _ratio(run["chunks_per_s"], floor["chunks_per_s"]) if floor else "-"
        parallel = (floor or {}).get("one_thread_processes")
        strict = _ratio(run["chunks_per_s"], parallel["chunks_per_s"]) if parallel else "-"
        lines.append(
            f"| {corpus} | {label} | {cells} | {total:.1f} | {floor_cpu} | {embed / total:.0%} | {ratio} | {strict} |"
            if total
            else f"| {corpus} | {label} | {cells} | - | {floor_cpu} | - | {ratio} | {strict} |"
        )
    return lines


def ingestion_phase_table(results: dict[str, Any]) -> list[str]:
    """CPU milliseconds per chunk in the worker's task processes (and parse helpers), by phase."""
    runs = [r for r in _ingestion_runs(results) if r[2].get("worker_cpu_seconds")]
    if not runs:
        return []
    lines = [
        "| corpus | system | " + " | ".join(h for _, h in INGEST_PHASES) + " | all phases |",
        "|---|---|" + "---|" * (len(INGEST_PHASES) + 1),
    ]
    for corpus, label, run in runs:
        phases = run["worker_cpu_seconds"]
        per_chunk = {k: 1000 * v / run["chunks"] for k, v in phases.items()}
        cells = " | ".join(f"{per_chunk[k]:.1f}" if k in per_chunk else "-" for k, _ in INGEST_PHASES)
        lines.append(f"| {corpus} | {label} | {cells} | {sum(per_chunk.values()):.1f} |")
    return lines


def latency_table(results: dict[str, Any]) -> list[str]:
    runs = results["latency"]["runs"]
    default = runs[0].get("model")
    floor_p50 = {(r.get("model"), r["concurrency"]): r.get("p50_ms") for r in runs if r["target"].startswith("floor")}
    lines = [
        "| target | model | mode | concurrency | p50 ms | p95 ms | p99 ms | req/s | errors | p50 x floor |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        model = r.get("model", default)
        head = f"| {r['target']} | {model} | {r['mode']} | {r['concurrency']} |"
        if not r.get("requests"):
            lines.append(f"{head} - | - | - | - | {r['errors']} | - |")
            continue
        floor = floor_p50.get((model, r["concurrency"]))
        lines.append(
            f"{head} {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | "
            f"{r['rps']} | {r['errors']} | {_ratio(r['p50_ms'], floor) if floor else '-'} |"
        )
    return lines


def stages_table(results: dict[str, Any]) -> list[str]:
    """/query's own per-stage times (its ``latency_ms``): what grounding costs next to retrieval and answering."""
    runs = [r for r in results["latency"]["runs"] if r.get("server_stages_ms")]
    if not runs:
        return []
    stages = ("retrieve", "generate", "ground", "total")
    lines = [
        "| target | model | mode | concurrency | client p50 ms | "
        + " | ".join(f"{name} p50 / mean ms" for name in stages)
        + " | ground share of total |",
        "|---|---|---|---|---|" + "---|" * (len(stages) + 1),
    ]
    for r in runs:
        server = r["server_stages_ms"]
        cells = " | ".join(
            f"{server[name]['p50']} / {server[name]['mean']}" if name in server else "-" for name in stages
        )
        share = (
            f"{server['ground']['mean'] / server['total']['mean']:.1%}"
            if "ground" in server and server.get("total", {}).get("mean")
            else "-"
        )
        lines.append(
            f"| {r['target']} | {r['model']} | {r['mode']} | {r['concurrency']} | {r['p50_ms']} | {cells} | {share} |"
        )
    return lines


CPU_COLUMNS = (  # key in a run's cpu_ms_per_request, heading
    ("bench process", "bench process"),
    ("api", "API"),
    ("baseline endpoint", "baseline endpoint"),
    ("chroma", "Chroma"),
    ("worker", "worker"),
    ("beat", "beat"),
)


def cpu_table(results: dict[str, Any]) -> list[str]:
    """CPU milliseconds per request that each process spent during each latency run."""
    runs = [r for r in results["latency"]["runs"] if r.get("cpu_ms_per_request")]
    if not runs:
        return []
    lines = [
        "| target | model | mode | concurrency | " + " | ".join(h for _, h in CPU_COLUMNS) + " | all |",
        "|---|---|---|---|" + "---|" * (len(CPU_COLUMNS) + 1),
    ]
    for r in runs:
        cpu = r["cpu_ms_per_request"]
        cells = " | ".join(f"{cpu[k]:.1f}" if k in cpu else "-" for k, _ in CPU_COLUMNS)
        lines.append(
            f"| {r['target']} | {r['model']} | {r['mode']} | {r['concurrency']} | {cells} | {sum(cpu.values()):.1f} |"
        )
    return lines


QUALITY_METRICS = (  # metric key, heading
    ("ndcg@10", "nDCG@10"),
    ("recall@10", "recall@10"),
    ("recall@100", "recall@100"),
    ("hit@5", "doc hit@5"),
    ("mrr@5", "MRR@5"),
    ("evidence_recall@5", "evidence recall@5"),
    ("reference_recall@5", "multi-doc recall@5"),
    ("all_references@5", "all references@5"),
)
CONFIG_LABELS = {"default": "default", "dense": "dense-only"}


def _cell(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


def _verdict(passed: bool | None) -> str:
    return {True: "pass", False: "**fail**", None: "-"}[passed]


def quality_table(results: dict[str, Any]) -> list[str]:
    """Default config and dense-only side by side: every metric measured, and the issue's targets."""
    lines = [
        "| dataset | queries | metric | default | dense-only | default - dense | target (default) | held-out half: "
        "default / dense |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dataset, report in results["quality"].items():
        measured = [c for c in CONFIG_LABELS if c in report]
        if not measured:
            continue
        targets = report.get("targets", {})
        for metric, heading in QUALITY_METRICS:
            values = {c: report[c].get(metric) for c in measured}
            if all(v is None for v in values.values()):
                continue
            default, dense = values.get("default"), values.get("dense")
            delta = f"{default - dense:+.3f}" if default is not None and dense is not None else "-"
            target = targets.get(metric)
            goal = f"≥ {target['floor']:.2f}: {_verdict(target['pass'])}" if target else ""
            held = [report[c].get("held_out", {}) for c in ("default", "dense") if c in report]
            half = (
                " / ".join(_cell(h.get(metric)) for h in held) if any(h.get(metric) is not None for h in held) else ""
            )
            lines.append(
                f"| {dataset} | {report['queries']} | {heading} | {_cell(default)} | {_cell(dense)} | {delta} | "
                f"{goal} | {half} |"
            )
    return lines


def default_retrieval(results: dict[str, Any]) -> str:
    """The default retrieval config the quality rows were measured with (the first dataset's)."""
    for report in results["quality"].values():
        config = report.get("default_retrieval")
        if config:
            return ", ".join(f"{k} {v}" for k, v in config.items() if k != "top_k")
    return "-"


HYBRID_COST_TARGETS = {10: 1.3, 100: 2.0}  # issue 16: default (hybrid) p50 at most this many times dense


def hybrid_cost_table(results: dict[str, Any]) -> list[str]:
    """/query retrieve p50 at concurrency 1: the default config against dense-only, at top_k 10 and 100.

    Dense-only without the per-document cap (the dense path before issue 16), when measured, is shown
    too, with the default's ratio to it.
    """
    runs = [r for r in results["latency"]["runs"] if ", top_k " in r["mode"] and r.get("requests")]
    if not runs:
        return []
    p50: dict[tuple[int, str], float] = {}
    for r in runs:
        _, top_k, config = r["mode"].split(", ", 2)
        kind = {"dense-only": "dense", "dense-only, no cap": "nocap"}.get(config, "default")
        p50[(int(top_k.removeprefix("top_k ")), kind)] = r["p50_ms"]
    lines = [
        "| top_k | default p50 ms | dense-only p50 ms | default / dense | target | dense-only, no cap p50 ms | "
        "default / no cap |",
        "|---|---|---|---|---|---|---|",
    ]
    for top_k, limit in HYBRID_COST_TARGETS.items():
        default, dense, nocap = (p50.get((top_k, kind)) for kind in ("default", "dense", "nocap"))
        if default is None or dense is None:
            continue
        ratio = default / dense
        against_nocap = f"{default / nocap:.2f}x" if nocap else "-"
        lines.append(
            f"| {top_k} | {default} | {dense} | {ratio:.2f}x | ≤ {limit}x: {_verdict(ratio <= limit)} | "
            f"{nocap if nocap is not None else '-'} | {against_nocap} |"
        )
    return lines


def _parallel_note(floor: dict[str, Any]) -> str:
    parallel = floor.get("one_thread_processes")
    if not parallel:
        return ""
    return (
        f"; as the workers run it, {parallel['processes']} processes of one thread: **{parallel['chunks_per_s']}**"
        f" ({parallel['cpu_ms_per_chunk']} ms of CPU a chunk, against {floor['cpu_ms_per_chunk']})"
    )


def _floor_section(results: dict[str, Any]) -> list[str]:
    floor = results["floor"]
    return [
        f"**Embedding floors** ({results['model']} alone, {floor['threads']} threads, a sample of "
        f"{floor['sample_chunks']} SciFact chunks"
        + (", as the workers embed them: each with its document's context header" if "bare_chunks" in floor else "")
        + "; chunks/s by batch size):",
        "",
        *(
            f"- {floor[b]['name']}: **{floor[b]['chunks_per_s']}** at batch size {floor[b]['best_batch_size']} ("
            + ", ".join(f"{size}: {rate}" for size, rate in floor[b]["by_batch_size"].items())
            + ")"
            + _parallel_note(floor[b])
            for b in FLOOR_KEYS
            if b in floor
        ),
        *(
            [
                f"- for comparison with runs before 2026-12-01d, which embedded the chunks' own text (about a fifth "
                f"fewer tokens): {floor['bare_chunks']['name']} **{floor['bare_chunks']['chunks_per_s']}**, "
                f"{floor['bare_chunks']['cpu_ms_per_chunk']} ms of CPU a chunk"
            ]
            if "bare_chunks" in floor
            else []
        ),
        "",
    ]


def _ingestion_section(results: dict[str, Any]) -> list[str]:
    lines = ["**Full ingestion**", "", *ingestion_table(results), ""]
    if "floor" in results:
        lines += [
            "The baseline's chunks come from LlamaIndex's SentenceSplitter (250 tokens), ragkeep's from "
            "Unstructured (by_title, 1,000 characters), so compare chunks/s. On SciFact the baseline runs on the "
            "first abstracts only, to keep the run under 20 minutes; its rate does not depend on corpus size.",
            "",
        ]
    scifact = results["ingestion"].get("scifact", {}).get("ragkeep")
    if scifact and "upload_seconds" in scifact:
        lines += [
            f"ragkeep's time splits into upload {scifact['upload_seconds']:.1f} s, embedding "
            f"{scifact['worker_embed_seconds']:.1f} s (summed over worker processes) and the version build "
            f"{scifact['build_seconds']:.1f} s; parsing is the rest.",
            "",
        ]
    if cpu := ingestion_cpu_table(results):
        lines += [
            "**CPU per chunk** of each ingestion, in milliseconds, by process, from the first upload to the live "
            "version (CPU time: on a shared machine it measures the work, where wall time measures the machine's "
            "load). The floor's is its own process's CPU per chunk at its best batch size; the embed share is the "
            "workers' time in the model over the CPU of all processes. On 2 busy cores throughput is about the CPU "
            "available over the CPU per chunk, so the ratio to the floor follows the CPU per chunk.",
            "",
            *cpu,
            "",
        ]
    if phases := ingestion_phase_table(results):
        lines += [
            "Inside the worker's task processes and their parse helpers, by phase "
            "(`ragkeep_worker_cpu_seconds_total`; catalog and task code is a task's CPU outside the named "
            "phases, Celery around tasks a task process's CPU between task bodies):",
            "",
            *phases,
            "",
        ]
    return lines + _embedded_lines(results)


def _embedded_lines(results: dict[str, Any]) -> list[str]:
    """The embedded default's documents/s against Redis's, measured interleaved in this run (issue 21: >= 0.8x)."""
    comparison = results.get("embedded")
    if not comparison:
        return []
    rates = comparison["documents_per_s"]
    verdict = "met" if comparison["ratio"] >= EMBEDDED_TARGET else "**not met**"
    if "rounds" in comparison:  # the full SciFact rows above, one pair per model
        return [
            f"**Embedded default against Redis** (the full SciFact rows above): {rates['embedded']} against "
            f"{rates['redis']} documents/s with the float model, **{comparison['ratio']:.2f}x** (by model: "
            + ", ".join(
                f"{name} {r:.2f}x" for name, r in zip(comparison["rounds"], comparison["ratio_by_round"], strict=True)
            )
            + f"; target >= {EMBEDDED_TARGET}x: {verdict}).",
            "",
        ]
    return [
        f"**Embedded default against Redis** ({comparison['documents']} SciFact abstracts uploaded over HTTP until "
        f"live, {len(comparison['ratio_by_round'])} round(s) on each, interleaved): {rates['embedded']} against "
        f"{rates['redis']} documents/s, **{comparison['ratio']:.2f}x** (by round: "
        + ", ".join(f"{r:.2f}x" for r in comparison["ratio_by_round"])
        + f"; target >= {EMBEDDED_TARGET}x: {verdict}).",
        "",
    ]


def _incremental_section(results: dict[str, Any]) -> list[str]:
    inc = results["incremental"]
    return [
        "**Incremental build** (one SciFact abstract changed)",
        "",
        "| full ingestion s | one changed document s | share | build s | chunks embedded | chunks reused |",
        "|---|---|---|---|---|---|",
        f"| {inc['full_seconds']:.1f} | {inc['seconds']:.1f} | {inc['seconds'] / inc['full_seconds']:.1%} | "
        f"{inc['build_seconds']:.1f} | {inc['embedded_chunks']} | {inc['reused_chunks']} |",
        "",
        (
            f"The new version is a delta of version {inc['base_version']}: its Chroma collection holds only the "
            "changed document's chunks, and queries read version "
            f"{inc['base_version']}'s collection too, minus that document's old chunks. "
            "The time is mostly the build debounce (2 s) and the parse of the changed document."
            if inc.get("base_version")
            else "The new version was written in full."
        ),
        "",
    ]


def _latency_section(results: dict[str, Any]) -> list[str]:
    cpu = cpu_table(results)
    cost = hybrid_cost_table(results)
    lines = []
    if any(", top_k " not in r["mode"] for r in results["latency"]["runs"]):
        lines += [
            f"**Query latency** (SciFact live versions: with the float model the delta above, with the int8 model "
            f"a full version; top_k {results['latency']['top_k']}, at most {results['latency']['max_requests']} "
            f"requests or {results['latency']['max_seconds']:.0f} s a run; each row against the floor of its model)",
            "",
            *latency_table(results),
            "",
        ]
    if stages := stages_table(results):
        lines += [
            "Where /query's time goes, as the API reports it per response (``latency_ms``; ``ground`` is the "
            "grounding check of the answer's sentences, on the hot path of every answer):",
            "",
            *stages,
            "",
        ]
    if cpu:
        lines += [
            "CPU per request, in milliseconds, by process: the bench process is the floor itself in the "
            "floor's rows and the HTTP load generator in the others.",
            "",
            *cpu,
            "",
        ]
    if cost:
        lines += [
            "**Hybrid's cost** (/query retrieve on the SciFact live version at concurrency 1, the default "
            "retrieval config against the same with `retrieval.hybrid: false`, and against dense-only without the "
            "per-document cap, the dense path before issue 16)",
            "",
            *cost,
            "",
        ]
    return lines


def _quality_section(results: dict[str, Any]) -> list[str]:
    return [
        "**Retrieval quality** through /query, every collection as created (the default config: "
        f"{default_retrieval(results)}) and dense-only (`retrieval.hybrid: false`, the rest as the default), "
        "side by side. nDCG@10 ranks documents by their best chunk among the top 100 chunks; doc hit@5, MRR@5, "
        "evidence recall@5 and multi-doc recall@5 read the 5 chunks an answer is built from. The held-out half "
        "is the half of a set's questions the retrieval lab did not tune on (SciFact's test split is held out "
        f"whole). Published dense nDCG@10 for this model on SciFact: {PUBLISHED_SCIFACT_NDCG}.",
        "",
        *quality_table(results),
        "",
        *(
            f"- {dataset}: not measured ({report['error']})"
            for dataset, report in results["quality"].items()
            if "error" in report
        ),
    ]


SECTIONS = (  # results key, its Markdown (a run stopped early, or one run with --only, has some of them)
    ("floor", _floor_section),
    ("ingestion", _ingestion_section),
    ("incremental", _incremental_section),
    ("latency", _latency_section),
    ("quality", _quality_section),
    ("ocr", ocr_markdown),
)


def markdown(results: dict[str, Any]) -> str:
    load = results.get("load_average")
    lines = [
        (
            f"Measured {results['date']} on {results['machine']}; whole run {results['bench_seconds']:.0f} s."
            if "bench_seconds" in results
            else f"Measured {results['date']} on {results['machine']}; **a partial run** (what it measured before "
            "it was stopped: " + ", ".join(results.get("quality", {})) + ")."
        ),
        "",
        *(
            [
                f"Load average (1 min) at the start {load['start']:.1f}, at the end {load.get('end', 0):.1f}, on "
                f"{load['cores']} cores. {results.get('note', '')}".rstrip(),
                "",
            ]
            if load
            else []
        ),
    ]
    for key, section in SECTIONS:
        if results.get(key):
            lines += section(results)
    return "\n".join(lines)


def main() -> None:
    """``python -m bench.report RESULTS.json``: the tables of a results file (a partial one too)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("results", type=Path)
    parser.add_argument("--readme", action="store_true", help="also put them into README.md")
    args = parser.parse_args()
    table = markdown(json.loads(args.results.read_text(encoding="utf-8")))
    print(table)
    if args.readme:
        root = Path(__file__).resolve().parent.parent
        update_readme(root / "README.md", table, str(args.results.resolve().relative_to(root)))


def update_readme(readme: Path, table: str, raw: str) -> None:
    """Replace the README's block between the bench markers with the latest tables."""
    text = readme.read_text(encoding="utf-8")
    block = f"{BEGIN}\n{table}\nRaw numbers: `{raw}`.\n{END}"
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no {BEGIN} ... {END} block to update")
    readme.write_text(pattern.sub(lambda _: block, text), encoding="utf-8")


if __name__ == "__main__":
    main()
