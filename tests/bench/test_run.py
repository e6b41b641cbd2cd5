"""``bench.run --keep``: the run's data folder stays for inspection; without it, nothing is left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.run import working_folder


def test_without_keep_the_folder_is_removed_when_the_run_ends() -> None:
    with working_folder(None) as folder:
        (folder / "catalog.db").write_text("x")
        assert folder.is_dir()
    assert not folder.exists()


def test_keep_creates_the_folder_and_leaves_what_the_run_wrote(tmp_path: Path) -> None:
    kept = tmp_path / "runs" / "one"
    with working_folder(kept) as folder:
        (folder / "catalog.db").write_text("x")
    assert folder == kept.resolve()
    assert (kept / "catalog.db").read_text() == "x"


def test_keep_refuses_a_folder_that_already_holds_files(tmp_path: Path) -> None:
    (tmp_path / "old.db").write_text("an earlier run")
    with pytest.raises(SystemExit, match="not empty"), working_folder(tmp_path):
        pass
    assert (tmp_path / "old.db").read_text() == "an earlier run"
