"""The baseline query endpoint: what a LlamaIndex user would put behind FastAPI.

A ``VectorStoreIndex`` over an existing Chroma collection with ``HuggingFaceEmbedding``
(the same all-MiniLM-L6-v2 files), built once at start-up, and a query engine that
returns the retrieved chunks (``response_mode="no_text"``: no LLM, like ragkeep's
retrieve mode). Run by the benchmark with uvicorn; configured by environment:
``BASELINE_CHROMA_URL`` and ``BASELINE_COLLECTION``.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import chromadb
from fastapi import FastAPI
from llama_index.core import Settings, VectorStoreIndex
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.embeddings.huggingface import HuggingFaceEmbedding
from llama_index.vector_stores.chroma import ChromaVectorStore
from pydantic import BaseModel

from core.embedding import model_path

Settings.llm = None  # type: ignore[assignment]  # LlamaIndex's documented "no LLM" switch; its setter's type omits None

host, port = os.environ["BASELINE_CHROMA_URL"].removeprefix("http://").split(":")
collection = chromadb.HttpClient(host=host, port=int(port)).get_collection(os.environ["BASELINE_COLLECTION"])
index = VectorStoreIndex.from_vector_store(
    ChromaVectorStore(chroma_collection=collection),
    embed_model=HuggingFaceEmbedding(model_name=model_path("all-MiniLM-L6-v2"), device="cpu"),
)
app = FastAPI()


class Question(BaseModel):
    question: str
    top_k: int = 5


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@functools.cache
def query_engine(top_k: int) -> BaseQueryEngine:
    return index.as_query_engine(similarity_top_k=top_k, response_mode="no_text")


@app.post("/query")
def query(body: Question) -> dict[str, Any]:
    response = query_engine(body.top_k).query(body.question)
    return {
        "sources": [
            {"id": n.node.node_id, "score": n.score, "text": n.node.get_content(), "metadata": n.node.metadata}
            for n in response.source_nodes
        ]
    }
