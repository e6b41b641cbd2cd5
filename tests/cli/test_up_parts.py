"""``ragkeep up`` runs an OCR worker of its own (issue 19): its queue, its processes, its metrics port."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cli.main import _main_queues, _ocr_env, _ocr_worker_command, _ocr_worker_settings, _parts, _worker_env
from core.settings import OcrSettings, Settings, WorkerSettings


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        chroma_url="http://127.0.0.1:1",
        queue_prefix="t-",
        ocr=OcrSettings(concurrency=3),
        worker=WorkerSettings(metrics_port=9300),
    )


def test_up_runs_a_main_worker_without_ocr_and_an_ocr_worker(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert [part.name for part in _parts(settings, None, None)] == ["worker", "ocr-worker", "beat", "api"]
    main = _main_queues(settings).split(",")
    assert "t-ocr" not in main and {"t-ingest", "t-build", "t-maintenance", "t-eval"} <= set(main)
    command = _ocr_worker_command(settings)
    assert command[command.index("-Q") + 1] == "t-ocr"
    assert command[command.index("--concurrency") + 1] == "3"


def test_the_ocr_worker_serves_metrics_on_the_next_port(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert _ocr_worker_settings(settings).worker.metrics_port == 9301
    env = _ocr_env(settings, {"PATH": "/bin"})
    assert env["RAGKEEP_WORKER__METRICS_PORT"] == "9301" and env["RAGKEEP_WORKER__CONCURRENCY"] == "3"
    off = settings.model_copy(update={"worker": WorkerSettings(metrics_port=0)})
    assert _ocr_worker_settings(off).worker.metrics_port == 0


def test_a_second_stack_on_the_same_metrics_port_leaves_the_first_ones_metrics_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each starting process has its own folder: another live process's is kept, a dead one's removed."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    settings = _settings(tmp_path)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        running = tmp_path / f"ragkeep-worker-metrics-9300-{other.pid}"
        stale = tmp_path / f"ragkeep-worker-metrics-9300-{gone.pid}"
        for folder in (running, stale):
            folder.mkdir()
            (folder / "counter_1.db").write_bytes(b"x")
        own = Path(_worker_env(settings, {})["PROMETHEUS_MULTIPROC_DIR"])
        assert own == tmp_path / f"ragkeep-worker-metrics-9300-{os.getpid()}" and not any(own.iterdir())
        assert (running / "counter_1.db").exists()
        assert not stale.exists()
        (own / "counter_2.db").write_bytes(b"x")
        assert Path(_worker_env(settings, {})["PROMETHEUS_MULTIPROC_DIR"]) == own and not any(own.iterdir())
    finally:
        other.kill()
        other.wait()
