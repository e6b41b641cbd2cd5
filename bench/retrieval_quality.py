"""Retrieval quality of ragkeep's own pipeline: dense vs hybrid, on SciFact (nDCG@10) and JSQuAD.

Runs the product path, not a re-implementation: Unstructured parsing and chunking,
the build step (embedding, Chroma collection, BM25 index) and the query-time retrieval
(LlamaIndex over Chroma, BM25, reciprocal-rank fusion). Needs no running service: it
starts its own Chroma server and a SQLite catalog in a temporary folder.

    .venv/bin/python bench/retrieval_quality.py            # both datasets
    .venv/bin/python bench/retrieval_quality.py --dataset jsquad --limit 500

Writes bench/results/retrieval-<date>.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import catalog, chroma  # noqa: E402
from core.blobs import BlobStore  # noqa: E402
from core.config import CollectionConfig  # noqa: E402
from core.db import Database, create_schema  # noqa: E402
from core.embedding import Embedder  # noqa: E402
from core.filetypes import TEXT  # noqa: E402
from core.models import DocumentStatus, JobKind  # noqa: E402
from ingest.partition import partition_document  # noqa: E402
from ingest.pipeline import build_version, store_chunks  # noqa: E402
from query.engine import QueryEngine, QueryRequest  # noqa: E402

DATASETS = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"


@contextmanager
def chroma_server(folder: Path) -> Iterator[str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    binary = Path(sys.executable).parent / "chroma"
    process = subprocess.Popen(
        [str(binary), "run", "--path", str(folder), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    try:
        yield url
    finally:
        process.terminate()
        process.wait()


def ingest_texts(workdir: Path, chroma_url: str, name: str, documents: dict[str, str]) -> QueryEngine:
    """Ingest ``{filename: text}`` as one version through the product's parse and build steps."""
    from core.settings import Settings

    settings = Settings(data_dir=workdir, chroma_url=chroma_url, query={"max_top_k": 100})
    db = Database(settings.resolved_database_url)
    create_schema(db.engine)
    blobs = BlobStore(settings.blob_dir)
    client = chroma.connect(chroma_url)
    embedder = Embedder(batch_size=32)
    with db.session() as session:
        collection = catalog.create_collection(session, name, "", [], CollectionConfig())
        job = catalog.create_job(session, JobKind.ingest, collection.id)
        incoming = []
        for filename, text in documents.items():
            data = text.encode("utf-8")
            incoming.append(
                catalog.IncomingFile(
                    filename, blobs.put(collection.id, data), len(data), TEXT.kind, TEXT.content_type, {}
                )
            )
        outcomes = catalog.record_upload(session, collection, incoming, job)
        config = catalog.collection_config(collection).ingestion
        started = time.monotonic()
        for outcome in outcomes:
            chunks = partition_document(
                blobs.get(collection.id, outcome.revision.sha256), outcome.document.filename, TEXT, config
            )
            store_chunks(session, collection.id, outcome.revision.sha256, config.parse_hash(), chunks)
            outcome.revision.status, outcome.revision.chunk_count = DocumentStatus.ready, len(chunks)
        session.commit()
        parsed = time.monotonic()
        build_job = catalog.create_job(session, JobKind.build, collection.id)
        version = catalog.create_version(session, collection, build_job.id, chroma.version_collection_name)
        build_version(session, client, blobs, embedder, collection, version)
        catalog.publish(session, collection, version)
        session.commit()
        print(
            f"{name}: {len(documents)} documents, {version.chunk_count} chunks; parse {parsed - started:.0f} s, "
            f"build {time.monotonic() - parsed:.0f} s",
            file=sys.stderr,
        )
    return QueryEngine(settings, db, blobs, client, embedder)


def ndcg_at_10(ranked: list[str], relevant: set[str]) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, doc in enumerate(ranked[:10]) if doc in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(10, len(relevant))))
    return dcg / ideal if ideal else 0.0


def set_hybrid(engine: QueryEngine, collection: str, hybrid: bool) -> None:
    """What `PATCH /collections/{name}` with config.retrieval.hybrid does."""
    with engine.db.session() as session:
        row = catalog.get_collection(session, collection)
        config = catalog.collection_config(row)
        config.retrieval.hybrid = hybrid
        row.config = config.model_dump()


def ranked_documents(engine: QueryEngine, collection: str, question: str, depth: int) -> list[str]:
    result = engine.query(QueryRequest(collection=collection, question=question, top_k=depth, mode="retrieve"))
    seen: list[str] = []
    for citation in result.citations:  # chunks -> documents, best chunk first
        if citation.filename and citation.filename not in seen:
            seen.append(citation.filename)
    return seen


def scifact(workdir: Path, chroma_url: str, limit: int | None) -> dict[str, Any]:
    folder = DATASETS / "beir-scifact"
    corpus = {}
    for line in (folder / "corpus.jsonl").read_text().splitlines():
        doc = json.loads(line)
        corpus[f"{doc['_id']}.txt"] = f"{doc['title']}\n\n{doc['text']}"
    queries = {
        json.loads(line)["_id"]: json.loads(line)["text"]
        for line in (folder / "queries.jsonl").read_text().splitlines()
    }
    qrels: dict[str, set[str]] = defaultdict(set)
    for line in (folder / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        query_id, doc_id, score = line.split("\t")
        if int(score) > 0:
            qrels[query_id].add(f"{doc_id}.txt")
    engine = ingest_texts(workdir, chroma_url, "scifact", corpus)
    return evaluate(engine, "scifact", [(queries[q], rel) for q, rel in sorted(qrels.items())][:limit])


def jsquad(workdir: Path, chroma_url: str, limit: int | None) -> dict[str, Any]:
    folder = DATASETS / "jsquad-v1.3-valid"
    corpus = {p.name: p.read_text(encoding="utf-8") for p in sorted((folder / "source_files").glob("*.txt"))}
    items = [json.loads(line) for line in (folder / "qa.jsonl").read_text(encoding="utf-8").splitlines()]
    engine = ingest_texts(workdir, chroma_url, "jsquad", corpus)
    # Every 4th question: ~1,100 questions spread over all 59 articles keep the run short.
    return evaluate(engine, "jsquad", [(q["question"], {q["doc_id"]}) for q in items[::4]][:limit])


def evaluate(engine: QueryEngine, collection: str, items: list[tuple[str, set[str]]]) -> dict[str, Any]:
    report: dict[str, Any] = {"queries": len(items)}
    for mode, hybrid in (("dense", False), ("hybrid", True)):
        set_hybrid(engine, collection, hybrid)
        ndcg, recall10, recall100, latencies = [], [], [], []
        for question, relevant in items:
            started = time.perf_counter()
            ranked = ranked_documents(engine, collection, question, depth=100)
            latencies.append((time.perf_counter() - started) * 1000)
            ndcg.append(ndcg_at_10(ranked, relevant))
            recall10.append(len(set(ranked[:10]) & relevant) / len(relevant))
            recall100.append(len(set(ranked[:100]) & relevant) / len(relevant))
        latencies.sort()
        report[mode] = {
            "ndcg@10": round(sum(ndcg) / len(ndcg), 4),
            "recall@10": round(sum(recall10) / len(recall10), 4),
            "recall@100 (of 100 chunks)": round(sum(recall100) / len(recall100), 4),
            "p50_ms_top100": round(latencies[len(latencies) // 2], 1),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["scifact", "jsquad", "all"], default="all")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N queries")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, Python {platform.python_version()}",
        "model": "all-MiniLM-L6-v2",
        "chunker": "by_title, max 1000 characters",
    }
    with tempfile.TemporaryDirectory() as tmp, chroma_server(Path(tmp) / "chroma") as url:
        for name, run in (("scifact", scifact), ("jsquad", jsquad)):
            if args.dataset in (name, "all"):
                results[name] = run(Path(tmp) / name, url, args.limit)
    out = ROOT / "bench" / "results" / f"retrieval-{datetime.now(UTC).date()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print("| dataset | queries | mode | nDCG@10 | recall@10 | p50 ms (top 100) |\n|---|---|---|---|---|---|")
    for name in ("scifact", "jsquad"):
        if name in results:
            for mode in ("dense", "hybrid"):
                r = results[name][mode]
                print(
                    f"| {name} | {results[name]['queries']} | {mode} | {r['ndcg@10']:.3f} | {r['recall@10']:.3f} | "
                    f"{r['p50_ms_top100']} |"
                )
    print(f"\nwritten to {out.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
