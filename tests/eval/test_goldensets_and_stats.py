from __future__ import annotations

import json

import pytest

from core.errors import InvalidInput
from eval.goldensets import parse_golden_set
from eval.stats import aggregate, gate_decision, paired_delta
from tests.conftest import DATASETS


def test_jsonl_golden_set_with_optional_fields() -> None:
    data = (
        b'{"question": "Q1?", "reference_answer": "A1", "reference_documents": ["a.pdf"], "tags": ["x"]}\n\n'
        b'{"question": "Q2?", "reference_contexts": ["ctx"]}\n'
    )
    parsed = parse_golden_set(data)
    assert parsed.source_format == "jsonl" and [i.question for i in parsed.items] == ["Q1?", "Q2?"]
    assert parsed.items[0].reference_documents == ["a.pdf"] and parsed.items[1].reference_contexts == ["ctx"]


def test_llamaindex_labelled_rag_dataset_is_accepted() -> None:
    parsed = parse_golden_set((DATASETS / "llamaindex-blockchain-solana" / "rag_dataset.json").read_bytes())
    assert parsed.source_format == "llamaindex" and len(parsed.items) == 58
    assert parsed.items[0].reference_contexts and parsed.items[0].reference_answer


def test_aragog_jsonl_loads() -> None:
    lines = (DATASETS / "aragog-arxiv-qa" / "qa.jsonl").read_text().splitlines()
    data = "\n".join(
        json.dumps({**json.loads(x), "reference_documents": [json.loads(x)["source_doc"]]}) for x in lines
    ).encode()
    assert len(parse_golden_set(data).items) == 107


def test_malformed_lines_are_reported_by_number_and_nothing_is_kept() -> None:
    data = b'{"question": "fine"}\n{broken\n{"reference_answer": "no question"}\n[1, 2]\n'
    with pytest.raises(InvalidInput) as info:
        parse_golden_set(data)
    detail = info.value.detail
    assert "line 2: invalid JSON" in detail and "line 3: question" in detail and "line 4: not a JSON object" in detail
    assert "line 1" not in detail


@pytest.mark.parametrize("data", [b"", b"   \n", b"\xff\xfe\x00garbage"])
def test_empty_or_binary_golden_sets_are_rejected(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_golden_set(data)


def test_aggregate_counts_unmeasured_and_never_averages_them() -> None:
    result = aggregate([1.0, 0.0, None, float("nan"), 0.5], samples=500)
    assert result["measured"] == 3 and result["not_measured"] == 2 and result["mean"] == pytest.approx(0.5)
    assert 0.0 <= result["ci_low"] <= 0.5 <= result["ci_high"] <= 1.0
    assert aggregate([None, None], samples=100)["mean"] is None


def test_paired_delta_and_gate() -> None:
    base = {i: 0.9 for i in range(20)}
    worse = {i: 0.9 if i % 2 else 0.5 for i in range(20)}
    delta = paired_delta("context_precision", base, worse, samples=1000)
    assert delta.pairs == 20 and delta.delta == pytest.approx(-0.2) and delta.ci_high < 0
    passed, reasons = gate_decision([delta], {"context_precision": 0.05})
    assert not passed and "context_precision dropped 0.200" in reasons[0]
    same = paired_delta("context_precision", base, dict(base), samples=1000)
    assert gate_decision([same], {"context_precision": 0.05})[0]
    unmeasured = paired_delta("faithfulness", {1: None}, {1: None}, samples=100)
    assert unmeasured.delta is None and gate_decision([unmeasured], {"faithfulness": 0.05})[0]
