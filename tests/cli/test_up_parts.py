"""``ragkeep up`` runs an OCR worker of its own (issue 19): its queue, its processes, its metrics port."""

from __future__ import annotations

from pathlib import Path

from cli.main import _main_queues, _ocr_env, _ocr_worker_command, _ocr_worker_settings, _parts
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
