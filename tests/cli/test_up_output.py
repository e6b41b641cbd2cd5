"""What ``ragkeep up`` tells a person: the console URL next to the admin key, and readable logs on a terminal."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from cli import main
from core.settings import Settings


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_logs_are_text_on_a_terminal_and_json_otherwise(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    monkeypatch.delenv("RAGKEEP_LOG_FORMAT", raising=False)
    monkeypatch.setattr(main.sys, "stderr", _Terminal())
    assert main._child_env(settings)["RAGKEEP_LOG_FORMAT"] == "text"
    monkeypatch.setattr(main.sys, "stderr", io.StringIO())
    assert "RAGKEEP_LOG_FORMAT" not in main._child_env(settings), "not a terminal: the JSON default"
    monkeypatch.setattr(main.sys, "stderr", _Terminal())
    monkeypatch.setenv("RAGKEEP_LOG_FORMAT", "json")
    assert main._child_env(settings)["RAGKEEP_LOG_FORMAT"] == "json", "an explicit setting wins"


def test_the_first_admin_key_is_printed_with_the_console_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(data_dir=tmp_path)
    tmp_path.mkdir(exist_ok=True)
    main._prepare(settings)
    main._bootstrap_admin_key(settings, "http://127.0.0.1:8000/ui")
    out = capsys.readouterr().out
    assert "rk_" in out and "Sign in to the web console with it: http://127.0.0.1:8000/ui" in out
    main._bootstrap_admin_key(settings, "http://127.0.0.1:8000/ui")
    assert capsys.readouterr().out == "", "the key is printed once"
