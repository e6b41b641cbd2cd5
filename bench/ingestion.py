"""Ingestion: ragkeep over HTTP, the bare embedding model (the floor), and a LlamaIndex baseline.

All three embed with all-MiniLM-L6-v2 from the same installed package, on the same
machine, one after the other (never concurrently).
"""

from __future__ import annotations

import io
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.stack import Stack, collection_version
from cli.http_client import Server
from core.config import DEFAULT_EMBEDDING_MODEL, INT8_EMBEDDING_MODEL
from core.embedding import model_path

UPLOAD_BATCH = 100  # the API's default max_files_per_request


@dataclass
class IngestResult:
    documents: int
    failed: int
    chunks: int
    seconds: float  # first upload byte -> version live
    upload_seconds: float
    build_seconds: float  # the version build alone (as the worker recorded it)
    chunks_per_s: float
    peak_worker_mb: float
    worker_embed_seconds: float  # summed over worker processes, from the worker's metrics
    version: int
    # CPU seconds from the first upload to the live version, by process (Stack.cpu_by_process) and,
    # in the worker's task processes and their parse helpers, by phase (ragkeep_worker_cpu_seconds_total).
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    worker_cpu_seconds: dict[str, float] = field(default_factory=dict)
    broker: str = ""
    model: str = DEFAULT_EMBEDDING_MODEL
    # What measuring took from the same cores: this process (uploads, polling, the memory sampler)
    # and, of it, the memory sampler's samples (see bench.stack.MemorySampler).
    harness_cpu_seconds: float = 0.0
    memory_samples: int = 0
    memory_sampler_cpu_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        def rounded(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: rounded(v) for k, v in value.items()}
            return round(value, 3) if isinstance(value, float) else value

        return {k: rounded(v) for k, v in asdict(self).items()}


def _wait_jobs(server: Server, job_ids: Sequence[str]) -> list[dict[str, Any]]:
    return [server.wait_job(job_id) for job_id in job_ids]


def _wait_live(server: Server, collection: str, build_job_ids: Sequence[str]) -> dict[str, Any]:
    for job in _wait_jobs(server, list(dict.fromkeys(build_job_ids))):
        if job["status"] == "failed":
            raise RuntimeError(f"build failed: {job['error']}")
    version = collection_version(server, collection)
    if version is None:
        raise RuntimeError(f"no live version of {collection} after its builds")
    return version


def upload_all(server: Server, collection: str, files: Sequence[tuple[str, bytes]]) -> list[str]:
    """Upload in batches of ``UPLOAD_BATCH`` files; returns the ingest job ids."""
    jobs = []
    for start in range(0, len(files), UPLOAD_BATCH):
        batch = files[start : start + UPLOAD_BATCH]
        accepted = server.call(
            "POST",
            f"/collections/{collection}/documents",
            files=[("files", (name, io.BytesIO(data))) for name, data in batch],
        )
        jobs.append(accepted["job_id"])
    return jobs


def ingest_ragkeep(
    stack: Stack, collection: str, files: Sequence[tuple[str, bytes]], model: str = DEFAULT_EMBEDDING_MODEL
) -> IngestResult:
    """Create a collection embedding with ``model``, upload ``files`` over HTTP, wait until a version is live."""
    with stack.server() as server:
        config = {"ingestion": {"embedding_model": model}}
        server.call("POST", "/collections", json={"name": collection, "config": config})
        embed_before = stack.worker_metric("ragkeep_embedding_seconds_total")
        phases_before = stack.worker_metric_by_label(WORKER_CPU_METRIC)
        cpu_before = stack.cpu_by_process()
        harness_before = time.process_time()
        with stack.memory() as memory:
            started = time.monotonic()
            job_ids = upload_all(server, collection, files)
            uploaded = time.monotonic()
            jobs = _wait_jobs(server, job_ids)
            builds = [job["result"]["build_job_id"] for job in jobs if job["result"].get("build_job_id")]
            version = _wait_live(server, collection, builds)
            seconds = time.monotonic() - started
        harness = time.process_time() - harness_before
        cpu = _minus(stack.cpu_by_process(), cpu_before)
        phases = _minus(stack.worker_metric_by_label(WORKER_CPU_METRIC), phases_before)
        failed = sum(len(job["result"].get("failed_documents", [])) for job in jobs)
        return IngestResult(
            documents=version["document_count"],
            failed=failed,
            chunks=version["chunk_count"],
            seconds=seconds,
            upload_seconds=uploaded - started,
            build_seconds=float(version["build_seconds"] or 0.0),
            chunks_per_s=version["chunk_count"] / seconds,
            peak_worker_mb=memory.peak_mb,
            worker_embed_seconds=stack.worker_metric("ragkeep_embedding_seconds_total") - embed_before,
            version=version["number"],
            cpu_seconds=cpu,
            worker_cpu_seconds=phases,
            broker="redis" if "RAGKEEP_REDIS_URL" in stack.settings else "embedded",
            model=model,
            harness_cpu_seconds=harness,
            memory_samples=memory.samples,
            memory_sampler_cpu_seconds=memory.cpu_seconds,
        )


WORKER_CPU_METRIC = "ragkeep_worker_cpu_seconds_total"


def _minus(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {key: max(0.0, value - before.get(key, 0.0)) for key, value in after.items()}


def change_one(stack: Stack, collection: str, name: str, data: bytes) -> dict[str, Any]:
    """Upload a changed copy of one document and time it until the next version is live."""
    with stack.server() as server:
        started = time.monotonic()
        job_ids = upload_all(server, collection, [(name, data)])
        jobs = _wait_jobs(server, job_ids)
        version = _wait_live(server, collection, [j["result"]["build_job_id"] for j in jobs])
        seconds = time.monotonic() - started
    return {
        "seconds": round(seconds, 3),
        "build_seconds": version["build_seconds"],
        "embedded_chunks": version["embedded_chunk_count"],
        "reused_chunks": version["reused_chunk_count"],
        "version": version["number"],
        "base_version": version.get("base_version"),
    }


# ----------------------------------------------------------------------------- the floor


def chunk_texts(stack: Stack, collection: str, version: int) -> tuple[list[str], list[str]]:
    """The chunks of a built version, read back from its Chroma collection once: as cited, and as embedded.

    As embedded: as the workers embedded them, each with its document's context header (the
    version's ``ingestion.context``: title and section, on by default since issue 16), which
    adds about a fifth to a SciFact chunk's tokens. The two lists are in the same order.
    """
    import chromadb

    from ingest.context import indexed_text

    with stack.server() as server:
        read = server.call("GET", f"/collections/{collection}/versions/{version}")
    host, port = stack.chroma_url.removeprefix("http://").split(":")
    client = chromadb.HttpClient(host=host, port=int(port))
    found = client.get_collection(read["chroma_collection"]).get(include=["documents", "metadatas"])
    documents, metadatas = found["documents"] or [], found["metadatas"] or []
    pairs = [(text, dict(meta or {})) for text, meta in zip(documents, metadatas, strict=True) if text]
    config = read["ingestion_config"]
    mode, keys = config.get("context", "off"), config.get("context_metadata") or ()
    embedded = [indexed_text(text, meta, str(meta["filename"]), mode, keys) for text, meta in pairs]
    return [text for text, _ in pairs], embedded


FLOORS = (  # key, what it is, model, backend
    ("torch", "sentence-transformers (torch)", DEFAULT_EMBEDDING_MODEL, "torch"),
    ("onnx", "onnx runtime (ragkeep's default backend)", DEFAULT_EMBEDDING_MODEL, "onnx"),
    ("onnx_int8", "onnx runtime, int8 model", INT8_EMBEDDING_MODEL, "onnx"),
)


def embedding_floor(
    texts: Sequence[str],
    sample: int,
    batch_sizes: Sequence[int],
    keys: Sequence[str] | None = None,
    one_thread_processes: bool = True,
) -> dict[str, Any]:
    """Chunks per second of the bare model at its best batch size, on a random sample of the chunks.

    Three floors: sentence-transformers ``encode`` on torch (what the model's users run), and
    ragkeep's own ONNX Runtime models, float and int8, called directly (the limits of what
    ragkeep runs). All use every core; a sample of a few hundred chunks gives the rate within
    a few percent.
    """
    import os

    from core.embedding import Embedder

    picked = random.Random(7).sample(list(texts), min(sample, len(texts)))
    floors: dict[str, Any] = {"sample_chunks": len(picked), "threads": os.cpu_count()}
    for key, name, model, backend in FLOORS:
        if keys is not None and key not in keys:
            continue
        embedder = Embedder(model, backend=backend, threads=os.cpu_count())  # type: ignore[arg-type]
        embedder.warm_up()
        rates, cpu = {}, {}
        for batch_size in batch_sizes:
            embedder.batch_size = batch_size
            started, cpu_started = time.perf_counter(), time.process_time()
            embedder.embed(picked)
            rates[batch_size] = len(picked) / (time.perf_counter() - started)
            cpu[batch_size] = (time.process_time() - cpu_started) / len(picked)
        best = max(rates, key=lambda b: rates[b])
        floors[key] = {
            "name": name,
            "model": model,
            "chunks_per_s": round(rates[best], 2),
            "best_batch_size": best,
            "by_batch_size": {str(b): round(r, 2) for b, r in rates.items()},
            "cpu_ms_per_chunk": round(1000 * cpu[best], 2),  # this process's CPU (all its threads)
        }
        if backend == "onnx" and one_thread_processes:
            floors[key]["one_thread_processes"] = parallel_floor(model, picked, best, os.cpu_count() or 1)
    return floors


def _embed_share(model: str, texts: Sequence[str], batch_size: int, start: Any, results: Any) -> None:
    """One process of ``parallel_floor``: load the model on one thread, wait for the others, embed its share."""
    from core.embedding import Embedder

    embedder = Embedder(model, backend="onnx", threads=1)
    embedder.warm_up()
    embedder.batch_size = batch_size
    start.wait()
    began, cpu_began = time.perf_counter(), time.process_time()
    embedder.embed(list(texts))
    results.put((began, time.perf_counter(), time.process_time() - cpu_began))


def parallel_floor(model: str, texts: Sequence[str], batch_size: int, processes: int) -> dict[str, Any]:
    """The bare model as the workers run it: ``processes`` processes of one ONNX thread, each embedding a share.

    A stricter floor than one process using every core: ONNX Runtime's threads split each
    batch's matrix products and wait for each other, where separate processes never wait.
    The workers' prefork processes run one thread each, so this is what they could reach.
    Wall time is from the first process's start to the last one's end (model loads excluded).
    """
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=_embed_share, args=(model, texts[i::processes], batch_size, start, results))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    timings = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
    wall = max(end for _, end, _ in timings) - min(began for began, _, _ in timings)
    return {
        "processes": processes,
        "threads_each": 1,
        "batch_size": batch_size,
        "chunks_per_s": round(len(texts) / wall, 2),
        "cpu_ms_per_chunk": round(1000 * sum(cpu for _, _, cpu in timings) / len(texts), 2),
    }


# -------------------------------------------------------------------------- the baseline


def baseline_documents(files: Sequence[tuple[str, bytes]]) -> list[Any]:
    """What a LlamaIndex user loads: text files as they are, PDFs page by page with pypdf (as PDFReader)."""
    from llama_index.core import Document
    from pypdf import PdfReader

    documents = []
    for name, data in files:
        if name.lower().endswith(".pdf"):
            for number, page in enumerate(PdfReader(io.BytesIO(data)).pages, start=1):
                documents.append(Document(text=page.extract_text() or "", metadata={"filename": name, "page": number}))
        else:
            documents.append(Document(text=data.decode("utf-8"), metadata={"filename": name}))
    return documents


def ingest_baseline(chroma_url: str, collection: str, files: Sequence[tuple[str, bytes]]) -> dict[str, Any]:
    """The script a user would write: IngestionPipeline(SentenceSplitter, HuggingFaceEmbedding) -> Chroma.

    Chunk size: ragkeep's default is 1,000 characters, so the splitter gets 250 tokens, no overlap
    (ragkeep's own ``sentence`` chunker uses the same conversion).
    """
    import chromadb
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.chroma import ChromaVectorStore

    host, port = chroma_url.removeprefix("http://").split(":")
    started = time.monotonic()
    client = chromadb.HttpClient(host=host, port=int(port))
    chroma_collection = client.get_or_create_collection(collection, metadata={"hnsw:space": "cosine"})
    embed_model = HuggingFaceEmbedding(model_name=model_path("all-MiniLM-L6-v2"), device="cpu")
    pipeline = IngestionPipeline(transformations=[SentenceSplitter(chunk_size=250, chunk_overlap=0), embed_model])
    nodes = pipeline.run(documents=baseline_documents(files))
    # Passing the vector store to the pipeline adds every node in one call, which Chroma refuses
    # above its maximum batch (5,461 here): the user adds them in slices instead.
    store = ChromaVectorStore(chroma_collection=chroma_collection)
    step = client.get_max_batch_size()
    for start in range(0, len(nodes), step):
        store.add(list(nodes[start : start + step]))
    seconds = time.monotonic() - started
    stored = chroma_collection.count()
    if stored != len(nodes):
        raise RuntimeError(f"baseline stored {stored} vectors for {len(nodes)} nodes")
    return {
        "documents": len(files),
        "chunks": len(nodes),
        "seconds": round(seconds, 3),
        "chunks_per_s": round(len(nodes) / seconds, 2),
        "embed_batch_size": embed_model.embed_batch_size,
    }
