"""An email's headers and attachments (.eml through the standard library, .msg through python-oxmsg).

The one ingest module that reads emails itself (Unstructured reads their bodies in
``ingest/partition.py``). An email is ingested as its own document — its headers and body —
and each attachment becomes its own document linked to the email (``release/intake.py``),
so an attachment that cannot be read never takes the email's text down with it.
"""

from __future__ import annotations

import codecs
import email
import email.policy
import io
from dataclasses import dataclass
from email.message import EmailMessage, Message

from core.filetypes import FileKind

_ENCRYPTED_TYPES = ("multipart/encrypted", "application/pkcs7-mime", "application/x-pkcs7-mime")
_HEADERS = ("Subject", "From", "To", "Cc", "Date")


@dataclass(frozen=True)
class Attachment:
    """One attachment: its own file name (as the sender named it) and bytes."""

    filename: str
    data: bytes
    content_type: str = "application/octet-stream"  # as the sender declared it


@dataclass(frozen=True)
class EmailParts:
    header_text: str  # "Subject: …\nFrom: …": ingested even when the body is empty
    attachments: list[Attachment]
    encrypted: bool


def _text(value: object) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def _header_text(pairs: list[tuple[str, object]]) -> str:
    return "\n".join(f"{name}: {_text(value)}" for name, value in pairs if _text(value))


def _collect(part: Message, found: list[Attachment]) -> None:
    """Attachments in document order; a message/rfc822 part (forwarded, digested) is one email, not opened."""
    if part.get_content_type() == "message/rfc822":
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
        if isinstance(inner, Message):
            subject = _text(inner.get("Subject")) or f"message-{len(found) + 1}"
            found.append(Attachment(f"{subject[:80]}.eml", inner.as_bytes(), "message/rfc822"))
        return
    if part.is_multipart():
        for sub in part.get_payload():
            if isinstance(sub, Message):
                _collect(sub, found)
        return
    disposition = part.get_content_disposition()
    name = part.get_filename()
    # An unnamed inline or undisposed part is the body (Unstructured reads it), not an attachment.
    if (
        disposition == "attachment"
        or (name and disposition == "inline")
        or (name and part.get_content_maintype() != "text")
    ):
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes) and payload:
            found.append(Attachment(name or f"attachment-{len(found) + 1}", payload, part.get_content_type()))


def _eml_attachments(message: Message) -> list[Attachment]:
    found: list[Attachment] = []
    _collect(message, found)
    return found


def _eml(data: bytes) -> EmailParts:
    # The standard library reads an email's bytes as ASCII: a UTF-16 email first becomes UTF-8.
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        data = data.decode("utf-16", "replace").encode("utf-8")
    elif data[:1] == b"\0" or data[1:2] == b"\0":
        data = data.decode("utf-16-be" if data[:1] == b"\0" else "utf-16-le", "replace").encode("utf-8")
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    encrypted = any(part.get_content_type() in _ENCRYPTED_TYPES for part in message.walk())
    decoded = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(decoded, EmailMessage)
    pairs: list[tuple[str, object]] = []
    for name in _HEADERS:
        try:
            pairs.append((name, decoded.get(name)))
        except (ValueError, IndexError, TypeError):  # a malformed header: its raw text
            pairs.append((name, message.get(name)))
    attachments = [] if encrypted else _eml_attachments(message)
    return EmailParts(_header_text(pairs), attachments, encrypted)


def _msg(data: bytes) -> EmailParts:
    from oxmsg import Message as OutlookMessage

    message = OutlookMessage.load(io.BytesIO(data))
    headers = message.message_headers or {}
    names = [a.file_name or "" for a in message.attachments]
    encrypted = any(t in headers.get("Content-Type", "").lower() for t in _ENCRYPTED_TYPES) or any(
        n.endswith((".pgp-encrypted", ".p7m")) for n in names
    )
    pairs: list[tuple[str, object]] = [
        ("Subject", message.subject),
        ("From", message.sender),
        ("To", headers.get("To")),
        ("Cc", headers.get("Cc")),
        ("Date", headers.get("Date") or message.sent_date),
    ]
    attachments = [
        Attachment(a.file_name or f"attachment-{n}", a.file_bytes, a.mime_type or "application/octet-stream")
        for n, a in enumerate(message.attachments)
        if not encrypted and a.file_bytes
    ]
    return EmailParts(_header_text(pairs), attachments, encrypted)


def email_parts(data: bytes, kind: FileKind) -> EmailParts:
    """The headers as text, the attachments, and whether the email is encrypted (S/MIME or PGP).

    Raises ``ValueError`` when the bytes are not an email of ``kind``.
    """
    if kind.kind == "msg":
        try:
            return _msg(data)
        except Exception as exc:  # python-oxmsg raises anything on a damaged container
            raise ValueError(f"not a readable Outlook message ({type(exc).__name__}: {exc})") from exc
    return _eml(data)
