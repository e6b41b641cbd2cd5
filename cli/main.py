"""``ragkeep`` command line: run the whole service (``up``) or one part of it."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Annotated

import typer

from cli import remote
from cli.supervisor import ChildFailed, Part, Supervisor
from core.db import Database, create_schema
from core.settings import Settings, get_settings

app = typer.Typer(help="ragkeep: versioned, evaluated knowledge bases for RAG applications.", no_args_is_help=True)
log = logging.getLogger("ragkeep")

PortOption = Annotated[int | None, typer.Option("--port", help="API port (default RAGKEEP_API_PORT or 8000).")]
HostOption = Annotated[str | None, typer.Option("--host", help="API bind address (default 127.0.0.1).")]


def _api_command(settings: Settings, host: str | None, port: int | None) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "service.app:serve_app",
        "--factory",
        "--host",
        host or settings.api_host,
        "--port",
        str(port or settings.api_port),
    ]


def _worker_command(settings: Settings, concurrency: int | None, queues: str | None) -> list[str]:
    from workers.app import all_queues

    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.app",
        "worker",
        f"--loglevel={settings.log_level}",
        "--concurrency",
        str(concurrency or settings.worker.concurrency),
        "-Q",
        queues or ",".join(all_queues(settings)),
        "--without-gossip",
        "--without-mingle",
    ]


def _worker_env(settings: Settings, env: dict[str, str]) -> dict[str, str]:
    """The worker's environment: a fresh multiprocess folder for its Prometheus metrics.

    Local to the host (not the data dir, which several worker hosts may share), one per metrics
    port and starting process (``ragkeep up``'s supervisor, or ``ragkeep worker``, which becomes the
    worker), emptied on each start so a restarted worker does not count its past twice. A second
    stack on the same host never empties a running one's folder, even when given the same port;
    folders of processes that are gone are removed.
    """
    if not settings.worker.metrics_port:
        return env
    prefix = f"ragkeep-worker-metrics-{settings.worker.metrics_port}-"
    for stale in Path(tempfile.gettempdir()).glob(prefix + "*"):
        owner = stale.name.removeprefix(prefix)
        if owner.isdigit() and int(owner) != os.getpid() and not _alive(int(owner)):
            shutil.rmtree(stale, ignore_errors=True)
    folder = Path(tempfile.gettempdir()) / f"{prefix}{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return {**env, "PROMETHEUS_MULTIPROC_DIR": str(folder)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _main_queues(settings: Settings) -> str:
    """Every queue but ``ocr``: what the main worker of ``ragkeep up`` consumes."""
    from workers.app import all_queues
    from workers.names import Queue

    return ",".join(all_queues(settings, without=(Queue.ocr,)))


# ``ragkeep up`` runs OCR in a worker of its own, consuming only the ``ocr`` queue: a 300-page
# scan then holds one OCR process for its minutes, while the main worker's processes keep
# parsing text documents and building versions. (One worker consuming every queue would let
# two scans take both of its processes.)
def _ocr_worker_command(settings: Settings) -> list[str]:
    from workers.names import Queue, queue_name

    return _worker_command(settings, settings.ocr.concurrency, queue_name(Queue.ocr, settings.queue_prefix))


def _ocr_worker_settings(settings: Settings) -> Settings:
    """The OCR worker's metrics listen on the next port (both workers run on this host)."""
    port = settings.worker.metrics_port
    return settings.model_copy(
        update={"worker": settings.worker.model_copy(update={"metrics_port": port + 1 if port else 0})}
    )


def _ocr_env(settings: Settings, env: dict[str, str]) -> dict[str, str]:
    """Its metrics port, and its process count as the worker's (the embedding model's threads are cores / that)."""
    port = _ocr_worker_settings(settings).worker.metrics_port
    return {
        **env,
        "RAGKEEP_WORKER__METRICS_PORT": str(port),
        "RAGKEEP_WORKER__CONCURRENCY": str(settings.ocr.concurrency),
    }


def _beat_command(settings: Settings) -> list[str]:
    settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.app",
        "beat",
        f"--loglevel={settings.log_level}",
        "-s",
        str(settings.resolved_data_dir / "celerybeat-schedule"),
    ]


def _chroma_command(settings: Settings) -> list[str]:
    binary = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
    if binary is None:
        raise typer.BadParameter("the `chroma` executable (from the chromadb package) is not installed")
    return [
        binary,
        "run",
        "--path",
        str(settings.chroma_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(settings.chroma_port),
    ]


def _wait_for_chroma(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ChildFailed(f"chroma server exited with code {process.returncode} (port in use?)")
        try:
            with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise ChildFailed(f"chroma server did not answer on {url} within {timeout:.0f} s")


def _prepare(settings: Settings) -> None:
    settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    try:
        create_schema(db.engine)
    finally:
        db.dispose()
    if settings.embedding_backend == "onnx":
        # The model's graph, exported once here (in a child: this process never imports torch) rather
        # than by each API and worker process at once as they start (core.embedding).
        exported = subprocess.run([sys.executable, "-m", "core.embedding", str(settings.model_cache_dir)])
        if exported.returncode != 0:
            typer.echo("ragkeep could not load its embedding model (see the error above)", err=True)
            raise typer.Exit(code=1)


def _bootstrap_admin_key(settings: Settings, console_url: str) -> None:
    """First start without RAGKEEP_ADMIN_API_KEY: create an admin key, store its hash, print it once."""
    if settings.auth == "disabled":
        typer.echo("WARNING: RAGKEEP_AUTH=disabled: the API accepts every request as admin.", err=True)
        return
    if settings.admin_api_key:
        return
    from core import auth

    db = Database(settings.resolved_database_url)
    try:
        with db.session() as session:
            if auth.has_admin_key(session):
                return
            _, secret = auth.create_key(session, "bootstrap admin", "admin", "*", None, None)
    finally:
        db.dispose()
    typer.echo(
        f"\nCreated the first admin API key (shown only now, store it):\n\n    {secret}\n\n"
        f"Sign in to the web console with it: {console_url}\n"
        "Use it as 'Authorization: Bearer <key>'; create more with POST /keys.\n"
    )
    sys.stdout.flush()


def _child_env(settings: Settings) -> dict[str, str]:
    """The parts' environment. Logs are text when a person reads them (stderr is a terminal) and
    RAGKEEP_LOG_FORMAT does not say otherwise; JSON lines for everything else (files, collectors)."""
    env = dict(os.environ, RAGKEEP_DATA_DIR=str(settings.resolved_data_dir))
    if "RAGKEEP_LOG_FORMAT" not in os.environ and sys.stderr.isatty():
        env["RAGKEEP_LOG_FORMAT"] = "text"  # the parts inherit this stderr
    return env


def _parts(settings: Settings, host: str | None, port: int | None) -> list[Part]:
    """The children of ``ragkeep up``, in start order (each restarted as a fresh command)."""
    env = _child_env(settings)
    parts: list[Part] = []

    def spawn(command: list[str], child_env: dict[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
        # Own sessions: Ctrl-C reaches only the supervisor, which stops the parts in order.
        if log is None:
            return subprocess.Popen(command, env=child_env, start_new_session=True)
        with log.open("ab") as out:
            return subprocess.Popen(
                command, env=child_env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT
            )

    if settings.embedded_chroma:
        settings.chroma_dir.mkdir(parents=True, exist_ok=True)
        url = settings.resolved_chroma_url
        parts.append(
            Part(
                "chroma",
                lambda: spawn(_chroma_command(settings), env, settings.resolved_data_dir / "chroma.log"),
                ready=lambda process: _wait_for_chroma(url, process),
            )
        )
        env["RAGKEEP_CHROMA_URL"] = url
    parts += [
        Part(
            "worker",
            lambda: spawn(_worker_command(settings, None, _main_queues(settings)), _worker_env(settings, env)),
        ),
        Part(
            "ocr-worker",
            lambda: spawn(
                _ocr_worker_command(settings), _worker_env(_ocr_worker_settings(settings), _ocr_env(settings, env))
            ),
        ),
        Part("beat", lambda: spawn(_beat_command(settings), env)),
        Part("api", lambda: spawn(_api_command(settings, host, port), env)),
    ]
    return parts


@app.command()
def up(port: PortOption = None, host: HostOption = None) -> None:
    """Start everything on one machine: Chroma server (embedded default), worker, beat and the API.

    A part that dies is restarted after a backoff while the others keep running; ragkeep
    stops on Ctrl-C or SIGTERM, or when a part keeps dying (see ``cli.supervisor``).
    """
    settings = get_settings()
    _prepare(settings)
    api_url = f"http://{host or settings.api_host}:{port or settings.api_port}"
    _bootstrap_admin_key(settings, f"{api_url}/ui")
    supervisor = Supervisor(_parts(settings, host, port), echo=lambda message: typer.echo(message, err=True))
    stopping = False
    failure: str | None = None

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        supervisor.start_all()
        typer.echo(
            f"ragkeep is starting: API {api_url} (docs at {api_url}/docs), web console {api_url}/ui, "
            f"data in {settings.resolved_data_dir}"
        )
        while not stopping and failure is None:
            failure = supervisor.check()
            time.sleep(0.5)
    except ChildFailed as exc:
        typer.echo(f"ragkeep could not start: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    finally:
        if failure:
            typer.echo(failure, err=True)
        typer.echo("stopping ragkeep ...")
        supervisor.stop()
    if failure:
        raise typer.Exit(code=1)
    typer.echo("ragkeep stopped")


def _exec(command: list[str], env: dict[str, str] | None = None) -> None:
    os.execve(command[0], command, env if env is not None else dict(os.environ))


@app.command()
def api(port: PortOption = None, host: HostOption = None) -> None:
    """Run only the HTTP API (scale out with several of these)."""
    settings = get_settings()
    _prepare(settings)
    _exec(_api_command(settings, host, port))


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="Worker processes (default RAGKEEP_WORKER__CONCURRENCY).")
    ] = None,
    queues: Annotated[str | None, typer.Option(help="Comma-separated queues (default all).")] = None,
) -> None:
    """Run only a Celery worker."""
    settings = get_settings()
    _prepare(settings)
    _exec(_worker_command(settings, concurrency, queues), _worker_env(settings, dict(os.environ)))


@app.command()
def beat() -> None:
    """Run only Celery beat (exactly one per deployment)."""
    settings = get_settings()
    _prepare(settings)
    _exec(_beat_command(settings))


remote.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
