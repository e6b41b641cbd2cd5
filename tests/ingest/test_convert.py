"""Legacy and open office formats and e-books (issue 19 item 2), and CSV/TSV in any encoding (item 5)."""

from __future__ import annotations

import io
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import IngestionConfig
from core.errors import DocumentParseError, UnsupportedFileType
from core.filetypes import CSV, DOC, ODT, TSV, detect_file_kind
from ingest import convert
from ingest.partition import normalized_table, partition_document
from ingest.unpack import UnpackLimits, check_file
from tests.conftest import EXAMPLE_DOCS

CONFIG = IngestionConfig()
LIMITS = UnpackLimits(max_files=10, max_file_bytes=10 * 1024 * 1024, max_unpacked_bytes=64 * 1024 * 1024)
needs_libreoffice = pytest.mark.skipif(convert.soffice_path() is None, reason="LibreOffice is not installed")


def _text(name: str, data: bytes | None = None) -> tuple[str, str | None]:
    data = data if data is not None else (EXAMPLE_DOCS / name).read_bytes()
    chunks = partition_document(data, Path(name).name, detect_file_kind(data, name), CONFIG)
    return "\n".join(c.text for c in chunks), str(chunks[0].metadata.get("parser"))


@needs_libreoffice
@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("fake.doc", "Lorem ipsum dolor sit amet"),
        ("simple.doc", "These are a few of my favorite things"),
        ("tests-example.xls", "What is 2+2?"),
        ("fake-power-point.ppt", "Adding a Bullet Slide"),
        ("fake.odt", "Lorem ipsum dolor sit amet"),
        ("fake-doc.rtf", "My first paragraph."),
    ],
)
def test_legacy_and_open_office_files_are_read_through_libreoffice(name: str, words: str) -> None:
    text, parser = _text(name)
    assert words in text and parser == "libreoffice"


@pytest.fixture(scope="module")
def open_document_twins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """An .ods and an .odp, made by LibreOffice from the examples' .xlsx and .pptx."""
    if convert.soffice_path() is None:
        pytest.skip("LibreOffice is not installed")
    out = tmp_path_factory.mktemp("odf")
    made: dict[str, bytes] = {}
    for source, target in (("stanley-cups.xlsx", "ods"), ("fake-power-point.pptx", "odp")):
        profile = (out / f"profile-{target}").as_uri()
        subprocess.run(
            [
                *(convert.soffice_path() or "", f"-env:UserInstallation={profile}", "--headless"),
                *("--convert-to", target, "--outdir", str(out), str(EXAMPLE_DOCS / source)),
            ],
            check=True,
            timeout=120,
            capture_output=True,
        )
        made[target] = (out / f"{Path(source).stem}.{target}").read_bytes()
    return made


def test_ods_and_odp_are_detected_and_read(open_document_twins: dict[str, bytes]) -> None:
    assert detect_file_kind(open_document_twins["ods"], "cups.ods").kind == "ods"
    assert detect_file_kind(open_document_twins["odp"], "deck.odp").kind == "odp"
    assert "Stanley Cups" in _text("cups.ods", open_document_twins["ods"])[0]
    assert "Adding a Bullet Slide" in _text("deck.odp", open_document_twins["odp"])[0]


def test_epub_is_read_through_pandoc() -> None:
    text, parser = _text("language-docs/eng_spa_mult.epub")
    assert "All human beings are born free and equal in dignity" in text and parser == "pandoc"


def test_without_libreoffice_odt_falls_back_to_pandoc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(convert, "_libreoffice_has", lambda kind: False)
    assert convert.converter_for("odt") == "pandoc"
    html, kind = convert.convert((EXAMPLE_DOCS / "fake.odt").read_bytes(), ODT, timeout_s=60, max_memory_mb=1024)
    assert kind.kind == "html" and b"Lorem ipsum dolor sit amet" in html


def test_a_missing_converter_refuses_the_upload_and_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(convert, "_libreoffice_has", lambda kind: False)
    monkeypatch.setattr(convert, "pandoc_path", lambda: None)
    for name, package in (("fake.doc", "libreoffice-writer"), ("tests-example.xls", "libreoffice-calc")):
        with pytest.raises(
            UnsupportedFileType, match=f"apt-get install --no-install-recommends libreoffice-core {package}"
        ):
            check_file((EXAMPLE_DOCS / name).read_bytes(), name, LIMITS)
    with pytest.raises(UnsupportedFileType, match="pypandoc-binary"):
        check_file((EXAMPLE_DOCS / "winter-sports.epub").read_bytes(), "winter-sports.epub", LIMITS)


@needs_libreoffice
def test_libreoffice_over_its_time_limit_is_killed_with_its_process_group() -> None:
    data = (EXAMPLE_DOCS / "fake.doc").read_bytes()
    before = _soffice_pids()
    with pytest.raises(DocumentParseError, match="took longer than"):
        convert.convert(data, detect_file_kind(data, "fake.doc"), timeout_s=0.3, max_memory_mb=4096)
    deadline = time.monotonic() + 5  # SIGKILL is sent; the kernel takes a moment to tear a process down
    while {p for p in _soffice_pids() - before if _alive(p)} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not {p for p in _soffice_pids() - before if _alive(p)}  # nothing it started is left running


@needs_libreoffice
def test_libreoffice_over_the_memory_limit_is_stopped() -> None:
    data = (EXAMPLE_DOCS / "fake.doc").read_bytes()
    with pytest.raises(DocumentParseError, match="more than 20 MiB"):
        convert.convert(data, detect_file_kind(data, "fake.doc"), timeout_s=60, max_memory_mb=20)


def test_a_child_that_outlives_its_parent_is_killed_on_timeout(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {pidfile}; wait"
    with pytest.raises(DocumentParseError, match="took longer than"):
        convert.run_limited(["sh", "-c", script], cwd=str(tmp_path), timeout_s=1, max_memory_mb=512, what="test")
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert not _alive(child)


@needs_libreoffice
def test_concurrent_conversions_use_private_profiles() -> None:
    data = (EXAMPLE_DOCS / "fake.doc").read_bytes()
    results: list[bytes] = []

    def run() -> None:
        results.append(convert.convert(data, detect_file_kind(data, "fake.doc"), timeout_s=120, max_memory_mb=4096)[0])

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and all(r.startswith(b"PK") for r in results)


@needs_libreoffice
def test_a_damaged_legacy_file_fails_with_a_reason() -> None:
    data = (EXAMPLE_DOCS / "fake.doc").read_bytes()[:3000]  # cut short: its streams are gone
    with pytest.raises(DocumentParseError, match=r"LibreOffice could not read this \.doc file"):
        partition_document(data, "broken.doc", DOC, CONFIG)


def _soffice_pids() -> set[int]:
    found = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/comm") as comm:
                    if comm.read().strip().startswith(("soffice", "oosplash")):
                        found.add(int(entry.name))
            except OSError:
                pass
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ------------------------------------------------------------------ CSV / TSV


@pytest.fixture
def cups() -> Iterator[str]:
    yield "Team,Location,Stanley Cups\nBlues,STL,1\nFlyers,PHI,2\nMaple Leafs,TOR,13\nCanadiens,MTL,24\n"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-8-sig", "utf-32", "cp1252", "shift_jis", "latin-1"])
def test_csv_in_any_encoding_is_read(encoding: str) -> None:
    text = (
        "Équipe,Ville,Coupes\nCanadiens,Montréal,24\nMaple Leafs,Toronto,13\n"
        if encoding != "shift_jis"
        else ("チーム,都市,優勝回数\n東京,東京都,3\n大阪,大阪府,1\n")
    )
    data = text.encode(encoding)
    chunks = partition_document(data, "cups.csv", CSV, CONFIG)
    joined = " ".join(c.text for c in chunks)
    assert ("Montréal" in joined) if encoding != "shift_jis" else ("東京都" in joined)


def test_the_example_utf16_csv_is_read() -> None:
    """Issue 19: stanley-cups-utf-16.csv failed with a UnicodeDecodeError."""
    assert "Maple Leafs" in _text("stanley-cups-utf-16.csv")[0]


def test_a_ragged_row_keeps_its_extra_fields(cups: str) -> None:
    ragged = cups + "Bruins,BOS,6,founded 1924,Original Six\n"
    text = " ".join(c.text for c in partition_document(ragged.encode(), "cups.csv", CSV, CONFIG))
    assert "founded 1924" in text and "Original Six" in text and "Canadiens" in text


def test_a_ragged_tsv_keeps_its_extra_fields(cups: str) -> None:
    tsv = cups.replace(",", "\t") + "Bruins\tBOS\t6\tOriginal Six\n"
    assert "Original Six" in " ".join(c.text for c in partition_document(tsv.encode(), "cups.tsv", TSV, CONFIG))


def test_a_well_formed_utf8_csv_is_passed_through_unchanged(cups: str) -> None:
    assert normalized_table(cups.encode(), CSV) == cups.encode()
    padded = normalized_table((cups + "x,y,z,extra\n").encode("utf-16"), CSV).decode()
    assert padded.splitlines()[0] == "Team,Location,Stanley Cups," and padded.splitlines()[-1] == "x,y,z,extra"
    assert io.StringIO(padded).read().count("\n") == 6
