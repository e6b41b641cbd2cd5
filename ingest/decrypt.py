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

Members of an encrypted ZIP archive (legacy ZipCrypto, and WinZip AES: compression method 99,
what 7-Zip and WinZip write) are read with the same password, by pyzipper (a fork of
``zipfile`` with AES through pycryptodomex), in the same child and within the same budget:
ZipCrypto is decrypted in pure Python at about 2 MB/s, so a 100 MiB stored member would hold
the API process's GIL for some 50 s. The child reads each member as ``ingest.unpack`` reads
an unencrypted one (never past its declared size). pyzipper rather than stream-unzip (C
ZipCrypto, 40x faster) because it reads the central directory with ``zipfile``'s own code:
the members, sizes and names the parent checked are the ones decrypted, where stream-unzip
walks the local headers, a second view of the archive that an attacker can make disagree.

PDFs are decrypted with pikepdf (qpdf) rather than pypdfium2: both open the same files with
the same passwords, but qpdf rewrites the file decrypted with streams left as they are (no
inflating) and byte-for-byte the same on every run (``deterministic_id``), so uploading the
same protected file twice repeats its revision; PDFium's save-without-security rewrites
through its own object model, and a PDFium crash would need the same child anyway.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import InvalidInput, PasswordRequired, RagkeepError, WrongPassword
from core.filetypes import FileKind

MAX_PASSWORD_CHARS = 1024
# What Excel encrypts a workbook with when it is protected without a password to open it:
# Office opens such files without asking, so ragkeep does too.
OFFICE_DEFAULT_PASSWORD = "VelvetSweatshop"
_OFFICE_KINDS = frozenset({"docx", "xlsx", "pptx", "doc", "xls", "ppt"})
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ASK = "send its password in the upload's `password` field (one password for the files of an upload)"
ZIP_ASK = "send the archive's password in the upload's `password` field (one password for the files of an upload)"
ZIP_WRONG = (
    "the password given does not open it; upload it with its own password (one password applies to every file of an "
    "upload)"
)


@dataclass(frozen=True)
class LockedMember:
    """An encrypted member of a ZIP archive: where it is in ``infolist()``, its name and its declared size."""

    index: int
    name: str
    size: int


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

    def zip_members(
        self, archive: bytes, archive_name: str, members: Sequence[LockedMember]
    ) -> dict[int, bytes | RagkeepError]:
        """Each encrypted member's bytes (by its ``index``), or why it stays locked.

        ``PasswordRequired`` without a password, ``WrongPassword`` when the password does not
        open it, ``InvalidInput`` for a member that is damaged, too big once inflated, or not
        decrypted within the upload's time budget. A member is never read past its declared size.
        """
        if self.password is None:
            return {
                m.index: PasswordRequired(f"it is encrypted in the archive (password-protected); {ZIP_ASK}")
                for m in members
            }
        manifest = [[m.index, m.name, m.size] for m in members]
        with tempfile.TemporaryDirectory(prefix="ragkeep-decrypt-") as tmp:
            output = Path(tmp) / "out"
            output.mkdir()
            (output / "members.json").write_text(json.dumps(manifest))
            try:
                status = self._run_child(archive, "zip", archive_name, Path(tmp) / "in", output)
            except InvalidInput as exc:  # the upload's time is up: no member was decrypted
                return {m.index: exc for m in members}
            if status != "ok":
                return {m.index: InvalidInput(f"it could not be decrypted ({status})") for m in members}
            outcomes = json.loads((output / "status.json").read_text())
            result: dict[int, bytes | RagkeepError] = {}
            for m in members:
                outcome = outcomes.get(str(m.index), "it was not decrypted")
                if outcome == "ok":
                    result[m.index] = (output / str(m.index)).read_bytes()
                elif outcome == "wrong_password":
                    result[m.index] = WrongPassword(f"it is encrypted in the archive and {ZIP_WRONG}")
                elif outcome.startswith("unsure:"):
                    kind = outcome.removeprefix("unsure:")
                    result[m.index] = WrongPassword(f"it is damaged in the archive, or {ZIP_WRONG} ({kind})")
                else:
                    result[m.index] = InvalidInput(outcome)
            return result

    def _decrypt(self, data: bytes, how: str, filename: str) -> tuple[str, bytes]:
        with tempfile.TemporaryDirectory(prefix="ragkeep-decrypt-") as tmp:
            output = Path(tmp) / "out"
            status = self._run_child(data, how, filename, Path(tmp) / "in", output)
            if status != "ok":
                return status, b""
            if output.stat().st_size > 2 * len(data) + 1024 * 1024:  # decryption never grows a file much
                return "it decrypts to more than twice its size", b""
            return status, output.read_bytes()

    def _run_child(self, data: bytes, how: str, filename: str, source: Path, output: Path) -> str:
        """The child's status line (``ok``, ``wrong_password`` or a reason); raises ``InvalidInput`` past the budget."""
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + self.timeout_s
        remaining = self._deadline - now
        budget = f"{self.timeout_s:.0f} s (RAGKEEP_LIMITS__DECRYPT_TIMEOUT_S)"
        if remaining <= 0:
            raise InvalidInput(f"{filename!r} was not decrypted: this upload's decryption time, {budget}, is used up")
        password = self.password if self.password is not None else OFFICE_DEFAULT_PASSWORD
        source.write_bytes(data)
        command = [sys.executable, "-m", "ingest.decrypt", how, str(source), str(output), str(self.max_memory_mb)]
        try:
            done = subprocess.run(command, input=password.encode("utf-8"), capture_output=True, timeout=remaining)
        except subprocess.TimeoutExpired:
            raise InvalidInput(f"decrypting {filename!r} took longer than this upload's {budget}") from None
        lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines and done.returncode == 0 else f"the decryption stopped (exit code {done.returncode})"


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


def _zip_member_status(archive: Any, info: Any, password: bytes, output: Path) -> str:  # pyzipper's: untyped
    """``ok`` (the member's bytes written to ``output``), ``wrong_password`` or why it was refused."""
    import zlib

    import pyzipper

    from ingest.unpack import read_member

    declared = info.file_size
    # zipfile stops inflating at the declared size and cuts what came out past it; a lie is then told by a
    # CRC that fails, but WinZip AES (AE-2) members carry no CRC. One byte more is let out, so it shows.
    info.file_size = declared + 1
    try:
        output.write_bytes(read_member(archive, info, declared, password))
    except InvalidInput as exc:  # past its declared size: a possible ZIP bomb
        return exc.detail
    except RuntimeError as exc:  # pyzipper's "Bad password for file ..."; the other RuntimeErrors name no password
        return "wrong_password" if "password" in str(exc).lower() else f"it is damaged in the archive ({exc})"
    except NotImplementedError as exc:  # PKWARE's strong encryption, an unknown compression method
        return f"it is encrypted or compressed in a way ragkeep cannot read ({exc})"
    except (pyzipper.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        # A wrong ZipCrypto password passes its one-byte check 1 time in 256 and fails here instead: a bad CRC, a
        # stream that does not inflate. Damage or a wrong password then, and told as both.
        return f"unsure:{type(exc).__name__}"
    return "ok"


def _decrypt_zip(source: str, output: str, password: str) -> None:
    """Each member named in ``output/members.json`` to ``output/<index>``; their statuses to ``output/status.json``."""
    import pyzipper

    out = Path(output)
    statuses: dict[int, str] = {}
    with pyzipper.AESZipFile(source) as archive:
        infos = archive.infolist()
        for index, name, size in json.loads((out / "members.json").read_text()):
            info = infos[index] if index < len(infos) else None
            if info is None or info.filename != name or info.file_size != size:
                statuses[index] = "it is damaged in the archive (its entry differs between readers)"
                continue
            statuses[index] = _zip_member_status(archive, info, password.encode("utf-8"), out / str(index))
    (out / "status.json").write_text(json.dumps(statuses))


def _child(argv: list[str]) -> str:
    how, source, output, max_memory_mb = argv
    password = sys.stdin.buffer.read().decode("utf-8")
    import msoffcrypto.exceptions
    import pikepdf
    import pyzipper  # noqa: F401 (imported before the memory limit, as the others)

    import ingest.unpack  # noqa: F401 (the ZIP members' reader, for the same reason)

    _limit_memory(int(max_memory_mb))
    try:
        if how == "zip":
            _decrypt_zip(source, output, password)
            return "ok"
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
