from __future__ import annotations

import pytest

from ingest.pii import placeholder_counts, scan

TEXT = (
    "Write to jane.doe@example.com or call +1 415-555-0132 or (030) 1234 5678. "
    "Card 4111 1111 1111 1111. IBAN DE89 3704 0044 0532 0130 00."
)


def test_redaction_replaces_every_kind() -> None:
    result = scan(TEXT, redact=True)
    assert result.counts == {"email": 1, "phone": 2, "card": 1, "iban": 1}
    for raw in ("jane.doe", "415-555", "4111", "DE89", "1234 5678"):
        assert raw not in result.text
    assert placeholder_counts(result.text) == result.counts


def test_flagging_keeps_the_text() -> None:
    result = scan(TEXT, redact=False)
    assert result.text == TEXT and result.counts["email"] == 1


@pytest.mark.parametrize(
    "text",
    [
        "The plant opened in 2019 with 1200 staff.",
        "Table: 12 34 56",
        "Card 4111 1111 1111 1112 fails Luhn.",
        "Order number 123456789",
        "IBAN DE00 3704 0044 0532 0130 00 has a bad checksum.",
        "Version 1.2.3.4 released",
    ],
)
def test_ordinary_numbers_are_left_alone(text: str) -> None:
    assert scan(text, redact=True).text == text
