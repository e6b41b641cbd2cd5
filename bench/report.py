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


def ingestion_table(results: dict[str, Any]) -> list[str]:
    torch_floor = results["floor"]["torch"]["chunks_per_s"]
    onnx_floor = results["floor"]["onnx"]["chunks_per_s"]
    lines = [
        "| corpus | system | documents | chunks | wall s | chunks/s | x ST floor | x ONNX floor | worker peak MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in results["ingestion"].values():
        ours, base = entry["ragkeep"], entry["baseline"]
        lines.append(
            f"| {entry['corpus']} | ragkeep (HTTP upload → live version) | {ours['documents']} | {ours['chunks']} | "
            f"{ours['seconds']:.1f} | {ours['chunks_per_s']:.1f} | {_ratio(ours['chunks_per_s'], torch_floor)} | "
            f"{_ratio(ours['chunks_per_s'], onnx_floor)} | "
            f"{ours['peak_worker_mb']:.0f} |"
        )
        lines.append(
            f"| {entry['corpus']} | LlamaIndex IngestionPipeline → Chroma | {base['documents']} | {base['chunks']} | "
            f"{base['seconds']:.1f} | {base['chunks_per_s']:.1f} | {_ratio(base['chunks_per_s'], torch_floor)} | "
            f"{_ratio(base['chunks_per_s'], onnx_floor)} | - |"
        )
    return lines


def latency_table(results: dict[str, Any]) -> list[str]:
    runs = results["latency"]["runs"]
    floor_p50 = {r["concurrency"]: r.get("p50_ms") for r in runs if r["target"].startswith("floor")}
    lines = [
        "| target | mode | concurrency | p50 ms | p95 ms | p99 ms | req/s | errors | p50 x floor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        if not r.get("requests"):
            lines.append(f"| {r['target']} | {r['mode']} | {r['concurrency']} | - | - | - | - | {r['errors']} | - |")
            continue
        floor = floor_p50.get(r["concurrency"])
        lines.append(
            f"| {r['target']} | {r['mode']} | {r['concurrency']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | "
            f"{r['rps']} | {r['errors']} | {_ratio(r['p50_ms'], floor) if floor else '-'} |"
        )
    return lines


def quality_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| dataset | queries | retrieval | nDCG@10 | recall@10 | recall@100 | p50 ms (top 100) |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset, report in results["quality"].items():
        for mode in ("dense", "hybrid"):
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
            for b in ("torch", "onnx")
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
        f"**Query latency** (SciFact live version, for ragkeep the delta above; top_k {results['latency']['top_k']}, "
        f"at most {results['latency']['max_requests']} requests or {results['latency']['max_seconds']:.0f} s a run)",
        "",
        *latency_table(results),
        "",
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
