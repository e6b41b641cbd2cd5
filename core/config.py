"""Per-collection configuration: what the API accepts and what ingest/ obeys.

Pydantic models with ``extra="forbid"`` so that a misspelt key is a 422 instead of a
silently ignored setting.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
INT8_SUFFIX = "-int8"
INT8_EMBEDDING_MODEL = DEFAULT_EMBEDDING_MODEL + INT8_SUFFIX
EMBEDDING_MODELS = (DEFAULT_EMBEDDING_MODEL, INT8_EMBEDDING_MODEL)
EmbeddingModel = Literal["all-MiniLM-L6-v2", "all-MiniLM-L6-v2-int8"]


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
    embedding_model: EmbeddingModel = Field(
        default="all-MiniLM-L6-v2",
        description="all-MiniLM-L6-v2, or its int8 quantization (about twice as fast on CPU; "
        "a different model: changing it re-embeds the collection).",
    )
    pii: Literal["off", "flag", "redact"] = Field(
        default="off", description="E-mails, phones, cards, IBANs: flag them, or redact before embedding."
    )
    context: Literal["off", "title", "title_section"] = Field(
        default="title_section",
        description="Document context embedded and BM25-indexed with every chunk (contextual chunk headers): "
        "title: the document's title and file name; title_section: also the heading path above the chunk. "
        "Citations show the chunk's own text.",
    )
    context_metadata: tuple[Annotated[str, StringConstraints(min_length=1, max_length=64)], ...] = Field(
        default=(),
        max_length=20,
        description="Upload metadata keys whose values join the context header (e.g. company, quarter).",
    )
    pdf_tables: Literal["pdfminer", "pdfium_rows"] = Field(
        default="pdfium_rows",
        description="PDF pages whose table rows pdfminer reads column by column (a row's label and numbers "
        "apart): pdfium_rows reads them from PDFium's text lines, each table's rows kept whole with their "
        "column headers; pdfminer keeps pdfminer's reading (versions built before this option).",
    )
    injection: Literal["off", "flag", "drop"] = Field(
        default="flag",
        description="Instruction-like text (prompt injection) in chunks: flag it (LLMs get such chunks as "
        "quoted data, answers citing them a warning), or drop those chunks from versions.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> IngestionConfig:
        if self.overlap * 2 > self.max_characters:
            raise ValueError("overlap must be at most half of max_characters")
        if self.new_after_n_chars is not None and self.new_after_n_chars > self.max_characters:
            raise ValueError("new_after_n_chars must not exceed max_characters")
        return self

    def parse_hash(self) -> str:
        """Hash of the settings that change chunk text (not the embedding model).

        Not the injection policy either: cached chunks are what the parser made, and the policy
        is applied to them whenever a version is assembled, so changing it re-uses the cache
        and never serves chunks screened under the old policy. Nor the context mode: headers are
        composed from the cached chunks' metadata when they are embedded and indexed.
        """
        excluded = {"embedding_model", "injection", "context", "context_metadata"}
        if self.pdf_tables == "pdfminer":  # what every chunk cached before the option was parsed with
            excluded.add("pdf_tables")
        fields = self.model_dump(exclude=excluded)
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def recorded(cls, config: Mapping[str, Any]) -> IngestionConfig:
        """The config a version recorded; a field it lacks is as versions were before the field existed."""
        return cls.model_validate({"pdf_tables": "pdfminer", **config})


DEFAULT_PROMPT_TEMPLATE = """You answer questions for a knowledge base. Use only the numbered context passages below.
Cite the passage numbers that support each statement in square brackets, like [1] or [2][3].
If the passages do not contain the answer, reply with exactly NOT_IN_CONTEXT and nothing else.

Context:
{context}

Question: {question}
Answer:"""


# check_prompt_template as a regular expression, for the OpenAPI document: text, doubled braces
# and the two slots, with both slots present. (The validator stays: its messages say what is wrong.)
_SLOT_FREE = r"(?:[^{}]|\{\{|\}\}|\{context\}|\{question\})*"
PROMPT_TEMPLATE_PATTERN = (
    rf"^{_SLOT_FREE}(?:\{{context\}}{_SLOT_FREE}\{{question\}}|\{{question\}}{_SLOT_FREE}\{{context\}}){_SLOT_FREE}$"
)


def check_prompt_template(template: str) -> str:
    """A prompt template must use {context} and {question} and no other slot."""
    missing = [slot for slot in ("{context}", "{question}") if slot not in template]
    if missing:
        raise ValueError(f"prompt_template must contain {' and '.join(missing)}")
    try:
        template.format(context="", question="")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"prompt_template has a stray brace or unknown slot: {exc}") from None
    return template


class RetrievalConfig(BaseModel):
    """How /query finds chunks in a version."""

    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(default=5, ge=1, le=50, description="Chunks retrieved when the request gives no top_k.")
    # Defaults chosen with bench/retrieval_lab.py on the visible sets' tuning splits (SciFact train,
    # half of ARAGOG, FinanceBench and JSQuAD): see the README's retrieval benchmarks.
    hybrid: bool = Field(default=True, description="BM25 (with CJK bigrams) fused with dense retrieval.")
    min_score: float | None = Field(
        default=None, ge=-1.0, le=1.0, description="Drop dense hits below this cosine similarity."
    )
    fusion: Literal["rrf", "minmax"] = Field(
        default="minmax",
        description="How hybrid merges the rankings: rrf (weighted reciprocal rank) or minmax (each list's "
        "scores scaled to [0, 1], then a weighted sum).",
    )
    dense_weight: float | None = Field(
        default=None,
        ge=0.0,
        le=10.0,
        description="Weight of the dense ranking in hybrid; null: by the question's script, 0.6, or 0.3 for a "
        "Chinese, Japanese or Korean question (the embedding models read English).",
    )
    bm25_weight: float | None = Field(
        default=None,
        ge=0.0,
        le=10.0,
        description="Weight of the BM25 ranking in hybrid; null: 1 - the automatic dense weight.",
    )
    title_weight: float | None = Field(
        default=None,
        ge=0.0,
        le=10.0,
        description="minmax fusion only: added, times the question's BM25 match with the chunk's document "
        "title (0-1; the title is the chunk header's `Document:` line) times 1 - 1/n for a document of n chunks, "
        "to the fused score; null: automatic (0.2).",
    )
    max_chunks_per_document: int | None = Field(
        default=2, ge=1, le=50, description="At most this many of the top_k chunks from one document (null: no cap)."
    )

    @model_validator(mode="after")
    def _title_weight_needs_scores(self) -> RetrievalConfig:
        if self.title_weight and self.fusion == "rrf":
            raise ValueError("title_weight applies to fusion: minmax only (reciprocal-rank fusion adds no scores)")
        return self


METRICS = (
    "context_precision",
    "context_recall",
    "llm_context_precision",
    "llm_context_recall",
    "faithfulness",
    "answer_relevancy",
    # ragkeep's own, from each answer's confidence, abstention and grounding (eval.abstention)
    "abstention_precision",
    "abstention_recall",
    "false_answer_rate",
    "unsupported_answer_rate",
    "groundedness",
)
Metric = Literal[
    "context_precision",
    "context_recall",
    "llm_context_precision",
    "llm_context_recall",
    "faithfulness",
    "answer_relevancy",
    "abstention_precision",
    "abstention_recall",
    "false_answer_rate",
    "unsupported_answer_rate",
    "groundedness",
]


def _default_gate() -> dict[Metric, float]:
    return {"context_precision": 0.05, "context_recall": 0.05, "faithfulness": 0.05}


class EvaluationConfig(BaseModel):
    """Which golden set and metrics evaluate the collection, and the promotion gate."""

    model_config = ConfigDict(extra="forbid")

    golden_set_revision: int | None = Field(default=None, ge=1, description="Pin a golden set; default the newest.")
    gate: dict[Metric, float] = Field(
        default_factory=_default_gate,
        description="publish_policy gated: largest allowed drop of each metric against the live version (for "
        "false_answer_rate and unsupported_answer_rate, lower is better: largest allowed rise).",
    )


class AnswerConfig(BaseModel):
    """How /query answers: when it declines a question its knowledge does not cover (issue 18)."""

    model_config = ConfigDict(extra="forbid")

    abstain: Literal["auto", "never"] | Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = Field(
        default="auto",
        description="Decline (answer_mode abstained) when the answer's confidence is below a threshold: auto (the "
        "version's calibrated threshold, else the built-in default), never, or a threshold in [0, 1].",
    )


class CollectionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ingestion: IngestionConfig = IngestionConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    prompt_revision: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        description="Pin a stored prompt revision (POST /collections/{name}/prompts); default: prompt_template.",
    )
    prompt_template: str = Field(
        default=DEFAULT_PROMPT_TEMPLATE,
        min_length=20,
        max_length=8000,
        description="LLM prompt; must contain {context} and {question}.",
        json_schema_extra={"pattern": PROMPT_TEMPLATE_PATTERN},
    )
    publish_policy: Literal["auto", "manual", "gated"] = Field(
        default="auto",
        description="auto: a built version goes live; manual: publish by hand; "
        "gated: evaluated first, live only if no gated metric regresses.",
    )
    evaluation: EvaluationConfig = EvaluationConfig()
    answer: AnswerConfig = AnswerConfig()
    keep_versions: int = Field(default=5, ge=0, le=1000, description="Non-live versions kept queryable.")

    @model_validator(mode="before")
    @classmethod
    def _top_level_pii(cls, data: Any) -> Any:
        """``config.pii`` and ``config.injection`` are shorthands for ``config.ingestion.pii`` and ``.injection``."""
        for key in ("pii", "injection"):
            if isinstance(data, dict) and key in data:
                data = dict(data)
                ingestion = dict(data.get("ingestion") or {})
                ingestion[key] = data.pop(key)
                data["ingestion"] = ingestion
        return data

    @model_validator(mode="after")
    def _template_has_slots(self) -> CollectionConfig:
        check_prompt_template(self.prompt_template)
        return self
