"""Password-protected documents at upload: found there, and opened with the password the upload carries.

A PDF that needs a user password and an encrypted Office file (OOXML in its encrypted OLE
wrapper, or a legacy .doc/.xls/.ppt) are read only with their password. Without one, or with
one that does not open them, the file is refused at upload (``PasswordRequired``,
``WrongPassword``: 422) instead of being accepted and failing later. With the right one it is
decrypted here and the decrypted bytes are what is stored and parsed.

Finding out is cheap and done in the calling process: a PDF is looked at only when its bytes
name an ``/Encrypt`` dictionary (the trailer is never compressed), and then opened by qpdf
with the empty password — PDFs encrypted for permissions only (an owner password, an empty
user password: "copy-protected") open so and are kept as they are, since the parser reads
them without help. Office files are asked by msoffcrypto-tool (the encryption flag of the
OLE streams). Decrypting runs in a child interpreter (``python -m ingest.decrypt``) with a
memory limit and the upload's time budget: key derivation is attacker-controlled work (an
Office file may ask for 10 million SHA-512 rounds) and qpdf inflates object streams to
rewrite a PDF. The password reaches the child on its stdin, never its command line, and is
never logged, stored, or put into an error message; ``Unlocker`` keeps it out of its repr.

PDFs are decrypted with pikepdf (qpdf) rather than pypdfium2: both open the same files with
the same passwords, but qpdf rewrites the file decrypted with streams left as they are (no
inflating) and byte-for-byte the same on every run (``deterministic_id``), so uploading the
same protected file twice repeats its revision; PDFium's save-without-security rewrites
through its own object model, and a PDFium crash would need the same child anyway.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import InvalidInput, PasswordRequired, WrongPassword
from core.filetypes import FileKind

MAX_PASSWORD_CHARS = 1024
# What Excel encrypts a workbook with when it is protected without a password to open it:
# Office opens such files without asking, so ragkeep does too.
OFFICE_DEFAULT_PASSWORD = "VelvetSweatshop"
_OFFICE_KINDS = frozenset({"docx", "xlsx", "pptx", "doc", "xls", "ppt"})
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ASK = "send its password in the upload's `password` field (one password for the files of an upload)"


def protection(data: bytes, kind: FileKind) -> str | None:
    """``"pdf"`` or ``"office"`` when the file cannot be read without a password, else None.

    A damaged file the libraries cannot open is not called protected: the parser reports it.
    """
    if kind.kind == "pdf":
        if b"/Encrypt" not in data:
            return None
        import pikepdf

        try:
            with pikepdf.open(io.BytesIO(data), password=""):
                return None  # not encrypted, or only for permissions (an empty user password)
        except pikepdf.PasswordError:
            return "pdf"
        except Exception:  # qpdf refuses a damaged file in many ways; reading it is the parser's job
            return None
    if kind.kind in _OFFICE_KINDS and data.startswith(_OLE_MAGIC):
        import msoffcrypto

        try:
            encrypted = bool(msoffcrypto.OfficeFile(io.BytesIO(data)).is_encrypted())
        except Exception:  # msoffcrypto parses by hand and fails on odd files in many ways: not our verdict
            return None
        return "office" if encrypted else None
    return None


@dataclass
class Unlocker:
    """Opens the protected files of one upload with its password, within one time budget for them all.

    ``timeout_s`` is shared by every decryption of the upload (RAGKEEP_LIMITS__DECRYPT_TIMEOUT_S);
    each runs in a child process limited to ``max_memory_mb`` (RAGKEEP_LIMITS__MAX_PARSE_MEMORY_MB).
    """

    password: str | None = field(default=None, repr=False)
    timeout_s: float = 60.0
    max_memory_mb: int = 2048
    _deadline: float | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.password is not None and len(self.password) > MAX_PASSWORD_CHARS:
            raise InvalidInput(f"the password may be at most {MAX_PASSWORD_CHARS} characters")
        self.password = self.password or None

    def __call__(self, data: bytes, filename: str, kind: FileKind) -> bytes:
        """``data`` readable without a password: itself, or decrypted. Raises a 422 with the reason."""
        how = protection(data, kind)
        if how is None:
            return data
        if self.password is None and how == "pdf":
            raise PasswordRequired(f"{filename!r} is password-protected; {_ASK}")
        status, result = self._decrypt(data, how, filename)
        if status == "ok":
            return result
        if status == "wrong_password":
            if self.password is None:
                raise PasswordRequired(f"{filename!r} is password-protected; {_ASK}")
            raise WrongPassword(
                f"{filename!r} is password-protected and the password given does not open it; "
                "upload it with its own password (one password applies to every file of an upload)"
            )
        raise InvalidInput(f"{filename!r} is encrypted and could not be decrypted ({status})")

    def _decrypt(self, data: bytes, how: str, filename: str) -> tuple[str, bytes]:
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + self.timeout_s
        remaining = self._deadline - now
        budget = f"{self.timeout_s:.0f} s (RAGKEEP_LIMITS__DECRYPT_TIMEOUT_S)"
        if remaining <= 0:
            raise InvalidInput(f"{filename!r} was not decrypted: this upload's decryption time, {budget}, is used up")
        password = self.password if self.password is not None else OFFICE_DEFAULT_PASSWORD
        with tempfile.TemporaryDirectory(prefix="ragkeep-decrypt-") as tmp:
            source, output = Path(tmp) / "in", Path(tmp) / "out"
            source.write_bytes(data)
            command = [sys.executable, "-m", "ingest.decrypt", how, str(source), str(output), str(self.max_memory_mb)]
            try:
                done = subprocess.run(command, input=password.encode("utf-8"), capture_output=True, timeout=remaining)
            except subprocess.TimeoutExpired:
                raise InvalidInput(f"decrypting {filename!r} took longer than this upload's {budget}") from None
            lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
            status = (
                lines[-1] if lines and done.returncode == 0 else f"the decryption stopped (exit code {done.returncode})"
            )
            if status != "ok":
                return status, b""
            if output.stat().st_size > 2 * len(data) + 1024 * 1024:  # decryption never grows a file much
                return "it decrypts to more than twice its size", b""
            return status, output.read_bytes()


# ------------------------------------------------------------------------- the child


def _limit_memory(max_memory_mb: int) -> None:
    """Cap the child's address space at what it maps now plus ``max_memory_mb``."""
    import resource

    with open("/proc/self/status") as status:
        size_kb = next((int(line.split()[1]) for line in status if line.startswith("VmSize:")), 0)
    limit = (size_kb * 1024) + max_memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _decrypt_pdf(data: bytes, password: str) -> bytes:
    import pikepdf

    out = io.BytesIO()
    with pikepdf.open(io.BytesIO(data), password=password) as pdf:
        pdf.save(
            out,
            encryption=False,
            deterministic_id=True,  # the same protected file gives the same bytes (and revision) every time
            stream_decode_level=pikepdf.StreamDecodeLevel.none,  # streams copied as they are: nothing inflated
        )
    return out.getvalue()


def _decrypt_office(data: bytes, password: str) -> bytes:
    import msoffcrypto
    from msoffcrypto.format.ooxml import OOXMLFile

    office = msoffcrypto.OfficeFile(io.BytesIO(data))
    if isinstance(office, OOXMLFile):
        office.load_key(password=password, verify_password=True)
    else:  # .doc/.xls/.ppt: load_key checks the password against the file's verifier itself
        office.load_key(password=password)
    out = io.BytesIO()
    office.decrypt(out)
    return out.getvalue()


def _child(argv: list[str]) -> str:
    how, source, output, max_memory_mb = argv
    password = sys.stdin.buffer.read().decode("utf-8")
    import msoffcrypto.exceptions
    import pikepdf

    _limit_memory(int(max_memory_mb))
    try:
        data = Path(source).read_bytes()
        result = _decrypt_pdf(data, password) if how == "pdf" else _decrypt_office(data, password)
    except (pikepdf.PasswordError, msoffcrypto.exceptions.InvalidKeyError):
        return "wrong_password"
    except MemoryError:
        return "it needed more memory than RAGKEEP_LIMITS__MAX_PARSE_MEMORY_MB allows"
    except Exception as exc:  # in any library's words: named by its type only (qpdf reports allocation failures too)
        return f"{type(exc).__name__}: damaged, an unsupported encryption, or past RAGKEEP_LIMITS__MAX_PARSE_MEMORY_MB"
    Path(output).write_bytes(result)
    return "ok"


if __name__ == "__main__":
    # The status is the last line of stdout (a library that prints cannot forge it: its output comes first).
    sys.stdout.write("\n" + _child(sys.argv[1:]) + "\n")
