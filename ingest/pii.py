"""Personal data in chunk text: e-mail addresses, phone numbers, card numbers (Luhn-checked), IBANs.

``redact`` replaces each finding with a placeholder before anything is embedded, so the
raw value never reaches Chroma; ``flag`` leaves the text and records what was found.
Candidates are validated (Luhn for cards, ISO 7064 mod 97 for IBANs, 9-15 digits for
phones) so that ordinary numbers in documents are left alone.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

PLACEHOLDERS = {"iban": "[IBAN]", "card": "[CARD]", "email": "[EMAIL]", "phone": "[PHONE]"}

_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}(?![\w])")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _valid_iban(text: str) -> bool:
    compact = text.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def _valid_card(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and _luhn(digits)


def _valid_phone(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    return 9 <= len(digits) <= 15 and (text.startswith("+") or "(" in text or len(re.findall(r"[ .-]", text)) >= 2)


_DETECTORS: list[tuple[str, re.Pattern[str], Callable[[str], bool]]] = [
    ("iban", _IBAN, _valid_iban),
    ("card", _CARD, _valid_card),
    ("email", _EMAIL, lambda _: True),
    ("phone", _PHONE, _valid_phone),
]


@dataclass(frozen=True)
class Scan:
    text: str
    counts: dict[str, int]


def scan(text: str, redact: bool) -> Scan:
    """Find personal data in ``text``; with ``redact`` return the text with placeholders instead."""
    counts: Counter[str] = Counter()
    for kind, pattern, valid in _DETECTORS:

        def replace(match: re.Match[str], kind: str = kind, valid: Callable[[str], bool] = valid) -> str:
            if not valid(match.group()):
                return match.group()
            counts[kind] += 1
            return PLACEHOLDERS[kind] if redact else match.group()

        replaced = pattern.sub(replace, text)
        if redact:
            text = replaced
    return Scan(text, dict(counts))


def placeholder_counts(text: str) -> dict[str, int]:
    """Findings already redacted in ``text`` (cached chunks keep only the placeholders)."""
    return {kind: text.count(mark) for kind, mark in PLACEHOLDERS.items() if mark in text}
