"""Password-protected files at upload (ingest/decrypt.py): refused without their password, decrypted with it."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import msoffcrypto
import pikepdf
import pytest
import pyzipper
from pypdf import PdfReader

from core.config import IngestionConfig
from core.errors import DocumentParseError, InvalidInput, PasswordRequired, WrongPassword
from core.filetypes import PDF, XLSX, detect_file_kind
from ingest.decrypt import Unlocker, protection
from ingest.partition import partition_document
from ingest.unpack import Unpacked, UnpackLimits, unpack
from tests.conftest import DATASETS, EXAMPLE_DOCS

LIMITS = UnpackLimits(max_files=20, max_file_bytes=4 * 1024 * 1024, max_unpacked_bytes=8 * 1024 * 1024)
PASSWORD_PDF = (EXAMPLE_DOCS / "pdf" / "password.pdf").read_bytes()  # user password "password"
LOCKED_XLSX = (EXAMPLE_DOCS / "password_protected.xlsx").read_bytes()  # password "123"
ENCRYPTION = DATASETS / "pdfminer-samples-subset" / "encryption"  # user password "foo", owner "baz"


def _text(pdf: bytes) -> str:
    return " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def _owner_only(source: bytes, linearize: bool = False) -> bytes:
    """``source`` encrypted for permissions only: AES-256, owner password, empty user password."""
    out = io.BytesIO()
    with pikepdf.open(io.BytesIO(source)) as pdf:
        pdf.save(
            out,
            linearize=linearize,
            encryption=pikepdf.Encryption(owner="owner-secret", user="", R=6, allow=pikepdf.Permissions()),
        )
    return out.getvalue()


def _locked(source: bytes, password: str) -> bytes:
    out = io.BytesIO()
    with pikepdf.open(io.BytesIO(source)) as pdf:
        pdf.save(out, encryption=pikepdf.Encryption(owner=f"{password}-owner", user=password, R=6))
    return out.getvalue()


def _encrypted_ooxml(data: bytes, password: str) -> bytes:
    out = io.BytesIO()
    msoffcrypto.format.ooxml.OOXMLFile(io.BytesIO(data)).encrypt(password, out)
    return out.getvalue()


def test_a_pdf_with_a_user_password_is_refused_without_it_and_with_a_wrong_one() -> None:
    assert protection(PASSWORD_PDF, PDF) == "pdf"
    with pytest.raises(PasswordRequired, match=r"password-protected.*`password` field"):
        Unlocker()(PASSWORD_PDF, "password.pdf", PDF)
    with pytest.raises(WrongPassword, match="does not open it") as wrong:
        Unlocker("not-the-password-4711")(PASSWORD_PDF, "password.pdf", PDF)
    assert wrong.value.status_code == 422 and "4711" not in wrong.value.detail
    assert "4711" not in repr(Unlocker("not-the-password-4711"))


def test_a_pdf_opened_with_its_password_is_decrypted_the_same_way_every_time() -> None:
    opened = Unlocker("password")(PASSWORD_PDF, "password.pdf", PDF)
    assert b"/Encrypt" not in opened and protection(opened, PDF) is None
    assert "File with password" in _text(opened)
    assert Unlocker("password")(PASSWORD_PDF, "password.pdf", PDF) == opened  # same bytes: a re-upload repeats


@pytest.mark.parametrize("name", ["aes-256.pdf", "rc4-40.pdf"])
@pytest.mark.parametrize("password", ["foo", "baz"])  # the user's and the owner's password both open it
def test_the_pdfminer_encryption_samples_open_with_either_password(name: str, password: str) -> None:
    data = (ENCRYPTION / name).read_bytes()
    with pytest.raises(PasswordRequired):
        Unlocker()(data, name, PDF)
    assert "Secret!" in _text(Unlocker(password)(data, name, PDF))


def test_pdfs_encrypted_for_permissions_only_need_no_password_and_are_kept_as_they_are() -> None:
    copy_protected = (EXAMPLE_DOCS / "pdf" / "copy-protected.pdf").read_bytes()  # R4, empty user password
    generated = _owner_only((DATASETS / "pdfminer-samples-subset" / "jo.pdf").read_bytes())
    for data in (copy_protected, generated):
        assert b"/Encrypt" in data and protection(data, PDF) is None
        assert Unlocker()(data, "copy-protected.pdf", PDF) is data
        assert Unlocker("some password")(data, "copy-protected.pdf", PDF) is data


def test_a_pdf_encrypted_for_permissions_only_is_parsed_as_uploaded() -> None:
    """AES-256 (R6) with an empty user password, as many PDFs in the wild: the parser reads it without help."""
    data = _owner_only((EXAMPLE_DOCS / "pdf" / "fake-memo.pdf").read_bytes())
    chunks = partition_document(data, "memo.pdf", PDF, IngestionConfig())
    assert "A total of 3 trucks were used" in " ".join(c.text for c in chunks)


def test_a_pdf_encrypted_for_permissions_only_is_held_to_the_page_limit() -> None:
    """It is stored as uploaded, so the parse is where RAGKEEP_LIMITS__MAX_PDF_PAGES must catch it (linearized:
    its ``/Encrypt`` is near the start, which once skipped the check)."""
    data = _owner_only((EXAMPLE_DOCS / "pdf" / "layout-parser-paper-fast.pdf").read_bytes(), linearize=True)
    assert b"/Encrypt" in data[:4096]
    with pytest.raises(DocumentParseError, match="the limit is 1"):
        partition_document(data, "paper.pdf", PDF, IngestionConfig(), max_pdf_pages=1)


def test_files_that_are_not_encrypted_are_untouched() -> None:
    for name in ("pdf/layout-parser-paper-fast.pdf", "stanley-cups.xlsx", "simple.doc", "fake.doc", "fake-text.txt"):
        data = (EXAMPLE_DOCS / name).read_bytes()
        kind = detect_file_kind(data, name)
        assert protection(data, kind) is None, name
        assert Unlocker("password")(data, name, kind) is data


def test_an_encrypted_xlsx_is_refused_without_its_password_and_decrypted_with_it() -> None:
    kind = detect_file_kind(LOCKED_XLSX, "locked.xlsx")
    assert protection(LOCKED_XLSX, kind) == "office"
    with pytest.raises(PasswordRequired):  # the default password (VelvetSweatshop) was tried: not that
        Unlocker()(LOCKED_XLSX, "locked.xlsx", kind)
    with pytest.raises(WrongPassword):
        Unlocker("1234")(LOCKED_XLSX, "locked.xlsx", kind)
    opened = Unlocker("123")(LOCKED_XLSX, "locked.xlsx", kind)
    assert detect_file_kind(opened, "locked.xlsx") == XLSX
    assert "xl/workbook.xml" in zipfile.ZipFile(io.BytesIO(opened)).namelist()


def test_an_xlsx_encrypted_with_excels_default_password_opens_without_one() -> None:
    data = _encrypted_ooxml((EXAMPLE_DOCS / "stanley-cups.xlsx").read_bytes(), "VelvetSweatshop")
    opened = Unlocker()(data, "read-only.xlsx", detect_file_kind(data, "read-only.xlsx"))
    assert opened == (EXAMPLE_DOCS / "stanley-cups.xlsx").read_bytes()


def test_a_zip_bomb_inside_an_encrypted_xlsx_is_refused_once_decrypted() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "[Content_Types].xml", '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'
        )
        archive.writestr("xl/workbook.xml", b"\0" * 40 * 1024 * 1024)
    data = _encrypted_ooxml(buffer.getvalue(), "bomb")
    limits = UnpackLimits(max_files=20, max_file_bytes=4 * 1024 * 1024, max_unpacked_bytes=8 * 1024 * 1024)
    with pytest.raises(InvalidInput, match="ZIP bomb"):
        unpack("bomb.xlsx", data, detect_file_kind(data, "bomb.xlsx"), limits, Unlocker("bomb"))


def test_decryption_stops_when_the_uploads_time_budget_is_used_up() -> None:
    unlock = Unlocker("password", timeout_s=0.001)  # no child process starts that fast
    with pytest.raises(InvalidInput, match="DECRYPT_TIMEOUT_S"):
        unlock(PASSWORD_PDF, "password.pdf", PDF)
    with pytest.raises(InvalidInput, match="used up"):  # the budget is the upload's, not each file's
        unlock(PASSWORD_PDF, "again.pdf", PDF)


def test_decryption_past_the_memory_limit_is_refused_with_a_422() -> None:
    data = _locked((EXAMPLE_DOCS / "pdf" / "DA-619p.pdf").read_bytes(), "heavy")  # 2.8 MB: more than 1 MiB to read
    with pytest.raises(InvalidInput) as refused:
        Unlocker("heavy", max_memory_mb=1)(data, "heavy.pdf", PDF)
    assert type(refused.value) is InvalidInput and "MAX_PARSE_MEMORY_MB" in refused.value.detail


def test_an_overlong_password_is_refused_without_being_echoed() -> None:
    with pytest.raises(InvalidInput) as refused:
        Unlocker("x" * 1025)
    assert "xxxx" not in refused.value.detail


def test_a_protected_zip_member_is_refused_alone_and_opened_with_the_uploads_password() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("notes.txt", b"Plain notes.")
        archive.writestr("locked/password.pdf", PASSWORD_PDF)
    data = buffer.getvalue()
    without = unpack("bundle.zip", data, detect_file_kind(data, "bundle.zip"), LIMITS)
    assert [f.filename for f in without.files] == ["notes.txt"]
    assert [r.filename for r in without.refused] == ["bundle.zip/locked/password.pdf"]
    assert "password-protected" in without.refused[0].reason
    opened = unpack("bundle.zip", data, detect_file_kind(data, "bundle.zip"), LIMITS, Unlocker("password"))
    assert [f.filename for f in opened.files] == ["notes.txt", "locked/password.pdf"] and not opened.refused
    assert "File with password" in _text(opened.files[1].data)


# Encrypted ZIPs made by real tools (tests/data), password ZIP_PASSWORD, members ledger.txt and policies/leave.md:
#   zip -X -P PASSWORD zipcrypto-infozip.zip ...          (Info-ZIP 3.0: ZipCrypto, deflated + stored)
#   7zz a -tzip -mem=AES256 -pPASSWORD aes256-7zip.zip ... (7-Zip 26.02: WinZip AES-256, method 99)
ZIP_PASSWORD = "Quartz-zip-5813"
ZIP_MEMBERS = {
    "ledger.txt": b"The harbour ledger lists 41 crates of saffron received in March.\n",
    "policies/leave.md": b"# Leave policy\n\nNew hires get 23 days of paid leave in their first year.\n",
}
TEST_DATA = Path(__file__).resolve().parent.parent / "data"


def _aes_zip(members: dict[str, bytes], password: str, plain: dict[str, bytes] | None = None) -> bytes:
    """WinZip AES-256 members (pyzipper), then ``plain`` ones added unencrypted."""
    buffer = io.BytesIO()
    with pyzipper.AESZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as archive:
        archive.setpassword(password.encode())
        for name, data in members.items():
            archive.writestr(name, data)
    with zipfile.ZipFile(buffer, "a", zipfile.ZIP_DEFLATED) as archive:
        for name, data in (plain or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _unpack_zip(data: bytes, password: str | None, timeout_s: float = 60.0) -> Unpacked:
    return unpack("bundle.zip", data, detect_file_kind(data, "bundle.zip"), LIMITS, Unlocker(password, timeout_s))


@pytest.mark.parametrize("name", ["zipcrypto-infozip.zip", "aes256-7zip.zip"])
def test_an_encrypted_zip_made_by_zip_or_7zip_opens_with_the_uploads_password(name: str) -> None:
    """Regression: every member with flag bit 0x1 was refused, even when the upload carried the archive's password."""
    data = (TEST_DATA / name).read_bytes()
    opened = _unpack_zip(data, ZIP_PASSWORD)
    assert {f.filename: f.data for f in opened.files} == ZIP_MEMBERS and not opened.refused
    assert {f.parent for f in opened.files} == {"bundle.zip"}


@pytest.mark.parametrize("name", ["zipcrypto-infozip.zip", "aes256-7zip.zip"])
def test_an_encrypted_zip_is_refused_whole_without_its_password_or_with_a_wrong_one(name: str) -> None:
    data = (TEST_DATA / name).read_bytes()
    with pytest.raises(PasswordRequired, match="password-protected ZIP archive; send the archive's password"):
        _unpack_zip(data, None)
    with pytest.raises(WrongPassword, match="password given does not open it") as wrong:
        _unpack_zip(data, "not-Quartz-zip")
    assert "not-Quartz" not in wrong.value.detail


def test_a_wrong_zipcrypto_password_that_passes_its_one_byte_check_is_still_a_wrong_password() -> None:
    """ZipCrypto checks a password against one byte: 1 wrong password in 256 passes, and the member fails its CRC."""
    data = (TEST_DATA / "zipcrypto-infozip.zip").read_bytes()
    archive = zipfile.ZipFile(io.BytesIO(data))

    def passes_the_check(password: str) -> bool:
        try:
            archive.open("ledger.txt", pwd=password.encode()).close()
        except RuntimeError:  # "Bad password for file"
            return False
        return True

    lucky = next(p for p in (f"wrong-{n}" for n in range(20_000)) if passes_the_check(p))
    with pytest.raises(WrongPassword, match="password given does not open it"):
        _unpack_zip(data, lucky)


def test_an_aes_zip_written_at_test_time_opens_with_its_password() -> None:
    data = _aes_zip({**ZIP_MEMBERS, "locked/password.pdf": PASSWORD_PDF}, "password")
    opened = _unpack_zip(data, "password")
    files = {f.filename: f.data for f in opened.files}
    assert files["ledger.txt"] == ZIP_MEMBERS["ledger.txt"] and not opened.refused
    # The PDF inside, locked with the same password, is decrypted too: one password per upload.
    assert "File with password" in _text(files["locked/password.pdf"])


def test_encrypted_members_beside_plain_ones_are_refused_alone_without_the_password() -> None:
    data = _aes_zip({"secret.txt": b"The vault code is kept in the blue binder."}, ZIP_PASSWORD, ZIP_MEMBERS)
    without = _unpack_zip(data, None)
    assert {f.filename for f in without.files} == set(ZIP_MEMBERS)
    (refused,) = without.refused
    assert refused.filename == "bundle.zip/secret.txt"
    assert "encrypted in the archive" in refused.reason and "send the archive's password" in refused.reason
    wrong = _unpack_zip(data, "wrong")
    assert {f.filename for f in wrong.files} == set(ZIP_MEMBERS)
    assert [r.filename for r in wrong.refused] == ["bundle.zip/secret.txt"]
    assert "password given does not open it" in wrong.refused[0].reason
    opened = _unpack_zip(data, ZIP_PASSWORD)
    assert {f.filename for f in opened.files} == {*ZIP_MEMBERS, "secret.txt"} and not opened.refused


def test_an_encrypted_zip_and_the_protected_pdf_in_it_open_with_the_one_password() -> None:
    memo = _locked((EXAMPLE_DOCS / "pdf" / "fake-memo.pdf").read_bytes(), ZIP_PASSWORD)
    data = _aes_zip({"memo.pdf": memo}, ZIP_PASSWORD)
    (opened,) = _unpack_zip(data, ZIP_PASSWORD).files
    assert opened.filename == "memo.pdf" and "3 trucks" in _text(opened.data)


def test_an_encrypted_nested_zip_without_the_password_is_refused_alone() -> None:
    inner = (TEST_DATA / "aes256-7zip.zip").read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("notes.txt", b"Plain notes about the audit.")
        archive.writestr("inner.zip", inner)
    result = _unpack_zip(buffer.getvalue(), None)
    assert [f.filename for f in result.files] == ["notes.txt"]
    assert [r.filename for r in result.refused] == ["inner.zip"] and "password" in result.refused[0].reason
    opened = _unpack_zip(buffer.getvalue(), ZIP_PASSWORD)
    assert {f.filename for f in opened.files} == {"notes.txt", "inner.zip/ledger.txt", "inner.zip/policies/leave.md"}


@pytest.mark.parametrize(
    ("method", "reason"), [("aes", "inflates past its declared size"), ("zipcrypto", "damaged in the archive")]
)
def test_an_encrypted_member_that_inflates_past_its_declared_size_is_refused(method: str, reason: str) -> None:
    """AES (AE-2) members carry no CRC: zipfile's cut at the declared size would pass unseen without a check.

    A ZipCrypto member is cut there too, and then fails its CRC, as an unencrypted one does.
    """
    if method == "aes":
        data = bytearray(_aes_zip({"bomb.txt": b"a" * 1_000_000}, ZIP_PASSWORD, {"ok.txt": b"Fine plain text."}))
        name, rest = "bomb.txt", ["ok.txt"]
    else:
        data = bytearray((TEST_DATA / "zipcrypto-infozip.zip").read_bytes())
        name, rest = "ledger.txt", ["policies/leave.md"]
    central = data.find(b"PK\x01\x02")
    assert data[central + 46 : central + 46 + len(name)] == name.encode()
    data[central + 24 : central + 28] = (10).to_bytes(4, "little")  # declared: 10 bytes uncompressed
    result = _unpack_zip(bytes(data), ZIP_PASSWORD)
    assert [f.filename for f in result.files] == rest
    assert [r.filename for r in result.refused] == [f"bundle.zip/{name}"]
    assert reason in result.refused[0].reason


def test_encrypted_members_are_decrypted_within_the_uploads_time_budget() -> None:
    data = (TEST_DATA / "zipcrypto-infozip.zip").read_bytes()
    result = _unpack_zip(data, ZIP_PASSWORD, timeout_s=0.001)  # no child process starts that fast
    assert not result.files and {r.filename for r in result.refused} == {f"bundle.zip/{m}" for m in ZIP_MEMBERS}
    assert all("RAGKEEP_LIMITS__DECRYPT_TIMEOUT_S" in r.reason for r in result.refused)
