"""SMTP transport for owner reports. The only module that imports ``smtplib``."""

from __future__ import annotations

import smtplib
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import make_msgid
from typing import cast

from core.settings import SMTPSettings

# What ``send`` raises when the server cannot take the message (worth trying again later).
SEND_ERRORS: tuple[type[Exception], ...] = (OSError, smtplib.SMTPException)


def build_message(
    sender: str,
    recipients: Sequence[str],
    subject: str,
    text: str,
    html: str,
    inline_png: bytes | None = None,
    cid: str | None = None,
) -> EmailMessage:
    """multipart/alternative (text + HTML); the HTML part carries the chart inline by Content-ID.

    ``html`` refers to the image as ``cid:<cid>``.
    """
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "ragkeep")
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    if inline_png is not None and cid is not None:
        html_part = cast(EmailMessage, message.get_payload()[1])  # type: ignore[index]
        html_part.add_related(inline_png, maintype="image", subtype="png", cid=f"<{cid}>", filename="trend.png")
    return message


def send(settings: SMTPSettings, message: EmailMessage) -> None:
    """Deliver ``message``; raises ``smtplib.SMTPException`` or ``OSError`` on failure."""
    with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_s) as smtp:
        if settings.starttls:
            smtp.starttls()
        if settings.username:
            smtp.login(settings.username, settings.password)
        smtp.send_message(message)
