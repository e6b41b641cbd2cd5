"""Request and response bodies of the REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import Query
from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StringConstraints, field_validator

from core.config import PROMPT_TEMPLATE_PATTERN, CollectionConfig, check_prompt_template
from eval.gaps import GapCluster
from eval.stats import MetricDelta
from query.engine import Citation
from query.evidence import Evidence
from query.grounding import Grounding

CollectionName = Annotated[
    str, StringConstraints(min_length=3, max_length=48, pattern=r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])$")
]
Owners = Annotated[list[EmailStr], Field(max_length=50)]

T = TypeVar("T")
MAX_INT = 2**31 - 1  # catalog integers are 32-bit on PostgreSQL and must fit SQLite's 64 bits
Offset = Annotated[int, Query(ge=0, le=MAX_INT, description="Items to skip.")]


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int


class CollectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: CollectionName
    description: Annotated[str, Field(max_length=2000)] = ""
    owners: Owners = []
    config: CollectionConfig = CollectionConfig()


class CollectionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: Annotated[str, Field(max_length=2000)] | None = None
    owners: Owners | None = None
    config: dict[str, Any] | None = Field(
        default=None, description="Partial config, merged into the current one (nested objects key by key)."
    )


class CollectionRead(BaseModel):
    name: str
    description: str
    owners: list[str]
    config: CollectionConfig
    live_version: int | None
    document_count: int
    created_at: datetime
    updated_at: datetime


class UploadedDocument(BaseModel):
    id: str
    filename: str
    sha256: str
    revision: int
    status: str
    changed: bool = Field(description="False when the bytes repeat the current revision (a no-op).")


class RefusedFile(BaseModel):
    filename: str = Field(description="A member of an uploaded .zip (its path inside) or an email's attachment.")
    reason: str


class UploadAccepted(BaseModel):
    job_id: str
    documents: list[UploadedDocument]
    refused: list[RefusedFile] = Field(
        default_factory=list,
        description="Archive members and email attachments that were not taken, each with its reason; "
        "the rest of the upload went ahead.",
    )


class InjectionFindings(BaseModel):
    chunks: int = Field(default=0, description="Chunks with instruction-like text (possible prompt injection).")
    dropped: int = Field(default=0, description="Of those, left out of versions (config injection drop).")
    patterns: dict[str, int] = Field(default_factory=dict, description="Chunks per detector pattern.")


class RevisionRead(BaseModel):
    number: int
    sha256: str
    size: int
    kind: str
    status: str
    error: str | None
    chunk_count: int | None
    pii: dict[str, int] = Field(default_factory=dict, description="Personal data found (config pii flag/redact).")
    injection: InjectionFindings = Field(
        default_factory=InjectionFindings,
        description="Chunks with instruction-like text (config injection flag/drop).",
    )
    metadata: dict[str, Any]
    created_at: datetime
    parsed_at: datetime | None


class DocumentRead(BaseModel):
    id: str
    filename: str
    status: str
    error: str | None
    sha256: str | None
    revision: int | None
    chunk_count: int | None
    created_at: datetime
    updated_at: datetime
    revisions: list[RevisionRead] = []


class DocumentDeleted(BaseModel):
    id: str
    filename: str
    build_job_id: str | None


class Progress(BaseModel):
    done: int
    total: int


class JobRead(BaseModel):
    id: str
    kind: str
    collection: str | None
    status: str
    progress: Progress
    ocr_pages: Progress | None = Field(
        default=None,
        description="Ingest jobs with images or scanned pages: pages OCR has read, of the pages it has to read.",
    )
    error: str | None
    result: dict[str, Any]
    trigger: str | None = Field(default=None, description="What started it: 'change' or 'manual' for builds.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int


class VersionChanges(BaseModel):
    added: list[str] = []
    replaced: list[str] = []
    removed: list[str] = []
    skipped: list[dict[str, str]] = []


class VersionRead(BaseModel):
    number: int
    state: str
    document_count: int
    chunk_count: int
    embedded_chunk_count: int
    reused_chunk_count: int
    embedding_model: str
    ingestion_config: dict[str, Any]
    changes: VersionChanges
    error: str | None
    build_seconds: float | None
    chroma_collection: str | None
    base_version: int | None = Field(
        default=None,
        description="A delta version: its Chroma collection holds only the chunks added or changed since "
        "this full version, whose collection it also reads.",
    )
    created_at: datetime
    built_at: datetime | None
    published_at: datetime | None
    dropped_at: datetime | None
    job_id: str | None
    gate: dict[str, Any] = Field(default_factory=dict, description="publish_policy gated: the decision.")


class BuildAccepted(BaseModel):
    job_id: str


class ErrorBody(BaseModel):
    error: str
    detail: str


def error_responses(*codes: int, json_only: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entry documenting the error body for each status code.

    ``json_only`` for routes whose success is not JSON (HTML pages): FastAPI would
    document their errors under the success media type.
    """
    if json_only:
        schema = {"application/json": {"schema": ErrorBody.model_json_schema()}}
        return {code: {"description": "Error", "content": schema} for code in codes}
    return {code: {"model": ErrorBody} for code in codes}


# The limit is the deployment's (RAGKEEP_QUERY__MAX_TOP_K), checked by the query engine with a
# message that names it; the OpenAPI document states it as this deployment's maximum.
TopK = Annotated[int, Field(ge=1, description="Chunks to retrieve (at most query.max_top_k).")]
FilterScalar = str | int | float | bool


def _has_text(value: str) -> str:
    # Python's notion of whitespace (it includes the separators U+001C-U+001F), as the engine's.
    if not value.strip():
        raise ValueError("question is empty")
    return value


Question = Annotated[
    str,
    StringConstraints(min_length=1, max_length=4000, strip_whitespace=True),
    AfterValidator(_has_text),
    Field(json_schema_extra={"pattern": r"\S"}),
]


class QueryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    collection: CollectionName
    question: Question
    top_k: TopK | None = None
    version: Annotated[int, Field(ge=1, le=MAX_INT)] | None = Field(
        default=None, description="Pin a version; default live."
    )
    filters: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=64)],
        FilterScalar | Annotated[list[FilterScalar], Field(min_length=1, max_length=100)],
    ] = Field(
        default_factory=dict, description="Equality filters on chunk metadata (a list matches any of its values)."
    )
    mode: Literal["answer", "retrieve"] = "answer"
    stream: bool = Field(default=False, description="Server-Sent Events: `token` events, then `done`.")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    embedding_tokens: int
    cost: float = Field(default=0.0, description="Estimated from RAGKEEP_PRICES (0 for unpriced models).")


class Latency(BaseModel):
    retrieve: float
    generate: float
    ground: float = Field(default=0.0, description="Checking the answer's sentences against its passages (grounding).")
    total: float


class QueryRead(BaseModel):
    query_id: str
    collection: str
    version: int
    answer: str
    answer_mode: Literal["llm", "extractive", "abstained", "none"] = Field(
        description="abstained: the passages do not support an answer (the answer is a fixed statement saying so, "
        "the closest passages are still cited)."
    )
    citations: list[Citation]  # query.engine's own type, rendered as is
    usage: Usage
    latency_ms: Latency
    warnings: list[str] = []
    confidence: float = Field(
        default=0.0, ge=0.0, le=1.0, description="How strongly the retrieved passages support an answer (0-1)."
    )
    evidence: Evidence | None = Field(
        default=None, description="The retrieval signals the confidence is computed from (query.evidence)."
    )
    grounding: Grounding = Field(
        default_factory=Grounding,
        description="Per answer sentence: supported by the passages it cites or not, how strongly, and the numbers "
        "or names not found in them; score is the share of supported sentences (null: no answer to check).",
    )


class GoldenSetRead(BaseModel):
    revision: int
    filename: str
    source_format: str
    item_count: int
    created_at: datetime


class EvaluationAccepted(BaseModel):
    job_id: str
    evaluation_id: str


class MetricSummary(BaseModel):
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    measured: int
    not_measured: int
    not_measured_reasons: dict[str, int] = Field(
        default_factory=dict,
        description="Questions not measured, by reason: no_judge, no_contexts, no_reference, no_reference_answer, "
        "no_answer, judge_timeout, judge_truncated, judge_unparsable, nan, judge_error:<exception class>.",
    )


class EvalResultRead(BaseModel):
    position: int
    question: str
    answer: str
    retrieved_chunk_ids: list[str]
    retrieved_filenames: list[str | None]
    scores: dict[str, float | None]
    not_measured: dict[str, str] = Field(default_factory=dict, description="Metric -> why its score is null.")
    judge_retries: int = 0
    answerable: bool = Field(default=True, description="The golden line's label (false: the answer is to decline).")
    answer_mode: str | None = Field(default=None, description="How it was answered (abstained: declined).")
    confidence: float | None = Field(default=None, description="The answer's evidence strength (0-1).")
    grounding_score: float | None = Field(default=None, description="Share of answer sentences supported.")
    unsupported_sentences: int | None = None


class EvaluationRead(BaseModel):
    id: str
    collection: str
    version: int
    golden_set_revision: int
    trigger: str
    status: str
    metrics: dict[str, MetricSummary]
    answer_mode: str | None
    prompt_revision: int
    judge_model: str | None
    judge_host: str | None = Field(default=None, description="Host of the judge's endpoint (null: no judge).")
    judge: str = Field(
        default="none",
        description="Which judge scored the run's LLM metrics: 'model at host', or 'none' (no judge configured).",
    )
    calibration: dict[str, Any] = Field(
        default_factory=dict,
        description="The abstention threshold this run's golden set supports (stored on the version), the rule, "
        "and the shares answered/declined at it on this golden set; threshold null with a reason when unsupported.",
    )
    judge_calls: int = Field(default=0, description="Requests sent to the judge.")
    judge_retries: int = Field(default=0, description="Judge answers that did not parse and were asked again.")
    warnings: list[str] = Field(
        default_factory=list, description="What to know before reading the scores, e.g. a judge that always failed."
    )
    error: str | None
    job_id: str | None
    created_at: datetime
    finished_at: datetime | None
    results: list[EvalResultRead] | None = None


class ComparisonRead(BaseModel):
    base: EvaluationRead
    candidate: EvaluationRead
    deltas: list[MetricDelta]  # eval.stats' own type, rendered as is
    worse_questions: list[dict[str, Any]]


class GapsRead(BaseModel):
    collection: str
    since: datetime = Field(description="Start of the window (the request's `from`).")
    until: datetime = Field(description="End of the window (the request's `to`).")
    low_confidence_below: float = Field(
        description="Answered questions below this confidence count as gaps (the live version's abstention "
        "threshold plus a margin)."
    )
    questions: int = Field(description="Questions declined or answered with low confidence in the window.")
    declined: int
    clusters: list[GapCluster] = Field(
        description="Groups of similar questions (embedding clusters), most asked first: count, example questions "
        "with their query ids (POST /feedback takes them, with answerable: false or an expected_answer), and "
        "the documents their closest passages came from."
    )  # eval.gaps' own type, rendered as is


class ReportAccepted(BaseModel):
    job_id: str


class ReportRead(BaseModel):
    id: str
    subject: str
    recipients: list[str]
    status: str
    attempts: int
    error: str | None
    job_id: str | None
    created_at: datetime
    sent_at: datetime | None


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
    role: Literal["admin", "writer", "reader"]
    collections: Literal["*"] | Annotated[list[CollectionName], Field(min_length=1, max_length=1000)]
    expires_at: datetime | None = None


class KeyRead(BaseModel):
    id: str
    name: str
    role: str
    collections: list[str]
    prefix: str
    created_by: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyRead):
    key: str = Field(description="The secret. Shown once: store it now.")


class AuditRead(BaseModel):
    id: int
    at: datetime
    key_id: str | None
    key_name: str | None
    action: str
    collection: str | None
    target: str | None
    detail: dict[str, Any]
    client_ip: str | None


class FeedbackCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="`query_id` from /query, or the `id` of a /v1/chat/completions response."
    )
    rating: Literal["up", "down"]
    comment: Annotated[str, StringConstraints(max_length=2000)] = ""
    expected_answer: Annotated[str, StringConstraints(min_length=1, max_length=20000)] | None = None
    answerable: bool | None = Field(
        default=None,
        description="false: no document answers this question (a knowledge gap); it can become an "
        "answerable: false golden line through /goldensets/from-feedback.",
    )


class FeedbackRead(BaseModel):
    id: str
    query_id: str
    collection: str
    rating: str
    comment: str
    expected_answer: str | None
    answerable: bool | None = None
    question: str
    answer: str
    version: int
    created_at: datetime


class GoldenFromFeedback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feedback_ids: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=64)]], Field(min_length=1, max_length=1000)
    ]
    base_revision: Annotated[int, Field(ge=1, le=MAX_INT)] | None = Field(
        default=None, description="Golden-set revision to extend; default the newest (or none)."
    )


class PromptCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template: Annotated[
        str,
        StringConstraints(min_length=20, max_length=8000),
        Field(json_schema_extra={"pattern": PROMPT_TEMPLATE_PATTERN}),
    ]
    note: Annotated[str, StringConstraints(max_length=500)] = ""

    @field_validator("template")
    @classmethod
    def _slots(cls, value: str) -> str:
        return check_prompt_template(value)


class PromptRead(BaseModel):
    revision: int
    template: str
    note: str
    created_at: datetime


class UsageDay(BaseModel):
    date: str
    model: str
    queries: int
    prompt_tokens: int
    completion_tokens: int
    embedding_tokens: int
    cost: float


class UsageRead(BaseModel):
    collection: str
    start: str
    end: str
    queries: int
    cost: float
    days: list[UsageDay]
