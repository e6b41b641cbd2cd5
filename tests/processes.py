"""Start and stop the real processes the tests drive: Chroma server, Celery worker, API."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
TESTS = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """Environment for ragkeep subprocesses: the network guard on PYTHONPATH, nothing inherited from RAGKEEP_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGKEEP_")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS / "netguard"), str(TESTS.parent)])
    env.update(extra)
    return env


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def start_chroma(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = (folder / "chroma.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "chroma"), "run", "--path", str(folder / "data"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/api/v2/heartbeat", process, timeout=30)
    return process, url


def start_worker(
    env: Mapping[str, str], log_path: Path, concurrency: int = 1, queues: str | None = None
) -> subprocess.Popen[bytes]:
    """A worker of every queue, or of the comma-separated ``queues``; metrics stay off unless ``env`` gives a port."""
    log = log_path.open("wb")
    return subprocess.Popen(
        [str(BIN / "ragkeep"), "worker", "--concurrency", str(concurrency), *(["--queues", queues] if queues else [])],
        env=child_env({"RAGKEEP_WORKER__METRICS_PORT": "0", **env}),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def start_api(env: Mapping[str, str], log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = log_path.open("wb")
    process = subprocess.Popen(
        [str(BIN / "ragkeep"), "api", "--port", str(port)],
        env=child_env(env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", process)
    return process, url


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL) if _own_group(process) else process.kill()
            process.wait()


def _own_group(process: subprocess.Popen[bytes]) -> bool:
    try:
        return os.getpgid(process.pid) == process.pid
    except ProcessLookupError:
        return False
