"""A real ragkeep for the benchmark: ``ragkeep up`` in a temporary folder, driven over HTTP.

Everything the README's ``ragkeep up`` starts runs here too: the embedded Chroma server,
the Celery worker (prefork, default concurrency), beat and the API, with the SQLite
catalog. The broker is the production one, Redis, when it answers on 127.0.0.1:6379.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from cli.http_client import Server

ADMIN_KEY = "rk_bench_" + "0" * 32
REDIS_URL = "redis://127.0.0.1:6379/0"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class MemorySampler:
    """Peak memory of the worker's process tree (Celery parent, prefork children, parse helpers).

    A sample reads every process's proportional set size, which makes the kernel walk its page
    tables: about 10 ms of CPU per worker process on a 2-core VM (126 ms for the 12 processes of
    a running stack). Sampled every 0.5 s, that took a quarter of a core from the stack while it
    was measured against a floor that ran without it. So the sampler waits at least its last
    sample's cost divided by ``max_share`` between samples, and its own CPU stays under that
    share of one core; ``cpu_seconds`` and ``samples`` report what it took.
    """

    def __init__(self, root: psutil.Process, interval: float = 0.5, max_share: float = 0.02) -> None:
        self.root = root
        self.interval = interval
        self.max_share = max_share
        self.peak_mb = 0.0
        self.samples = 0
        self.cpu_seconds = 0.0
        self._first_wait = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-memory", daemon=True)

    def worker_tree(self) -> list[psutil.Process]:
        found: dict[int, psutil.Process] = {}
        for child in self.root.children(recursive=True):
            try:
                command = " ".join(child.cmdline())
                if "celery" in command and " worker" in command:
                    found[child.pid] = child
                    found.update((p.pid, p) for p in child.children(recursive=True))
            except psutil.Error:
                continue
        return list(found.values())

    def sample(self) -> float:
        """Proportional set size (shared pages split between the processes that share them), MiB."""
        total = 0
        for process in self.worker_tree():
            try:
                total += process.memory_full_info().pss
            except psutil.Error:
                continue
        return total / 2**20

    def _measured_sample(self) -> float:
        """Take a sample (raising the peak); return the CPU seconds it cost this thread, kernel time included."""
        started = time.thread_time()
        self.peak_mb = max(self.peak_mb, self.sample())
        cost = time.thread_time() - started
        self.samples += 1
        self.cpu_seconds += cost
        return cost

    def _run(self) -> None:
        wait = self._first_wait
        while not self._stop.wait(wait):
            wait = max(self.interval, self._measured_sample() / self.max_share)

    def __enter__(self) -> MemorySampler:
        self._first_wait = max(self.interval, self._measured_sample() / self.max_share)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


# What each child of ``ragkeep up`` runs, told from its command line (see cli/main.py).
PARTS = (("api", " uvicorn "), ("worker", " worker "), ("beat", " beat "), ("chroma", " run --path "))


PROCESS_KINDS = ("api", "worker", "worker tasks", "parse helpers", "ocr worker", "beat", "chroma", "broker")
OCR_QUEUE = re.compile(r" -Q \S*ocr ")


def _own_cpu(process: psutil.Process) -> tuple[float, float]:
    """A process's own CPU seconds, and those of its children that exited (and were waited for)."""
    times = process.cpu_times()
    return times.user + times.system, times.children_user + times.children_system


def _worker_tree(main: psutil.Process, totals: dict[str, float]) -> None:
    """Split a Celery worker's CPU into its main process, its prefork processes and their parse helpers."""
    try:
        own, exited = _own_cpu(main)
        children = main.children()
    except psutil.Error:
        return
    totals["worker"] += own
    totals["worker tasks"] += exited  # recycled prefork processes (with their helpers)
    for child in children:
        try:
            own, exited = _own_cpu(child)
            helpers = child.children(recursive=True)
        except psutil.Error:
            continue
        totals["worker tasks"] += own
        for helper in helpers:
            try:
                totals["parse helpers"] += sum(_own_cpu(helper))
            except psutil.Error:
                continue
        totals["parse helpers"] += exited


def _redis_server_cpu() -> float:
    for process in psutil.process_iter(["name"]):
        if process.info["name"] == "redis-server":
            try:
                return sum(_own_cpu(process))
            except psutil.Error:
                return 0.0
    return 0.0


def tree_cpu_seconds(process: psutil.Process) -> float:
    """CPU time (user + system) of a process and its descendants so far, those that exited included."""
    total = 0.0
    for member in (process, *process.children(recursive=True)):
        try:
            times = member.cpu_times()
        except psutil.Error:
            continue
        # children_*: descendants that exited and were waited for (recycled prefork children).
        total += times.user + times.system + times.children_user + times.children_system
    return total


@dataclass
class Stack:
    url: str
    chroma_url: str
    worker_metrics_url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    settings: dict[str, str] = field(default_factory=dict)

    def server(self) -> Server:
        return Server(self.url, ADMIN_KEY, timeout=600)

    def memory(self) -> MemorySampler:
        return MemorySampler(psutil.Process(self.process.pid))

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time so far of each part of the stack (api, worker, beat, chroma), with its children."""
        totals = dict.fromkeys((name for name, _ in PARTS), 0.0)
        for child in psutil.Process(self.process.pid).children():
            try:
                command = f" {' '.join(child.cmdline())} "
            except psutil.Error:
                continue
            part = next((name for name, marker in PARTS if marker in command), None)
            if part is not None:
                totals[part] += tree_cpu_seconds(child)
        return totals

    def cpu_by_process(self) -> dict[str, float]:
        """CPU time so far of each kind of process of the stack, finer than ``cpu_seconds``.

        ``worker`` is Celery's main process (it takes messages from the broker and hands them to
        the prefork processes), ``worker tasks`` the prefork processes that run the tasks (with
        any that exited), ``parse helpers`` their parse helper processes (``ingest.sandbox``);
        the ``ocr worker`` is counted whole. ``broker`` is the Redis server when the stack uses
        one (shared with anything else that uses it); the embedded broker lives in the worker and API.
        """
        totals = dict.fromkeys(PROCESS_KINDS, 0.0)
        for child in psutil.Process(self.process.pid).children():
            try:
                command = f" {' '.join(child.cmdline())} "
            except psutil.Error:
                continue
            part = next((name for name, marker in PARTS if marker in command), None)
            if part == "worker" and OCR_QUEUE.search(command):
                totals["ocr worker"] += tree_cpu_seconds(child)
            elif part == "worker":
                _worker_tree(child, totals)
            elif part is not None:
                totals[part] += tree_cpu_seconds(child)
        if "RAGKEEP_REDIS_URL" in self.settings:
            totals["broker"] = _redis_server_cpu()
        return totals

    def worker_metric_by_label(self, name: str) -> dict[str, float]:
        """A labelled worker metric's samples by their (one) label value, from the worker's /metrics."""
        text = httpx.get(self.worker_metrics_url, timeout=10).text
        found: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith(name + "{"):
                label = line[len(name) + 1 :].split('"', 2)[1]
                found[label] = found.get(label, 0.0) + float(line.rsplit(" ", 1)[1])
        return found

    def worker_metric(self, name: str) -> float:
        """Sum of a worker metric's samples (all label values), from the worker's /metrics."""
        text = httpx.get(self.worker_metrics_url, timeout=10).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {"):
                total += float(line.rsplit(" ", 1)[1])
        return total


def wait_ready(probe: str, process: subprocess.Popen[bytes], name: str, timeout: float = 180) -> None:
    """Poll ``probe`` until it answers 200; fail early if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}")
        try:
            if httpx.get(probe, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{name} did not answer on {probe} within {timeout:.0f} s")


SETTLED_CPU_PER_S = 0.15  # the idle stack's timers and the embedded broker's polling stay below this
SETTLE_TIMEOUT_S = 240.0


def settle(process: subprocess.Popen[bytes]) -> dict[str, float]:
    """Wait until a started stack is done starting: its processes together below ``SETTLED_CPU_PER_S`` for 3 s.

    Ready answers come before every part has loaded: the worker processes load their model and
    start their parse helpers, the OCR worker loads its model, while the API already answers. Measured from
    there, the first ingestion after a start carried 6-14 s of that start-up CPU (about 1 ms a
    chunk of SciFact), and only the first row of each stack did. Returns the seconds waited and
    the CPU seconds the stack spent meanwhile (logged, so that the start-up is not hidden).
    """
    root = psutil.Process(process.pid)
    started, first = time.monotonic(), tree_cpu_seconds(root)
    quiet, last = 0, first
    while quiet < 3 and time.monotonic() - started < SETTLE_TIMEOUT_S:
        time.sleep(1.0)
        now = tree_cpu_seconds(root)
        quiet = quiet + 1 if now - last < SETTLED_CPU_PER_S else 0
        last = now
    waited = {"seconds": round(time.monotonic() - started, 1), "cpu_seconds": round(last - first, 1)}
    print(f"[stack] settled after start: {waited}", file=sys.stderr, flush=True)
    return waited


@contextmanager
def ragkeep_up(workdir: Path, extra: dict[str, str] | None = None, broker: str = "auto") -> Iterator[Stack]:
    """Start ``ragkeep up`` with its own data folder and ports; stop it afterwards.

    ``broker``: ``redis`` (127.0.0.1:6379), ``embedded`` (the SQLite broker of a first run), or
    ``auto`` (Redis when it answers).
    """
    use_redis = broker == "redis" or (broker == "auto" and redis_available())
    api_port, chroma_port, metrics_port = free_port(), free_port(), free_port()
    settings = {
        "RAGKEEP_DATA_DIR": str(workdir / "data"),
        "RAGKEEP_API_PORT": str(api_port),
        "RAGKEEP_CHROMA_PORT": str(chroma_port),
        "RAGKEEP_WORKER__METRICS_PORT": str(metrics_port),
        "RAGKEEP_ADMIN_API_KEY": ADMIN_KEY,
        # The benchmark is the only client and sends top_k=100 for recall@100.
        "RAGKEEP_LIMITS__REQUESTS_PER_MINUTE": "0",
        "RAGKEEP_QUERY__MAX_TOP_K": "100",
        "RAGKEEP_LOG_LEVEL": "WARNING",
        **(
            {"RAGKEEP_REDIS_URL": REDIS_URL, "RAGKEEP_QUEUE_PREFIX": f"bench{uuid.uuid4().hex[:6]}-"}
            if use_redis
            else {}
        ),
        **(extra or {}),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGKEEP_")} | settings
    log = (workdir / "ragkeep.log").open("ab")
    binary = str(Path(sys.executable).parent / "ragkeep")
    process = subprocess.Popen([binary, "up"], env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    url = f"http://127.0.0.1:{api_port}"
    try:
        wait_ready(f"{url}/readyz", process, "ragkeep up")
        # Ready API, worker still loading: the ingestion figures read the worker's metrics from the start.
        wait_ready(f"http://127.0.0.1:{metrics_port}/metrics", process, "the worker's metrics")
        settle(process)
        yield Stack(
            url=url,
            chroma_url=f"http://127.0.0.1:{chroma_port}",
            worker_metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
            data_dir=workdir / "data",
            process=process,
            settings=settings,
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def collection_version(server: Server, name: str) -> dict[str, Any] | None:
    """The live version of a collection, or None."""
    versions = server.call("GET", f"/collections/{name}/versions", params={"limit": 5})
    for version in versions["items"]:
        if version["state"] == "live":
            return dict(version)
    return None
