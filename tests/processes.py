"""Start and stop the real processes the tests drive: Chroma server, Celery worker, API."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

BIN = Path(sys.executable).parent
TESTS = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_pair() -> int:
    """A port whose next port is free too (``ragkeep up``'s OCR worker serves metrics on port + 1)."""
    while True:
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


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


@dataclass(frozen=True)
class Up:
    """A running ``ragkeep up``: its process, API and Chroma URLs, environment, folder and log."""

    process: subprocess.Popen[bytes]
    url: str
    chroma_url: str
    env: dict[str, str]
    folder: Path

    @property
    def log(self) -> Path:
        return self.folder / "up.log"

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def admin_key(self) -> str:
        """The admin key ``ragkeep up`` printed on its first start."""
        printed = self.log.read_text()
        match = re.search(r"\n    (rk_[A-Za-z0-9_-]{40,})\n", printed)
        assert match, f"ragkeep up printed no admin key:\n{printed[-2000:]}"
        return match.group(1)


@contextmanager
def ragkeep_up(folder: Path, extra: Mapping[str, str] | None = None) -> Iterator[Up]:
    """``ragkeep up`` on the embedded default in ``folder``, on free ports (API, Chroma, both workers' metrics).

    On exit: Ctrl-C, which must end it with code 0, leave no child running and have let nothing
    through the network guard.
    """
    api_port, chroma_port = free_port(), free_port()
    env = child_env(
        {
            "RAGKEEP_DATA_DIR": str(folder / "data"),
            "RAGKEEP_CHROMA_PORT": str(chroma_port),
            "RAGKEEP_WORKER__METRICS_PORT": str(free_port_pair()),
            "RAGKEEP_WORKER__BUILD_DEBOUNCE_S": "0.5",
            "RAGKEEP_NETGUARD_LOG": str(folder / "netguard.log"),
            **(extra or {}),
        }
    )
    with (folder / "up.log").open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "ragkeep"), "up", "--port", str(api_port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    up = Up(process, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{chroma_port}", env, folder)
    try:
        wait_http(f"{up.url}/healthz", process, timeout=240)  # five processes start one after another
        yield up
    finally:
        children = psutil.Process(process.pid).children(recursive=True) if process.poll() is None else []
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=90)
    assert code == 0, up.log.read_text()[-3000:]
    time.sleep(0.5)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE], "children left running"
    assert not (folder / "netguard.log").exists(), (folder / "netguard.log").read_text()
