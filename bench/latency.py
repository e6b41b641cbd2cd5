"""Query latency under load: ragkeep's /query, a baseline LlamaIndex endpoint, and the in-process floor.

The load generator is an asyncio aiohttp client on 127.0.0.1 with a fixed number of
requests in flight (the concurrency); each run is bounded by a request count and a
time limit, after a short warm-up that is not counted. It shares the machine's cores
with the servers it measures, so it should cost little: aiohttp takes about 0.6 ms of
CPU per request here, httpx 1.5 ms (its share is in the results, per run).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

from bench.stack import ADMIN_KEY, free_port, wait_ready

WARM_UP = 16  # requests before each measured run (first calls load lazily initialised parts)


def _percentile(ordered: Sequence[float], p: float) -> float:
    return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 1)


def summarise(
    latencies_ms: list[float], errors: int, seconds: float, stages: Sequence[dict[str, float]] = ()
) -> dict[str, Any]:
    """Client-side percentiles; with ``stages`` (each response's ``latency_ms``), the server's per stage too."""
    if not latencies_ms:
        return {"requests": 0, "errors": errors}
    ordered = sorted(latencies_ms)
    summary: dict[str, Any] = {
        "requests": len(ordered),
        "errors": errors,
        "p50_ms": _percentile(ordered, 50),
        "p95_ms": _percentile(ordered, 95),
        "p99_ms": _percentile(ordered, 99),
        "mean_ms": round(statistics.fmean(ordered), 1),
        "rps": round(len(ordered) / seconds, 1),
    }
    if stages:
        names = sorted({name for stage in stages for name in stage})
        summary["server_stages_ms"] = {
            name: {
                "p50": _percentile(values := sorted(float(s.get(name, 0.0)) for s in stages), 50),
                "p95": _percentile(values, 95),
                "mean": round(statistics.fmean(values), 2),
            }
            for name in names
        }
    return summary


async def _load(
    url: str,
    bodies: Sequence[dict[str, Any]],
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    headers: dict[str, str],
    on_start: Callable[[], object],
    stages: bool,
) -> dict[str, Any]:
    cycle = itertools.cycle(bodies)
    latencies: list[float] = []
    reported: list[dict[str, float]] = []  # each measured response's latency_ms, with ``stages``
    errors = 0
    issued = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as client:

        async def post(body: dict[str, Any], measured: bool = True) -> bool:
            async with client.post(url, json=body) as response:
                content = await response.read()
                if stages and measured and response.status == 200:
                    reported.append(json.loads(content).get("latency_ms") or {})
                return response.status == 200

        for body in bodies[: min(WARM_UP, len(bodies))]:  # not counted
            await post(body, measured=False)
        on_start()
        started = time.perf_counter()
        deadline = started + max_seconds

        async def user() -> None:
            nonlocal errors, issued
            while issued < max_requests and time.perf_counter() < deadline:
                issued += 1
                body = next(cycle)
                sent = time.perf_counter()
                try:
                    ok = await post(body)
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                if ok:
                    latencies.append((time.perf_counter() - sent) * 1000)
                else:
                    errors += 1

        await asyncio.gather(*(user() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return summarise(latencies, errors, elapsed, reported)


def cpu_per_request(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    """Milliseconds of CPU per answered request that each process spent between two snapshots."""
    if not requests:
        return {}
    return {name: round((after[name] - before[name]) * 1000 / requests, 2) for name in after if name in before}


def http_load(
    url: str,
    bodies: Sequence[dict[str, Any]],
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    headers: dict[str, str] | None = None,
    on_start: Callable[[], object] = lambda: None,
    stages: bool = False,
) -> dict[str, Any]:
    """``on_start`` is called once the warm-up is done, when the measured run begins; ``stages``: also
    summarise the server's own per-stage times (ragkeep's ``latency_ms``: retrieve, generate, ground, total)."""
    return asyncio.run(_load(url, bodies, concurrency, max_requests, max_seconds, headers or {}, on_start, stages))


def inprocess_load(
    call: Callable[[str], object],
    questions: Sequence[str],
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    on_start: Callable[[], object] = lambda: None,
) -> dict[str, Any]:
    """The same load shape without HTTP: ``concurrency`` threads calling ``call`` directly."""
    for question in questions[:WARM_UP]:
        call(question)
    on_start()
    cycle = itertools.cycle(questions)
    latencies: list[float] = []
    errors = 0
    issued = 0
    started = time.perf_counter()
    deadline = started + max_seconds

    def user() -> None:
        nonlocal issued, errors
        while issued < max_requests and time.perf_counter() < deadline:
            issued += 1
            question = next(cycle)
            sent = time.perf_counter()
            try:
                call(question)
            except Exception:
                errors += 1
                continue
            latencies.append((time.perf_counter() - sent) * 1000)

    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(user) for _ in range(concurrency)]:
            future.result()
    return summarise(latencies, errors, time.perf_counter() - started)


class Floor:
    """Query embedding (ONNX Runtime) + one Chroma query, in this process: what any retrieval must pay."""

    def __init__(self, chroma_url: str, chroma_collection: str, top_k: int, model: str) -> None:
        import chromadb

        from core.embedding import Embedder

        host, port = chroma_url.removeprefix("http://").split(":")
        self.collection = chromadb.HttpClient(host=host, port=int(port)).get_collection(chroma_collection)
        self.embedder = Embedder(model, backend="onnx")  # ragkeep's faster backend: the stricter floor
        self.embedder.warm_up()
        self.top_k = top_k

    def __call__(self, question: str) -> object:
        vector, _ = self.embedder.embed_query(question)
        return self.collection.query(
            query_embeddings=[vector], n_results=self.top_k, include=["documents", "metadatas"]
        )


@contextmanager
def baseline_endpoint(chroma_url: str, chroma_collection: str, log: Path) -> Iterator[tuple[str, int]]:
    """Start ``bench/baseline_api.py`` (a FastAPI app a LlamaIndex user would write) with uvicorn.

    Yields its URL and its process id.
    """
    port = free_port()
    env = {"BASELINE_CHROMA_URL": chroma_url, "BASELINE_COLLECTION": chroma_collection}
    command = [sys.executable, "-m", "uvicorn", "bench.baseline_api:app", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, env={**_base_env(), **env}, stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).parent.parent
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/healthz", process, f"the baseline endpoint (log: {log})", timeout=120)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("RAGKEEP_")}


def ragkeep_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}
