"""What the candidate pool costs retrieval, in process: the default config against dense-only (issue 16).

``prepare`` builds one version of SciFact abstracts the way ragkeep does (``prepare_revision``
and ``build_version`` into a real Chroma server, SQLite catalog, the default ingestion
config) and embeds the test questions. ``measure`` opens that version as the query engine
does (``VersionIndex``, kept warm) and times ``query.retrieval.retrieve`` alone, question by
question (the question vectors are computed before: this is retrieval without the query
embedding, HTTP or the catalog), for the three configs ``bench.run.hybrid_cost`` compares at
top_k 10 and 100: dense-only without the per-document cap (the dense path before issue 16),
the default (hybrid, minmax fusion, cap 2) and dense-only with the cap. It reports p50 wall
time, this process's CPU per call and the Chroma server's CPU per call (the machine may be
loaded: CPU is the steadier number), and the ratios to dense-only without the cap.

Run ``measure`` from two source trees (one before a change, one after) against the same
prepared version, alternating, to compare them:

    .venv/bin/python -m bench.retrieve_cost prepare --state /tmp/rk-cost --docs 1000
    .venv/bin/python -m bench.retrieve_cost measure --state /tmp/rk-cost --label after
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.datasets import DATASETS  # noqa: E402
from bench.stack import free_port, wait_ready  # noqa: E402

SCIFACT = DATASETS / "beir-scifact"
TOP_KS = (10, 100)
CONFIGS: dict[str, dict[str, Any]] = {
    "dense-only, no cap": {"hybrid": False, "max_chunks_per_document": None},
    "default": {},
    "dense-only": {"hybrid": False},
}


def _chroma_cpu(pid: int) -> float:
    import psutil

    process = psutil.Process(pid)
    total = 0.0
    for proc in [process, *process.children(recursive=True)]:
        times = proc.cpu_times()
        total += times.user + times.system
    return total


def _start_chroma(state: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``chroma run`` on a free port, in its own session: it outlives ``prepare`` (stop it by its pid)."""
    port = free_port()
    log = (state / "chroma.log").open("wb")
    command = [str(Path(sys.executable).parent / "chroma"), "run", "--path", str(state / "chroma"), "--port", str(port)]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/api/v2/heartbeat", process, "Chroma", timeout=60)
    return process, url


def prepare(state: Path, docs: int, questions: int) -> None:
    from core import catalog, chroma
    from core.blobs import LocalBlobStore
    from core.config import CollectionConfig
    from core.db import Database, create_schema
    from core.embedding import Embedder
    from core.filetypes import detect_file_kind
    from core.models import DocumentStatus, JobKind
    from ingest.pipeline import build_version, prepare_revision

    state.mkdir(parents=True, exist_ok=True)
    process, url = _start_chroma(state)
    db = Database(f"sqlite:///{state / 'catalog.sqlite'}")
    create_schema(db.engine)
    blobs = LocalBlobStore(state / "blobs")
    embedder = Embedder(batch_size=32)
    client = chroma.connect(url)
    with db.sessions() as session:
        collection = catalog.create_collection(session, "scifact", "", [], CollectionConfig())
        config = catalog.collection_config(collection)
        with (SCIFACT / "corpus.jsonl").open() as corpus:
            for number, line in enumerate(corpus):
                if number >= docs:
                    break
                doc = json.loads(line)
                data, name = f"{doc['title']}\n\n{doc['text']}".encode(), f"{doc['_id']}.txt"
                kind = detect_file_kind(data, name)
                job = catalog.create_job(session, JobKind.ingest, collection.id)
                incoming = catalog.IncomingFile(
                    name, blobs.put(collection.id, data), len(data), kind.kind, kind.content_type, {}
                )
                revision = catalog.record_upload(session, collection, [incoming], job)[0].revision
                chunks, embedded, _ = prepare_revision(session, blobs, embedder, collection, revision, config.ingestion)
                revision.status, revision.chunk_count, revision.embedded_count = DocumentStatus.ready, chunks, embedded
                session.commit()
        job = catalog.create_job(session, JobKind.build, collection.id)
        version = catalog.create_version(session, collection, job.id, chroma.version_collection_name)
        build_version(session, client, blobs, embedder, collection, version)
        session.commit()
        asked = [json.loads(line)["text"] for line in (SCIFACT / "queries.jsonl").open()][:questions]
        vectors = np.stack([embedder.embed_query(q)[0] for q in asked])
        np.save(state / "questions.npy", vectors)
        (state / "questions.json").write_text(json.dumps(asked))
        (state / "version.json").write_text(
            json.dumps(
                {
                    "chroma_url": url,
                    "chroma_pid": process.pid,
                    "chroma_collection": version.chroma_collection,
                    "collection_id": collection.id,
                    "bm25_sha256": version.bm25_sha256,
                    "chunks": version.chunk_count,
                    "documents": version.document_count,
                }
            )
        )
    print(f"prepared {version.chunk_count} chunks of {docs} abstracts; Chroma {url} (pid {process.pid}) keeps running")


def measure(state: Path, label: str, repeats: int) -> dict[str, Any]:
    from core import chroma
    from core.blobs import LocalBlobStore
    from core.bm25 import BM25Index
    from core.config import RetrievalConfig
    from core.embedding import Embedder
    from query import retrieval

    info = json.loads((state / "version.json").read_text())
    questions = json.loads((state / "questions.json").read_text())
    vectors = np.load(state / "questions.npy")
    blobs = LocalBlobStore(state / "blobs")
    index = retrieval.VersionIndex(
        chroma.connect(info["chroma_url"]),
        info["chroma_collection"],
        retrieval.LlamaEmbedding(Embedder()),
        lambda: BM25Index.loads(blobs.get(info["collection_id"], info["bm25_sha256"])),
    )
    defaults = RetrievalConfig().model_dump()
    results: dict[str, Any] = {"label": label, "source": str(ROOT), "loadavg_start": os.getloadavg(), "runs": {}}
    for _ in range(2):  # warm-up: BM25 loaded, Chroma's caches and the HTTP connection ready
        for question, vector in zip(questions[:8], vectors[:8], strict=True):
            retrieval.retrieve(index, question, vector, 10, True, {}, None, retrieval.Fusion(), 2)
    for top_k in TOP_KS:
        for name, change in CONFIGS.items():
            config = RetrievalConfig(**{**defaults, **change})
            walls, cpu_before, server_before = [], time.process_time(), _chroma_cpu(info["chroma_pid"])
            for _ in range(repeats):
                for question, vector in zip(questions, vectors, strict=True):
                    started = time.perf_counter()
                    retrieval.retrieve(
                        index,
                        question,
                        vector,
                        top_k,
                        config.hybrid,
                        {},
                        config.min_score,
                        retrieval.Fusion.for_question(config, question),
                        config.max_chunks_per_document,
                    )
                    walls.append((time.perf_counter() - started) * 1000)
            calls = len(walls)
            results["runs"][f"top_k {top_k}, {name}"] = {
                "calls": calls,
                "p50_ms": round(statistics.median(walls), 2),
                "cpu_ms_per_call": round((time.process_time() - cpu_before) * 1000 / calls, 2),
                "chroma_cpu_ms_per_call": round((_chroma_cpu(info["chroma_pid"]) - server_before) * 1000 / calls, 2),
            }
    for top_k in TOP_KS:
        base = results["runs"][f"top_k {top_k}, dense-only, no cap"]
        for name in CONFIGS:
            run = results["runs"][f"top_k {top_k}, {name}"]
            run["p50_ratio"] = round(run["p50_ms"] / base["p50_ms"], 2)
            both, both_base = (
                run["cpu_ms_per_call"] + run["chroma_cpu_ms_per_call"],
                base["cpu_ms_per_call"] + base["chroma_cpu_ms_per_call"],
            )
            run["cpu_ratio"] = round(both / both_base, 2)
    results["loadavg_end"] = os.getloadavg()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("prepare", "measure"))
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--label", default="")
    parser.add_argument("--out", type=Path, help="append the results here (JSON lines)")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.state, args.docs, args.questions)
        return
    results = measure(args.state, args.label, args.repeats)
    print(json.dumps(results, indent=1))
    if args.out:
        with args.out.open("a") as out:
            out.write(json.dumps(results) + "\n")


if __name__ == "__main__":
    main()
