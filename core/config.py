"""Per-collection configuration: what the API accepts and what ingest/ obeys.

Pydantic models with ``extra="forbid"`` so that a misspelt key is a 422 instead of a
silently ignored setting.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
EMBEDDING_MODELS = (DEFAULT_EMBEDDING_MODEL,)


class IngestionConfig(BaseModel):
    """How documents become chunks. Its hash keys the parsed-chunk cache."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Literal["fast", "auto"] = Field(
        default="fast", description="Unstructured partition strategy (hi_res/OCR need models not installed)."
    )
    chunker: Literal["by_title", "sentence"] = Field(
        default="by_title", description="Unstructured chunk_by_title, or LlamaIndex's SentenceSplitter."
    )
    max_characters: int = Field(default=1000, ge=100, le=8000, description="Hard maximum chunk size.")
    new_after_n_chars: int | None = Field(
        default=None, ge=50, le=8000, description="Soft maximum (by_title); default 80% of max_characters."
    )
    overlap: int = Field(default=0, ge=0, le=2000, description="Characters repeated between split chunks.")
    embedding_model: Literal["all-MiniLM-L6-v2"] = "all-MiniLM-L6-v2"

    @model_validator(mode="after")
    def _consistent(self) -> IngestionConfig:
        if self.overlap * 2 > self.max_characters:
            raise ValueError("overlap must be at most half of max_characters")
        if self.new_after_n_chars is not None and self.new_after_n_chars > self.max_characters:
            raise ValueError("new_after_n_chars must not exceed max_characters")
        return self

    def parse_hash(self) -> str:
        """Hash of the settings that change chunk text (not the embedding model)."""
        fields = self.model_dump(exclude={"embedding_model"})
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


class CollectionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ingestion: IngestionConfig = IngestionConfig()
    publish_policy: Literal["auto", "manual"] = Field(
        default="auto", description="auto: a successfully built version goes live; manual: publish by hand."
    )
    keep_versions: int = Field(default=5, ge=0, le=1000, description="Non-live versions kept queryable.")
