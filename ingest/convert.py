"""Legacy and open office formats and e-books -> a format the parser reads. The one module that runs converters.

``.doc .xls .ppt .odt .ods .odp .rtf`` go through LibreOffice in headless mode to their
OOXML twin (DOCX, XLSX, PPTX), which is then parsed as an upload of that type would be.
``.epub`` (and ``.odt``/``.rtf`` where LibreOffice is absent) go through pandoc, from the
``pypandoc-binary`` wheel, to HTML. Both are external programs: each run has a time limit
and a memory limit, runs in its own process group (killed whole on either limit) and, for
LibreOffice, with a private profile directory, so concurrent conversions never share
(or lock) a profile. Nothing here touches the network: pandoc runs with ``--sandbox``.

Whether a deployment can convert a kind at all is decided at upload (``missing_converter``),
so a file that cannot be converted is refused with what to install, never accepted and lost.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from core.errors import DocumentParseError
from core.filetypes import DOCX, HTML, PPTX, XLSX, FileKind

# kind -> (LibreOffice's target extension, the kind its output is parsed as)
LIBREOFFICE_TARGETS: dict[str, tuple[str, FileKind]] = {
    "doc": ("docx", DOCX),
    "rtf": ("docx", DOCX),
    "odt": ("docx", DOCX),
    "xls": ("xlsx", XLSX),
    "ods": ("xlsx", XLSX),
    "ppt": ("pptx", PPTX),
    "odp": ("pptx", PPTX),
}
# kind -> pandoc's reader
PANDOC_READERS = {"epub": "epub", "odt": "odt", "rtf": "rtf"}
CONVERTED_KINDS = frozenset(LIBREOFFICE_TARGETS) | frozenset(PANDOC_READERS)
LIBREOFFICE_PACKAGES = {
    "doc": "libreoffice-writer",
    "rtf": "libreoffice-writer",
    "odt": "libreoffice-writer",
    "xls": "libreoffice-calc",
    "ods": "libreoffice-calc",
    "ppt": "libreoffice-impress",
    "odp": "libreoffice-impress",
}
_POLL_S = 0.1


@functools.cache
def soffice_path() -> str | None:
    """LibreOffice's launcher, if installed (Debian's ``libreoffice-core``)."""
    return shutil.which("soffice") or shutil.which("libreoffice")


def _libreoffice_has(kind: str) -> bool:
    """Whether the LibreOffice module for ``kind`` (Writer, Calc or Impress) is installed next to the core."""
    launcher = soffice_path()
    if launcher is None:
        return False
    program = Path(os.path.realpath(launcher)).parent
    module = {
        "libreoffice-writer": "libswlo.so",
        "libreoffice-calc": "libsclo.so",
        "libreoffice-impress": "libslideshowlo.so",
    }
    return (program / module[LIBREOFFICE_PACKAGES[kind]]).exists()


@functools.cache
def pandoc_path() -> str | None:
    """The pandoc binary shipped in the ``pypandoc-binary`` wheel, if installed."""
    try:
        import pypandoc  # type: ignore[import-untyped]  # pypandoc ships no types

        path = str(pypandoc.get_pandoc_path())
    except (ImportError, OSError):
        return None
    return path if os.access(path, os.X_OK) else None


def converter_for(kind: str) -> str | None:
    """``"libreoffice"``, ``"pandoc"`` or None (no converter here) for a kind that needs converting."""
    if kind in LIBREOFFICE_TARGETS and _libreoffice_has(kind):
        return "libreoffice"
    if kind in PANDOC_READERS and pandoc_path() is not None:
        return "pandoc"
    return None


def missing_converter(kind: str) -> str | None:
    """Why this deployment cannot ingest ``kind`` (naming what to install), or None when it can."""
    if kind not in CONVERTED_KINDS or converter_for(kind) is not None:
        return None
    if kind in LIBREOFFICE_TARGETS:
        packages = f"libreoffice-core {LIBREOFFICE_PACKAGES[kind]}"
        also = " (or the pypandoc-binary wheel)" if kind in PANDOC_READERS else ""
        return (
            f".{kind} files are converted with LibreOffice, which is not installed here; install it with "
            f"`apt-get install --no-install-recommends {packages}`{also}"
        )
    return f".{kind} files are converted with pandoc, which is not installed here; install the pypandoc-binary wheel"


def _group_rss_mb(pgid: int) -> float:
    """Resident memory of every process in the group (LibreOffice's launcher starts soffice.bin)."""
    total_kb = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:  # fields after "comm)": state, ppid, pgrp, ...
                continue
            with open(f"/proc/{entry.name}/status") as status:
                total_kb += next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0)
        except (OSError, IndexError, ValueError):
            continue
    return total_kb / 1024


def run_limited(command: list[str], *, cwd: str, timeout_s: float, max_memory_mb: int, what: str) -> None:
    """Run ``command`` in its own process group; kill the group past ``timeout_s`` or ``max_memory_mb``."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, so a kill takes its children too
        env={**os.environ, "HOME": cwd, "SAL_USE_VCLPLUGIN": "svp"},
    )
    deadline = time.monotonic() + timeout_s
    problem = None
    try:
        while process.poll() is None:
            if time.monotonic() > deadline:
                problem = (
                    f"{what} took longer than {timeout_s:.0f} s (RAGKEEP_LIMITS__CONVERT_TIMEOUT_S) and was stopped"
                )
            elif _group_rss_mb(process.pid) > max_memory_mb:
                problem = (
                    f"{what} needed more than {max_memory_mb} MiB of memory (RAGKEEP_LIMITS__MAX_PARSE_MEMORY_MB) "
                    "and was stopped"
                )
            if problem:
                break
            time.sleep(_POLL_S)
    finally:
        # Whatever happened (a limit, our own interruption), nothing of the group outlives the call.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        stderr = process.stderr.read().decode("utf-8", "replace") if process.stderr else ""
        if process.stderr:
            process.stderr.close()
    if problem:
        raise DocumentParseError(problem)
    if process.returncode != 0:
        raise DocumentParseError(f"{what} failed (exit code {process.returncode}): {stderr.strip()[-300:]}")


def _libreoffice(data: bytes, kind: str, work: Path, timeout_s: float, max_memory_mb: int) -> tuple[bytes, FileKind]:
    target, parsed_as = LIBREOFFICE_TARGETS[kind]
    source = work / f"document.{kind}"
    source.write_bytes(data)
    launcher = soffice_path()
    assert launcher is not None  # converter_for checked it
    command = [
        launcher,
        f"-env:UserInstallation={(work / 'profile').as_uri()}",  # private: concurrent runs never share a profile
        "--headless",
        "--norestore",
        "--nologo",
        "--nodefault",
        "--nolockcheck",
        "--convert-to",
        target,
        "--outdir",
        str(work / "out"),
        str(source),
    ]
    run_limited(command, cwd=str(work), timeout_s=timeout_s, max_memory_mb=max_memory_mb, what="LibreOffice")
    output = work / "out" / f"document.{target}"
    if not output.exists():
        # LibreOffice exits 0 when it cannot load a file; it just writes nothing.
        raise DocumentParseError(f"LibreOffice could not read this .{kind} file (damaged, encrypted or not a .{kind})")
    return output.read_bytes(), parsed_as


def _pandoc(data: bytes, kind: str, work: Path, timeout_s: float, max_memory_mb: int) -> tuple[bytes, FileKind]:
    source = work / f"document.{kind}"
    source.write_bytes(data)
    output = work / "document.html"
    pandoc = pandoc_path()
    assert pandoc is not None
    # --sandbox: the readers may not touch files or the network (an e-book's links stay links)
    command = [pandoc, "--sandbox", "-f", PANDOC_READERS[kind], "-t", "html", "-s", "-o", str(output), str(source)]
    run_limited(command, cwd=str(work), timeout_s=timeout_s, max_memory_mb=max_memory_mb, what="pandoc")
    return output.read_bytes(), HTML


def convert(data: bytes, kind: FileKind, *, timeout_s: float, max_memory_mb: int) -> tuple[bytes, FileKind]:
    """``data`` of a converted kind as the bytes and kind the parser reads (DOCX/XLSX/PPTX or HTML).

    Raises ``DocumentParseError`` when the converter is missing, fails, or passes a limit.
    """
    how = converter_for(kind.kind)
    if how is None:
        raise DocumentParseError(missing_converter(kind.kind) or f"no converter for {kind.kind}")
    with tempfile.TemporaryDirectory(prefix="ragkeep-convert-") as tmp:
        work = Path(tmp)
        (work / "out").mkdir()
        run = _libreoffice if how == "libreoffice" else _pandoc
        return run(data, kind.kind, work, timeout_s, max_memory_mb)
