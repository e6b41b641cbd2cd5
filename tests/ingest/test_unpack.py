"""Archives and emails at upload (issue 19 items 3 and 4): one document per member or attachment, with limits."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest

from core.config import IngestionConfig
from core.errors import InvalidInput
from core.filetypes import EML, MSG, ZIP, detect_file_kind
from ingest.partition import partition_document
from ingest.unpack import UnpackLimits, member_name, skip_reason, unpack
from tests.conftest import EXAMPLE_DOCS

LIMITS = UnpackLimits(max_files=20, max_file_bytes=2 * 1024 * 1024, max_unpacked_bytes=8 * 1024 * 1024)


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _unpack(name: str, data: bytes, limits: UnpackLimits = LIMITS) -> tuple[dict[str, str | None], dict[str, str]]:
    result = unpack(name, data, detect_file_kind(data, name), limits)
    return {f.filename: f.parent for f in result.files}, {r.filename: r.reason for r in result.refused}


def test_zip_becomes_one_document_per_member_named_by_its_path_inside() -> None:
    data = _zip(
        {
            "notes.txt": b"Plain notes about the leave policy.",
            "policies/handbook.md": b"# Handbook\n\nNew hires get 20 days.",
            "policies/": b"",
            ".hidden": b"a dot file",
            "policies/.DS_Store": b"\0\0\0\1Bud1",
            "__MACOSX/policies/._handbook.md": b"\0\5\26\7",
        }
    )
    files, refused = _unpack("bundle.zip", data)
    assert files == {"notes.txt": "bundle.zip", "policies/handbook.md": "bundle.zip"}
    assert refused == {}


def test_the_example_zip_unpacks_into_its_two_documents() -> None:
    data = (EXAMPLE_DOCS / "simple.zip").read_bytes()
    result = unpack("simple.zip", data, detect_file_kind(data, "simple.zip"), LIMITS)
    assert {(f.filename, f.kind.kind) for f in result.files} == {
        ("ideas-page.html", "html"),
        ("stanley-cups.csv", "csv"),
    }


@pytest.mark.parametrize("raw", ["../evil.txt", "/etc/passwd", "a/../../evil.txt", "..\\evil.txt", "C:/evil.txt"])
def test_member_paths_that_leave_the_archive_are_refused_not_resolved(raw: str) -> None:
    assert member_name(raw) is None
    files, refused = _unpack("bundle.zip", _zip({raw: b"escaping text", "ok.txt": b"fine text"}))
    assert files == {"ok.txt": "bundle.zip"}
    assert list(refused) == [f"bundle.zip/{raw}"] and "leaves the archive" in refused[f"bundle.zip/{raw}"]


def test_members_get_the_checks_of_a_direct_upload() -> None:
    wav = (EXAMPLE_DOCS / "CantinaBand3.wav").read_bytes()
    files, refused = _unpack("bundle.zip", _zip({"ok.txt": b"fine text", "empty.txt": b"  \n", "sound.wav": wav}))
    assert files == {"ok.txt": "bundle.zip"}
    assert "empty" in refused["bundle.zip/empty.txt"] and "audio" in refused["bundle.zip/sound.wav"]


@pytest.mark.parametrize(
    ("data", "content_type", "cause"),
    [
        (b"MZ\x90\x00" + b"\0" * 200, "application/octet-stream", "executable"),
        (b"\x7fELF\x02\x01\x01" + b"\0" * 200, "", "executable"),
        (b"\0\0\0\x18ftypmp42" + b"\0" * 200, "", "video"),
        (b"<SIGNATURE>", "application/pkcs7-signature", "signature"),
        (b"ID3\x03" + b"\0" * 200, "audio/mpeg", "speech-to-text"),
    ],
)
def test_programs_media_and_signatures_are_skipped_with_their_reason(
    data: bytes, content_type: str, cause: str
) -> None:
    assert cause in (skip_reason(data, content_type) or "")
    heic = (EXAMPLE_DOCS / "img" / "DA-1p.heic").read_bytes()
    assert skip_reason(heic, "image/heic") is None  # an image (OCR) shares the ISO media container


def test_a_member_over_the_file_limit_is_refused_before_it_is_inflated() -> None:
    big = b"word " * (LIMITS.max_file_bytes // 4)  # compresses to a few KiB
    files, refused = _unpack("bundle.zip", _zip({"big.txt": big, "ok.txt": b"fine text"}))
    assert files == {"ok.txt": "bundle.zip"} and "upload limit" in refused["bundle.zip/big.txt"]


def test_a_zip_bomb_is_refused_whole_from_its_declared_sizes() -> None:
    bomb = _zip({f"part{i}.txt": b"\0" * (1024 * 1024) for i in range(12)})  # 12 MiB from ~12 KiB
    with pytest.raises(InvalidInput, match="ZIP bomb"):
        detect_file_kind(bomb, "bomb.zip", LIMITS.max_unpacked_bytes)


def test_a_member_that_lies_about_its_size_is_never_inflated_past_it() -> None:
    """The declared size is patched down from 1 MiB to 100 bytes: reading stops there and the CRC fails."""
    data = bytearray(_zip({"liar.txt": b"a" * (1024 * 1024), "ok.txt": b"fine text"}))
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("liar.txt")
    struct.pack_into("<I", data, info.header_offset + 22, 100)  # local header: uncompressed size
    central = data.rfind(b"PK\x01\x02liar"[:4], 0, len(data))
    while data[central + 46 : central + 54] != b"liar.txt":
        central = data.rfind(b"PK\x01\x02", 0, central)
    struct.pack_into("<I", data, central + 24, 100)  # central directory: uncompressed size
    files, refused = _unpack("bundle.zip", bytes(data))
    assert files == {"ok.txt": "bundle.zip"} and "damaged" in refused["bundle.zip/liar.txt"]


def test_too_many_members_refuse_the_archive() -> None:
    data = _zip({f"note{i}.txt": f"note number {i}".encode() for i in range(LIMITS.max_files + 1)})
    with pytest.raises(InvalidInput, match="at most 20"):
        _unpack("many.zip", data)


def test_nested_archives_are_unpacked_one_level_deep() -> None:
    deeper = _zip({"deep.txt": b"three levels down"})
    inner = _zip({"c.txt": b"inner text", "deeper.zip": deeper})
    files, refused = _unpack("outer.zip", _zip({"a.txt": b"outer text", "sub/inner.zip": inner}))
    assert files == {"a.txt": "outer.zip", "sub/inner.zip/c.txt": "sub/inner.zip"}
    assert list(refused) == ["sub/inner.zip/deeper.zip"] and "1 level deep" in refused["sub/inner.zip/deeper.zip"]


def test_a_damaged_nested_archive_is_refused_alone() -> None:
    broken = _zip({"x.txt": b"text"})[:-30]
    files, refused = _unpack("outer.zip", _zip({"a.txt": b"outer text", "broken.zip": broken}, zipfile.ZIP_STORED))
    assert files == {"a.txt": "outer.zip"} and "damaged" in refused["outer.zip/broken.zip"]


# ------------------------------------------------------------------ emails


def test_an_email_attachment_is_its_own_document_linked_to_the_email() -> None:
    data = (EXAMPLE_DOCS / "eml" / "fake-email-attachment.eml").read_bytes()
    result = unpack("mail.eml", data, EML, LIMITS)
    assert [(f.filename, f.kind.kind, f.parent) for f in result.files] == [
        ("mail.eml", "eml", None),
        ("mail.eml/fake-attachment.txt", "txt", "mail.eml"),
    ]
    assert result.files[1].data == b"Hey this is a fake attachment!"


def test_an_outlook_attachment_is_its_own_document() -> None:
    data = (EXAMPLE_DOCS / "fake-email-attachment.msg").read_bytes()
    result = unpack("mail.msg", data, MSG, LIMITS)
    assert [(f.filename, f.parent) for f in result.files] == [
        ("mail.msg", None),
        ("mail.msg/fake-attachment.txt", "mail.msg"),
    ]


def test_an_audio_attachment_is_skipped_with_its_reason_and_the_body_is_kept() -> None:
    data = (EXAMPLE_DOCS / "eml" / "mime-attach-mp3.eml").read_bytes()
    result = unpack("mail.eml", data, EML, LIMITS)
    assert [f.filename for f in result.files] == ["mail.eml"]
    [refused] = result.refused
    assert refused.filename == "mail.eml/sample-3s.mp3" and "no speech-to-text" in refused.reason
    chunks = partition_document(data, "mail.eml", EML, IngestionConfig())
    assert "Email with MP3 Attachment" in chunks[0].text


def test_an_email_with_an_image_attachment_keeps_its_text() -> None:
    """Issue 19: six emails failed whole ('The fast strategy is not available for image files')."""
    data = (EXAMPLE_DOCS / "eml" / "email-with-image.eml").read_bytes()
    chunks = partition_document(data, "mail.eml", EML, IngestionConfig())
    assert "email-with-image" in " ".join(c.text for c in chunks)
    result = unpack("mail.eml", data, EML, LIMITS)
    names = [f.filename for f in result.files] + [r.filename for r in result.refused]
    assert names == ["mail.eml", "mail.eml/unstructured_logo.png"]  # OCR'd where images are supported


def test_a_multipart_digest_is_read_and_its_messages_become_emails() -> None:
    """Issue 19: mime-multipart-digest.eml failed with an AssertionError inside Unstructured."""
    data = (EXAMPLE_DOCS / "eml" / "mime-multipart-digest.eml").read_bytes()
    chunks = partition_document(data, "digest.eml", EML, IngestionConfig())
    assert "Example Multipart Digest Email" in chunks[0].text
    result = unpack("digest.eml", data, EML, LIMITS)
    inner = [f for f in result.files if f.parent == "digest.eml"]
    assert [f.filename for f in inner] == [
        "digest.eml/First Message.eml",
        "digest.eml/Second Message.eml",
        "digest.eml/Third Message.eml",
    ]
    assert all(f.kind == EML for f in inner)
    assert (
        "first message" in partition_document(inner[0].data, inner[0].filename, EML, IngestionConfig())[0].text.lower()
    )


def test_same_named_attachments_get_distinct_names() -> None:
    note = b'--XX\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename="note.txt"\r\n\r\n'
    email = (
        b"From: a@example.com\r\nTo: b@example.com\r\nSubject: Two notes\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nBody text.\r\n'
        + note
        + b"First note.\r\n"
        + note
        + b"Second note.\r\n--XX--\r\n"
    )
    result = unpack("two.eml", email, EML, LIMITS)
    assert [f.filename for f in result.files] == ["two.eml", "two.eml/note.txt", "two.eml/note (2).txt"]


@pytest.mark.parametrize("name", ["eml/fake-encrypted.eml", "fake-encrypted.msg"])
def test_an_encrypted_email_fails_with_that_reason(name: str) -> None:
    data = (EXAMPLE_DOCS / name).read_bytes()
    kind = detect_file_kind(data, name)
    assert unpack(name, data, kind, LIMITS).refused == []  # its encrypted parts are not attachments
    with pytest.raises(Exception, match="encrypted"):
        partition_document(data, name, kind, IngestionConfig())


def test_a_zip_is_never_a_document_itself() -> None:
    data = _zip({"a.txt": b"text"})
    assert detect_file_kind(data, "a.zip") == ZIP
    assert [f.kind.kind for f in unpack("a.zip", data, ZIP, LIMITS).files] == ["txt"]


def test_an_encrypted_member_is_refused_with_that_reason() -> None:
    data = bytearray(_zip({"secret.txt": b"hidden words", "ok.txt": b"fine text"}))
    archive = zipfile.ZipFile(io.BytesIO(bytes(data)))
    info = archive.getinfo("secret.txt")
    data[info.header_offset + 6] |= 0x1  # local header: general purpose flag, bit 0 = encrypted
    central = data.find(b"PK\x01\x02")
    while data[central + 46 : central + 56] != b"secret.txt":
        central = data.find(b"PK\x01\x02", central + 4)
    data[central + 8] |= 0x1  # central directory: the same flag
    files, refused = _unpack("bundle.zip", bytes(data))
    assert files == {"ok.txt": "bundle.zip"} and "encrypted" in refused["bundle.zip/secret.txt"]
