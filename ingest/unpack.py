"""Containers at upload: a ``.zip`` becomes one document per member, an email one document per attachment.

Every file that comes out of a container gets the same checks as a direct upload (size, type
from its content, a converter for its type; a password-protected one is opened with the
upload's password, ``ingest/decrypt.py``, and so is an encrypted member of a ZIP) and a link
to its container (``parent``). A file that fails them is refused alone, with its reason; the
others go ahead. Archives are unpacked one level deep (a ZIP inside the uploaded ZIP is
unpacked, a ZIP inside that is refused). Member names are paths inside the archive, made
safe: an absolute path or one with ``..`` is refused, never resolved. Sizes are checked
against what the central directory declares before anything is inflated, and against what
actually comes out while inflating (a member that inflates past its declared size is
refused).
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from core.errors import InvalidInput, PasswordRequired, RagkeepError, UnsupportedFileType, WrongPassword
from core.filetypes import EML, MSG, ZIP, FileKind, detect_file_kind
from ingest.convert import missing_converter
from ingest.decrypt import ZIP_ASK, ZIP_WRONG, LockedMember, Unlocker, protection
from ingest.emails import email_parts

MAX_DEPTH = 1  # a ZIP inside the uploaded ZIP is unpacked; one inside that is refused
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
_MAX_NAME_BYTES = 255
_READ_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class UnpackLimits:
    max_files: int  # documents one upload may become (RAGKEEP_MAX_FILES_PER_REQUEST)
    max_file_bytes: int  # per file, as a direct upload (RAGKEEP_MAX_UPLOAD_MB)
    max_unpacked_bytes: int  # all members of one archive together (RAGKEEP_LIMITS__MAX_UNPACKED_MB)


@dataclass(frozen=True)
class AcceptedFile:
    filename: str
    data: bytes
    kind: FileKind
    parent: str | None = None  # the archive or email it came out of


@dataclass(frozen=True)
class RefusedFile:
    filename: str
    reason: str


@dataclass
class Unpacked:
    files: list[AcceptedFile] = field(default_factory=list)
    refused: list[RefusedFile] = field(default_factory=list)


def check_file(data: bytes, filename: str, limits: UnpackLimits) -> FileKind:
    """The checks every file gets, uploaded or unpacked: size, type, a converter. Raises a ``RagkeepError``."""
    if len(data) > limits.max_file_bytes:
        raise InvalidInput(f"{filename!r} is larger than the {limits.max_file_bytes // (1024 * 1024)} MiB upload limit")
    if reason := skip_reason(data):
        raise UnsupportedFileType(f"{filename!r} is {reason}")
    kind = detect_file_kind(data, filename, limits.max_unpacked_bytes)
    reason = missing_converter(kind.kind)
    if reason is not None:
        raise UnsupportedFileType(f"{filename!r}: {reason}")
    return kind


def unlocked(
    data: bytes, filename: str, kind: FileKind, limits: UnpackLimits, unlock: Unlocker
) -> tuple[bytes, FileKind]:
    """A checked file readable without a password: as it is, or decrypted and checked again (``ingest.decrypt``).

    Raises ``PasswordRequired`` or ``WrongPassword`` (422) for a password-protected file the
    upload's password does not open, and the checks' errors for what decryption revealed (a
    ZIP bomb inside an encrypted OOXML file).
    """
    opened = unlock(data, filename, kind)
    if opened is data:
        return data, kind
    kind = check_file(opened, filename, limits)
    if protection(opened, kind) is not None:  # still protected: not decrypted after all
        raise InvalidInput(f"{filename!r} is still encrypted after decryption")
    return opened, kind


def member_name(raw: str) -> str | None:
    """A member's path made safe to use as a document name; None for a path that escapes (absolute, ``..``)."""
    path = raw.replace("\\", "/")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        return None
    parts = [_UNSAFE_CHARS.sub("", p).strip() for p in path.split("/")]
    if any(p == ".." for p in parts):
        return None
    name = "/".join(p for p in parts if p and p != ".")
    return name or None


def _skipped(raw: str) -> bool:
    """Folders, hidden files and macOS resource forks: not documents anyone uploaded on purpose."""
    parts = [p for p in raw.replace("\\", "/").split("/") if p]
    return (
        raw.endswith(("/", "\\"))
        or not parts
        or any((p.startswith(".") and p not in (".", "..")) or p == "__MACOSX" for p in parts)
    )


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, password: bytes | None = None) -> bytes:
    """The member's bytes, never more than its declared size or ``limit`` (raises ``InvalidInput``).

    An encrypted member is read only with ``password``, in ``ingest.decrypt``'s child process.
    """
    if info.flag_bits & 0x1 and password is None:
        raise InvalidInput("it is encrypted (password-protected in the archive)")
    allowed = min(info.file_size, limit)
    out = io.BytesIO()
    with archive.open(info, pwd=password) as member:
        while chunk := member.read(min(_READ_CHUNK, allowed + 1 - out.tell())):
            out.write(chunk)
            if out.tell() > allowed:
                raise InvalidInput("it inflates past its declared size or the limit (a possible ZIP bomb)")
    return out.getvalue()


def _encrypted_members(
    data: bytes, archive_name: str, infos: list[tuple[int, zipfile.ZipInfo]], limits: UnpackLimits, unlock: Unlocker
) -> dict[int, bytes | RagkeepError]:
    """The encrypted members worth reading, opened with the upload's password (``Unlocker.zip_members``).

    Raises ``PasswordRequired``/``WrongPassword`` when every member is encrypted and none opens:
    such an archive is one protected file to its sender, and is refused as one.
    """
    locked = [
        LockedMember(index, info.filename, info.file_size)
        for index, info in infos
        if info.flag_bits & 0x1 and member_name(info.filename) is not None and info.file_size <= limits.max_file_bytes
    ]
    if not locked:
        return {}
    opened = unlock.zip_members(data, archive_name, locked)
    if len(locked) == len(infos) and all(isinstance(o, PasswordRequired) for o in opened.values()):
        raise PasswordRequired(f"{archive_name!r} is a password-protected ZIP archive; {ZIP_ASK}")
    if len(locked) == len(infos) and all(isinstance(o, WrongPassword) for o in opened.values()):
        raise WrongPassword(f"{archive_name!r} is a password-protected ZIP archive and {ZIP_WRONG}")
    return opened


def _members(
    data: bytes, archive_name: str, limits: UnpackLimits, result: Unpacked, unlock: Unlocker
) -> Iterator[tuple[str, bytes]]:
    """(safe name, bytes) of each member worth a document; refusals go to ``result``."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = [(index, i) for index, i in enumerate(archive.infolist()) if not _skipped(i.filename)]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as exc:
        raise InvalidInput(f"{archive_name!r} is a damaged ZIP archive ({exc})") from None
    if len(infos) > limits.max_files:
        raise InvalidInput(
            f"{archive_name!r} holds {len(infos)} files; an upload may hold at most {limits.max_files} "
            "(RAGKEEP_MAX_FILES_PER_REQUEST)"
        )
    opened = _encrypted_members(data, archive_name, infos, limits, unlock)
    budget = limits.max_unpacked_bytes
    for index, info in infos:
        name = member_name(info.filename)
        shown = f"{archive_name}/{info.filename}"
        if name is None:
            result.refused.append(RefusedFile(shown, "its path leaves the archive (absolute or '..'); not unpacked"))
            continue
        if info.file_size > limits.max_file_bytes:
            mib = limits.max_file_bytes // (1024 * 1024)
            result.refused.append(RefusedFile(shown, f"it would unpack to more than the {mib} MiB upload limit"))
            continue
        if info.file_size > budget:
            result.refused.append(RefusedFile(shown, "the archive's members together exceed the unpacked-size limit"))
            continue
        outcome = opened.get(index)
        if isinstance(outcome, RagkeepError):
            result.refused.append(RefusedFile(shown, outcome.detail))
            continue
        try:
            content = outcome if outcome is not None else read_member(archive, info, min(limits.max_file_bytes, budget))
        except InvalidInput as exc:
            result.refused.append(RefusedFile(shown, exc.detail))
            continue
        except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError, OSError) as exc:
            result.refused.append(RefusedFile(shown, f"it is damaged in the archive ({type(exc).__name__}: {exc})"))
            continue
        budget -= len(content)
        yield name, content


_SIGNATURES = ("application/pkcs7-signature", "application/x-pkcs7-signature", "application/pgp-signature")
_VIDEO_BRANDS = (b"isom", b"iso2", b"mp41", b"mp42", b"qt  ", b"M4V ", b"avc1", b"3gp4", b"3gp5", b"3g2a", b"dash")
_EXECUTABLE_MAGIC = (b"MZ", b"\x7fELF", b"\xca\xfe\xba\xbe", b"\xcf\xfa\xed\xfe")
_MEDIA_MAGIC = (b"ID3", b"fLaC", b"OggS", b"\x1aE\xdf\xa3")  # MP3 (tagged), FLAC, Ogg, Matroska/WebM


def skip_reason(data: bytes, content_type: str = "") -> str | None:
    """Why an attachment or member is not a document at all (audio, video, programs, signatures), or None."""
    major = content_type.split("/", 1)[0].lower()
    if content_type.lower() in _SIGNATURES:
        return "a digital signature (S/MIME or PGP), not a document"
    riff = data[8:12] if data.startswith(b"RIFF") else b""
    brand = data[8:12] if data[4:8] == b"ftyp" else b""  # ISO media; HEIC images share the container
    if major == "audio" or riff == b"WAVE" or data.startswith(_MEDIA_MAGIC[:2]) or brand in (b"M4A ", b"M4B "):
        return "audio (ragkeep ingests text and does no speech-to-text)"
    if major == "video" or riff == b"AVI " or data.startswith(_MEDIA_MAGIC[2:]) or brand in _VIDEO_BRANDS:
        return "video (ragkeep ingests text and does no speech-to-text)"
    if data.startswith(_EXECUTABLE_MAGIC) or content_type.lower() in (
        "application/x-msdownload",
        "application/x-executable",
    ):
        return "an executable program, not a document"
    return None


def _unique(filename: str, result: Unpacked) -> str:
    """Two attachments called ``image001.png``: the second becomes ``image001 (2).png``."""
    taken = {f.filename for f in result.files}
    if filename not in taken:
        return filename
    path = PurePosixPath(filename)
    number = 2
    while (candidate := str(path.with_name(f"{path.stem} ({number}){path.suffix}"))) in taken:
        number += 1
    return candidate


def _add(
    filename: str,
    data: bytes,
    parent: str | None,
    depth: int,
    limits: UnpackLimits,
    result: Unpacked,
    unlock: Unlocker,
    declared: str = "",
) -> None:
    filename = _unique(filename, result)
    # A refusal names the container too ("bundle.zip/a.wav"): the member's own name may be anywhere.
    shown = f"{parent}/{filename}" if parent and not filename.startswith(f"{parent}/") else filename
    if len(filename.encode("utf-8")) > _MAX_NAME_BYTES:
        result.refused.append(RefusedFile(shown, f"its name is longer than {_MAX_NAME_BYTES} bytes"))
        return
    if reason := skip_reason(data, declared):
        result.refused.append(RefusedFile(shown, f"skipped: {reason}"))
        return
    try:
        data, kind = unlocked(data, filename, check_file(data, filename, limits), limits, unlock)
    except RagkeepError as exc:
        result.refused.append(RefusedFile(shown, exc.detail))
        return
    _add_checked(filename, data, kind, parent, depth, limits, result, unlock)


def _add_checked(
    filename: str,
    data: bytes,
    kind: FileKind,
    parent: str | None,
    depth: int,
    limits: UnpackLimits,
    result: Unpacked,
    unlock: Unlocker,
) -> None:
    if kind == ZIP:
        if depth > MAX_DEPTH:
            result.refused.append(
                RefusedFile(filename, f"archives are unpacked {MAX_DEPTH} level deep; this one is deeper")
            )
            return
        try:
            for name, content in _members(data, filename, limits, result, unlock):
                _add(f"{filename}/{name}" if depth else name, content, filename, depth + 1, limits, result, unlock)
        except InvalidInput as exc:
            if depth == 0:
                raise
            result.refused.append(RefusedFile(filename, exc.detail))
        return
    result.files.append(AcceptedFile(filename, data, kind, parent))
    if kind in (EML, MSG) and depth <= MAX_DEPTH:
        try:
            parts = email_parts(data, kind)
        except ValueError:
            return  # the parser reports the damaged email as the document's failure
        for attachment in parts.attachments:
            name = member_name(attachment.filename) or "attachment"
            name = f"{filename}/{name}"
            _add(name, attachment.data, filename, depth + 1, limits, result, unlock, attachment.content_type)


def unpack(
    filename: str, data: bytes, kind: FileKind, limits: UnpackLimits, unlock: Unlocker | None = None
) -> Unpacked:
    """The documents an uploaded file becomes (itself, its members or its attachments) and what was refused.

    ``kind`` is the upload's checked kind; ``unlock`` opens password-protected files with the
    upload's password (by default: none). Raises ``InvalidInput`` for an archive that is damaged
    or holds more files than an upload may, and ``PasswordRequired``/``WrongPassword`` for an
    uploaded file that stays locked; a member or attachment that fails its checks is refused alone.
    """
    unlock = unlock or Unlocker()
    result = Unpacked()
    data, kind = unlocked(data, filename, kind, limits, unlock)
    _add_checked(filename, data, kind, None, 0, limits, result, unlock)
    return result
