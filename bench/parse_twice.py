"""Fill ``bench.retrieval_lab``'s chunk cache for two ingestion configs that differ only after pdfminer.

``ingestion.pdf_tables`` (issue 16) changes what is made of pdfminer's elements, not the
elements: each document is partitioned by Unstructured once, and both configs' chunks are made
from that (``partition_document`` with the partition memoised). Documents are spread over
``--workers`` processes. The lab then reads both from its cache instead of parsing twice:

    .venv/bin/python -m bench.parse_twice --dataset financebench --workers 3 --cache /tmp/rk-lab \\
        --configs '{"pdf_tables": "pdfminer"}' '{}'
    .venv/bin/python -m bench.retrieval_lab --datasets financebench --cache /tmp/rk-lab \\
        --ingestion '{"pdf_tables": "pdfminer"}' --configs ...
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import retrieval_lab  # noqa: E402
from core.config import IngestionConfig  # noqa: E402


def _parse(job: tuple[str, int, int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Documents ``index % workers == part`` of the dataset, under each config: [{name, config, chunks|error}]."""
    import functools

    from core.filetypes import detect_file_kind
    from core.settings import LimitSettings
    from ingest import partition

    name, part, workers, configs = job
    real = partition._elements

    @functools.lru_cache(maxsize=1)
    def once(data: bytes, filename: str, kind: Any, strategy: str) -> Any:
        return real(data, filename, kind, IngestionConfig(strategy=strategy))

    partition._elements = lambda data, filename, kind, config: copy.deepcopy(
        once(data, filename, kind, config.strategy)
    )
    max_pages = LimitSettings().max_pdf_pages
    out = []
    for index, (filename, data) in enumerate(retrieval_lab.DATASETS[name].files()):
        if index % workers != part:
            continue
        for raw in configs:
            config = IngestionConfig(**raw)
            try:
                kind = detect_file_kind(data, filename)
                chunks = partition.partition_document(data, filename, kind, config, max_pages)
                item: dict[str, Any] = {"chunks": [[c.text, c.metadata] for c in chunks]}
            except Exception as exc:  # recorded, as the lab records a document the service would fail
                item = {"error": f"{type(exc).__name__}: {exc}"}
            out.append({"index": index, "name": filename, "config": raw, **item})
        print(f"[parse_twice] {name} {index}: {filename}", file=sys.stderr, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=retrieval_lab.DEFAULT_CACHE)
    parser.add_argument("--configs", nargs="+", default=['{"pdf_tables": "pdfminer"}', "{}"])
    args = parser.parse_args()
    configs = [json.loads(c) for c in args.configs]
    dataset = retrieval_lab.DATASETS[args.dataset]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        jobs = [(args.dataset, part, args.workers, configs) for part in range(args.workers)]
        results = sorted((r for done in pool.map(_parse, jobs) for r in done), key=lambda r: r["index"])
    seconds = round(time.perf_counter() - started, 1)
    titles = {filename: retrieval_lab._metadata_title(data, filename) for filename, data in dataset.files()}
    for raw in configs:
        config = IngestionConfig(**raw)
        mine = [r for r in results if r["config"] == raw]
        parsed: dict[str, Any] = {
            "documents": [
                {"name": r["name"], "metadata_title": titles[r["name"]], "chunks": r["chunks"]}
                for r in mine
                if "chunks" in r
            ],
            "failures": {r["name"]: r["error"] for r in mine if "error" in r},
            "parse_seconds": seconds,
            "parsed_by": "bench.parse_twice (one Unstructured partition per document for every config)",
        }
        path = args.cache / "chunks" / f"{args.dataset}-{config.parse_hash()}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(parsed, ensure_ascii=False))
        count = sum(len(d["chunks"]) for d in parsed["documents"])
        print(f"{path}: {len(parsed['documents'])} documents, {count} chunks")


if __name__ == "__main__":
    main()
