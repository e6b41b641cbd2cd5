"""The benchmark's Markdown tables, and their copy in README.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
# MTEB's SciFact nDCG@10 for all-MiniLM-L6-v2 (whole abstracts, no chunking).
PUBLISHED_SCIFACT_NDCG = 0.645


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


FLOOR_KEYS = ("torch", "onnx", "onnx_int8")
SYSTEMS = (  # key in results["ingestion"][corpus], label
    ("ragkeep", "ragkeep (HTTP upload → live version)"),
    ("ragkeep_int8", "ragkeep, int8 model"),
    ("baseline", "LlamaIndex IngestionPipeline → Chroma"),
)


def ingestion_table(results: dict[str, Any]) -> list[str]:
    floors = [results["floor"][key] for key in FLOOR_KEYS if key in results["floor"]]
    lines = [
        "| corpus | system | documents | chunks | wall s | chunks/s | "
        + " | ".join(f"x {floor['name']}" for floor in floors)
        + " | worker peak MiB |",
        "|---|---|---|---|---|---|" + "---|" * len(floors) + "---|",
    ]
    for entry in results["ingestion"].values():
        for key, label in SYSTEMS:
            if key not in entry:
                continue
            run = entry[key]
            ratios = " | ".join(_ratio(run["chunks_per_s"], floor["chunks_per_s"]) for floor in floors)
            peak = f"{run['peak_worker_mb']:.0f}" if "peak_worker_mb" in run else "-"
            lines.append(
                f"| {entry['corpus']} | {label} | {run['documents']} | {run['chunks']} | {run['seconds']:.1f} | "
                f"{run['chunks_per_s']:.1f} | {ratios} | {peak} |"
            )
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


def quality_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| dataset | queries | retrieval | nDCG@10 | recall@10 | recall@100 | p50 ms (top 100) |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset, report in results["quality"].items():
        for mode in ("dense", "hybrid"):
            if mode not in report:
                continue
            r = report[mode]
            lines.append(
                f"| {dataset} | {report['queries']} | {mode} | {r['ndcg@10']:.3f} | {r['recall@10']:.3f} | "
                f"{r['recall@100']:.3f} | {r['p50_ms_top100']} |"
            )
    return lines


def markdown(results: dict[str, Any]) -> str:
    floor = results["floor"]
    inc = results["incremental"]
    scifact = results["ingestion"]["scifact"]["ragkeep"]
    cpu = cpu_table(results)
    lines = [
        f"Measured {results['date']} on {results['machine']}; whole run {results.get('bench_seconds', 0):.0f} s.",
        "",
        f"**Embedding floors** ({results['model']} alone, {floor['threads']} threads, a sample of "
        f"{floor['sample_chunks']} SciFact chunks; chunks/s by batch size):",
        "",
        *(
            f"- {floor[b]['name']}: **{floor[b]['chunks_per_s']}** at batch size {floor[b]['best_batch_size']} ("
            + ", ".join(f"{size}: {rate}" for size, rate in floor[b]["by_batch_size"].items())
            + ")"
            for b in FLOOR_KEYS
            if b in floor
        ),
        "",
        "**Full ingestion**",
        "",
        *ingestion_table(results),
        "",
        "The baseline's chunks come from LlamaIndex's SentenceSplitter (250 tokens), ragkeep's from "
        "Unstructured (by_title, 1,000 characters), so compare chunks/s. On SciFact the baseline runs on the "
        "first abstracts only, to keep the run under 20 minutes; its rate does not depend on corpus size.",
        "",
        f"ragkeep's time splits into upload {scifact['upload_seconds']:.1f} s, embedding "
        f"{scifact['worker_embed_seconds']:.1f} s (summed over worker processes) and the version build "
        f"{scifact['build_seconds']:.1f} s; parsing is the rest.",
        "",
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
        f"**Query latency** (SciFact live versions: with the float model the delta above, with the int8 model "
        f"a full version; top_k {results['latency']['top_k']}, at most {results['latency']['max_requests']} "
        f"requests or {results['latency']['max_seconds']:.0f} s a run; each row against the floor of its model)",
        "",
        *latency_table(results),
        "",
        *(
            [
                "CPU per request, in milliseconds, by process: the bench process is the floor itself in the "
                "floor's rows and the HTTP load generator in the others.",
                "",
                *cpu,
                "",
            ]
            if cpu
            else []
        ),
        f"**Retrieval quality** (published dense nDCG@10 for this model on SciFact: {PUBLISHED_SCIFACT_NDCG})",
        "",
        *quality_table(results),
        "",
    ]
    return "\n".join(lines)


def update_readme(readme: Path, table: str, raw: str) -> None:
    """Replace the README's block between the bench markers with the latest tables."""
    text = readme.read_text(encoding="utf-8")
    block = f"{BEGIN}\n{table}\nRaw numbers: `{raw}`.\n{END}"
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no {BEGIN} ... {END} block to update")
    readme.write_text(pattern.sub(lambda _: block, text), encoding="utf-8")
