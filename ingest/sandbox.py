"""Parse documents in a helper process that is killed when a document takes too much memory.

A worker process holds the embedding model, so one document that makes a parser
balloon (a decompression bomb that slipped past the upload checks, a pathological PDF,
a text of one multi-megabyte line) must not take it down. The helper is a fresh
interpreter (it shares nothing with the worker's torch threads), started once per worker
process and reused for every document. While it reads a document its resident memory is
watched: if it grows by more than the limit, the helper is killed, the document fails
with that reason, and the next document gets a fresh helper. A helper that dies for any
other reason (a crash in a C extension) fails only the document it was reading, and one
that has grown over time is recycled between documents.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import traceback
from multiprocessing.connection import Connection
from typing import Any, Protocol

from core import cputime
from core.config import IngestionConfig
from core.errors import DocumentParseError
from core.filetypes import FileKind
from ingest.ocr import OcrNeeded, OcrOptions, PageProgress
from ingest.partition import Chunk, partition_document

log = logging.getLogger(__name__)


class Parser(Protocol):
    """Bytes -> chunks (``partition_document``, or it in a ``ParseSandbox``).

    With ``ocr`` it reads images and scanned pages by OCR, telling ``on_page`` of each page;
    without, such a document raises ``OcrNeeded`` (its parse belongs on the ``ocr`` queue).
    """

    def __call__(
        self,
        data: bytes,
        filename: str,
        kind: FileKind,
        config: IngestionConfig,
        *,
        ocr: OcrOptions | None = None,
        on_page: PageProgress | None = None,
    ) -> list[Chunk]: ...


POLL_S = 0.05
START_TIMEOUT_S = 180.0
_WARM = IngestionConfig()
_BLANK_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)
_WARM_UP = (
    (b"Warm-up text for the parser process.", "warm-up.txt", FileKind("txt", "text/plain")),
    (_BLANK_PDF, "warm-up.pdf", FileKind("pdf", "application/pdf")),
)


def _serve(requests: Connection, replies: Connection, max_pdf_pages: int | None) -> None:
    """The helper's loop: one request in, one reply out, until the pipe closes.

    First it parses a tiny text and a blank PDF, so that the libraries documents need are
    loaded before the parent records the helper's resting memory.
    """
    for data, name, kind in _WARM_UP:
        with contextlib.suppress(DocumentParseError):  # the blank PDF has no text: loading the PDF stack is the point
            partition_document(data, name, kind, _WARM)
    replies.send(("ready", _rss_mb(os.getpid())))

    def progress(done: int, total: int) -> None:
        replies.send(("progress", done, total))

    while True:
        try:
            data, filename, kind, config, ocr = requests.recv()
        except (EOFError, OSError):
            return
        reply: tuple[Any, ...]
        try:
            reply = ("ok", partition_document(data, filename, kind, config, max_pdf_pages, ocr=ocr, on_page=progress))
        except OcrNeeded as exc:
            reply = ("needs_ocr", exc.pages, exc.detail)
        except DocumentParseError as exc:
            reply = ("parse_error", exc.detail)
        except MemoryError:
            reply = ("memory",)
        except Exception as exc:
            reply = ("error", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        replies.send(reply)


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far; 0 when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class ParseSandbox:
    """``parse(data, filename, kind, config)`` in a watched helper process.

    The helper is a plain child interpreter (``python -m ingest.sandbox``), not a
    ``multiprocessing`` child: Celery's prefork processes are daemonic and may not have those.
    """

    def __init__(self, max_memory_mb: int, max_pdf_pages: int | None = None) -> None:
        self.max_memory_mb = max_memory_mb
        self.max_pdf_pages = max_pdf_pages
        self._process: subprocess.Popen[bytes] | None = None
        self._send: Connection | None = None
        self._recv: Connection | None = None
        self.peak_rss_mb = 0.0  # of the last document, as polled
        self.resting_rss_mb = 0.0
        self._ready = False  # the running helper has said it is ready (its resting memory is known)

    def start(self) -> float:
        """Start the helper unless it runs; returns its resting memory in MiB."""
        self._start()
        return self.resting_rss_mb

    def spawn(self) -> None:
        """Start the helper without waiting for it: it loads its libraries while this process goes on.

        A worker process does this as it starts, so that its first document does not wait for
        the parsers to load (several seconds of CPU); the first document then waits at most
        for what is left of it.
        """
        if self._process is None or self._process.poll() is not None:
            self._spawn()

    def _spawn(self) -> tuple[subprocess.Popen[bytes], Connection, Connection]:
        self.close()
        to_child, from_parent = os.pipe()
        from_child, to_parent = os.pipe()
        command = [sys.executable, "-m", "ingest.sandbox", str(to_child), str(to_parent), str(self.max_pdf_pages or 0)]
        try:
            self._process = subprocess.Popen(command, pass_fds=(to_child, to_parent), stdin=subprocess.DEVNULL)
        finally:
            os.close(to_child)
            os.close(to_parent)
        self._send = Connection(from_parent, readable=False)
        self._recv = Connection(from_child, writable=False)
        self._ready = False
        return self._process, self._send, self._recv

    def _start(self) -> tuple[subprocess.Popen[bytes], Connection, Connection]:
        """The running helper, started (or waited for, if spawned) until it says it is ready."""
        process, send, recv = self._process, self._send, self._recv
        if process is None or send is None or recv is None or process.poll() is not None:
            process, send, recv = self._spawn()
        if not self._ready:
            try:
                if not recv.poll(START_TIMEOUT_S):
                    raise DocumentParseError(f"the parser process did not start within {START_TIMEOUT_S:.0f} s")
                _, self.resting_rss_mb = recv.recv()
            except (EOFError, OSError) as exc:
                self.close()
                raise DocumentParseError(f"the parser process could not start ({type(exc).__name__})") from exc
            except BaseException:
                self.close()
                raise
            self._ready = True
        return process, send, recv

    def __call__(
        self,
        data: bytes,
        filename: str,
        kind: FileKind,
        config: IngestionConfig,
        *,
        ocr: OcrOptions | None = None,
        on_page: PageProgress | None = None,
    ) -> list[Chunk]:
        process, send, recv = self._start()
        before = self.peak_rss_mb = _rss_mb(process.pid)
        cpu_before = _cpu_s(process.pid)
        finished = False
        try:
            send.send((data, filename, kind, config, ocr))
            reply = self._wait(process, recv, before, on_page)
            finished = True
        except (EOFError, OSError) as exc:
            raise DocumentParseError(f"the parser stopped while reading this file ({type(exc).__name__})") from exc
        finally:
            cputime.add("parse (helper process)", _cpu_s(process.pid) - cpu_before)
            if not finished:  # over the limit, crashed, or our task was interrupted (time limit): start afresh
                self.close()
        if _rss_mb(process.pid) > self.resting_rss_mb + self.max_memory_mb:
            # Freed memory is not always returned to the OS: recycle a helper that has grown.
            log.info("restarting the parser process after it grew past %.0f MiB", _rss_mb(process.pid))
            self.close()
        status, *rest = reply
        if status == "ok":
            chunks: list[Chunk] = rest[0]
            return chunks
        if status == "parse_error":
            raise DocumentParseError(rest[0])
        if status == "needs_ocr":
            raise OcrNeeded(rest[0], "this file")
        if status == "memory":
            self.close()
            raise DocumentParseError("the parser ran out of memory reading this file")
        log.warning("parser failed on %s: %s", filename, rest[1])
        raise DocumentParseError(f"the file could not be parsed ({rest[0]})")

    def _wait(
        self, process: subprocess.Popen[bytes], recv: Connection, before: float, on_page: PageProgress | None
    ) -> tuple[Any, ...]:
        """The helper's reply, watching its memory meanwhile; page progress goes to ``on_page`` on the way."""
        while True:
            while not recv.poll(POLL_S):
                if process.poll() is not None:
                    raise DocumentParseError(
                        f"the parser stopped (exit code {process.returncode}) while reading this file"
                    )
                rss = _rss_mb(process.pid)
                self.peak_rss_mb = max(self.peak_rss_mb, rss)
                if rss - before > self.max_memory_mb:
                    raise DocumentParseError(
                        f"parsing this file needed more than {self.max_memory_mb} MiB of memory and was stopped "
                        "(RAGKEEP_LIMITS__MAX_PARSE_MEMORY_MB)"
                    )
            reply: tuple[Any, ...] = recv.recv()
            if reply[0] != "progress":
                return reply
            if on_page is not None:
                on_page(reply[1], reply[2])

    def close(self) -> None:
        """Stop the helper (killed if it is busy)."""
        for conn in (self._send, self._recv):
            if conn is not None:
                conn.close()
        self._send = self._recv = None
        self._ready = False
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.poll() is None else None


if __name__ == "__main__":
    # The helper: read requests on the first fd, answer on the second. Its stdout goes to
    # stderr, so a library that prints cannot corrupt the replies.
    os.dup2(2, 1)
    _serve(
        Connection(int(sys.argv[1]), writable=False),
        Connection(int(sys.argv[2]), readable=False),
        int(sys.argv[3]) or None,
    )
