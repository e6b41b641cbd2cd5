"""The ONNX Runtime backend computes the same vectors as sentence-transformers."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import embedding
from core.config import DEFAULT_EMBEDDING_MODEL, INT8_EMBEDDING_MODEL
from core.embedding import Embedder
from tests.conftest import DATASETS, TESTS

TEXTS = [
    "a",
    "What is the role of p53 in apoptosis?",
    *[
        f"{d['title']}\n\n{d['text']}"
        for d in map(json.loads, (DATASETS / "beir-scifact" / "corpus.jsonl").read_text().splitlines()[:12])
    ],
    "far beyond the model's window " * 200,  # truncated at 256 tokens
    "日本で梅雨がないのは北海道とどこか。",
]


@pytest.fixture(scope="module")
def backends() -> tuple[Embedder, Embedder]:
    return Embedder(backend="onnx", threads=2), Embedder(backend="torch", threads=2)


@pytest.mark.parametrize("batch_size", [1, 5, 32])
def test_onnx_and_torch_agree_whatever_the_batching(backends: tuple[Embedder, Embedder], batch_size: int) -> None:
    onnx, torch = backends
    onnx.batch_size = torch.batch_size = batch_size
    a, b = onnx.embed(TEXTS), torch.embed(TEXTS)
    assert a.shape == b.shape == (len(TEXTS), 384) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert float((a * b).sum(axis=1).min()) > 0.9999


def test_padding_does_not_change_a_vector(backends: tuple[Embedder, Embedder]) -> None:
    """A short text batched with long ones (padded) gets the vector it gets alone."""
    onnx, _ = backends
    onnx.batch_size = 32
    alone = onnx.embed(["short one"])[0]
    padded = onnx.embed(["short one", "tiny", "a somewhat longer sentence that forces padding " * 3])[0]
    assert float(alone @ padded) > 0.99999


def test_token_counts_match(backends: tuple[Embedder, Embedder]) -> None:
    onnx, torch = backends
    for text in TEXTS:
        assert onnx.count_tokens(text) == torch.count_tokens(text)
    assert onnx.count_tokens(TEXTS[-2]) == 256


def test_a_query_is_embedded_and_counted_as_in_a_batch(backends: tuple[Embedder, Embedder]) -> None:
    """``embed_query`` (one tokenization for the vector and the count) agrees with ``embed`` and ``count_tokens``."""
    for embedder in backends:
        for text in (TEXTS[0], TEXTS[-2]):  # a short text and one past the model's window
            vector, tokens = embedder.embed_query(text)
            assert vector.shape == (384,) and vector.dtype == np.float32
            assert float(vector @ embedder.embed([text])[0]) > 0.99999
            assert tokens == embedder.count_tokens(text)


def test_the_int8_model_is_its_own_model_and_every_process_gets_the_same_one(
    backends: tuple[Embedder, Embedder],
) -> None:
    """Close to the float model, not equal to it; two loads (an API and a worker) agree exactly."""
    onnx, torch = backends
    first = Embedder("all-MiniLM-L6-v2-int8", backend="torch", threads=2)  # int8 always runs on ONNX Runtime
    second = Embedder("all-MiniLM-L6-v2-int8", backend="onnx", threads=1)
    a, b = first.embed(TEXTS), second.embed(TEXTS)
    assert a.shape == (len(TEXTS), 384) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.allclose(a, b, atol=1e-5)
    cosine = (a * onnx.embed(TEXTS)).sum(axis=1)
    assert float(cosine.min()) > 0.98 and float(cosine.mean()) > 0.99
    assert float(cosine.max()) < 0.9999  # really quantized
    assert first.count_tokens(TEXTS[-2]) == torch.count_tokens(TEXTS[-2]) == 256


def test_unknown_models_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported embedding model"):
        Embedder("all-MiniLM-L6-v2-int4").embed(["x"])


def test_graphs_are_exported_once_per_data_folder_and_read_by_every_later_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Every process exported the model (about 4 s of CPU) and quantized it (1.7 s) on its own."""
    texts = TEXTS[:6]
    fresh = {model: Embedder(model).embed(texts) for model in (DEFAULT_EMBEDDING_MODEL, INT8_EMBEDDING_MODEL)}
    for model in (DEFAULT_EMBEDDING_MODEL, INT8_EMBEDDING_MODEL):
        assert np.array_equal(Embedder(model, graph_cache=tmp_path).embed(texts), fresh[model])
    graphs = sorted(p.name.split("-")[-2] for p in tmp_path.glob("*.onnx"))
    assert graphs == ["float", "int8"] and not list(tmp_path.glob("*.partial"))

    def no_export(*_: object) -> bytes:
        raise AssertionError("exported again although the data folder holds the graph")

    monkeypatch.setattr(embedding, "_export_onnx", no_export)
    monkeypatch.setattr(embedding, "_quantize_int8", no_export)
    for model in (DEFAULT_EMBEDDING_MODEL, INT8_EMBEDDING_MODEL):  # a later process: read, same vectors
        assert np.array_equal(Embedder(model, graph_cache=tmp_path).embed(texts), fresh[model])
    monkeypatch.undo()

    for path in tmp_path.glob("*.onnx"):  # a damaged file is exported again, not served
        path.write_bytes(b"not a graph")
    with caplog.at_level(logging.WARNING, logger="core.embedding"):
        assert np.array_equal(
            Embedder(INT8_EMBEDDING_MODEL, graph_cache=tmp_path).embed(texts), fresh[INT8_EMBEDDING_MODEL]
        )
    assert "did not load" in caplog.text

    monkeypatch.setattr(embedding, "GRAPH_REVISION", embedding.GRAPH_REVISION + 1)  # a changed export: a new file
    Embedder(graph_cache=tmp_path).embed(texts[:1])
    assert len(list(tmp_path.glob("*float*.onnx"))) == 2


def test_a_process_that_finds_its_graph_never_imports_torch(tmp_path: Path) -> None:
    """torch (about 470 MB of a process's memory) was imported by every process, to export the graph."""
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from core.embedding import Embedder\n"
        f"Embedder(graph_cache=Path({str(tmp_path)!r})).embed(['warm'])\n"
        "print('torch' in sys.modules)\n"
    )
    runs = [
        subprocess.run([sys.executable, "-c", script], cwd=TESTS.parent, capture_output=True, text=True, check=True)
        for _ in range(2)
    ]
    assert [run.stdout.split()[-1] for run in runs] == ["True", "False"]  # exported once, then only read


def test_the_start_up_step_builds_both_models_graphs(tmp_path: Path) -> None:
    """The int8 graph was quantized by every worker process at once, in the first int8 collection's tasks."""
    subprocess.run([sys.executable, "-m", "core.embedding", str(tmp_path)], cwd=TESTS.parent, check=True)
    assert sorted(p.name.split("-")[-2] for p in tmp_path.glob("*.onnx")) == ["float", "int8"]
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from core.config import INT8_EMBEDDING_MODEL\n"
        "from core.embedding import Embedder\n"
        f"Embedder(INT8_EMBEDDING_MODEL, graph_cache=Path({str(tmp_path)!r})).embed(['warm'])\n"
        "print('torch' in sys.modules, 'onnxruntime.quantization' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=TESTS.parent, capture_output=True, text=True, check=True)
    assert run.stdout.split()[-2:] == ["False", "False"]
