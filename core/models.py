"""Catalog tables (SQLAlchemy 2, typed). The catalog holds the truth; Celery carries ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to the catalog; use core.models.utcnow()")
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class DocumentStatus(StrEnum):
    queued = "queued"
    parsing = "parsing"
    ready = "ready"
    failed = "failed"


class VersionState(StrEnum):
    building = "building"
    ready = "ready"
    live = "live"
    archived = "archived"
    failed = "failed"


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


class JobKind(StrEnum):
    ingest = "ingest"
    build = "build"
    evaluate = "evaluate"
    report = "report"


class BuildTrigger(StrEnum):
    """Why a build job exists: documents changed (built only if something did), or by hand (always built)."""

    change = "change"
    manual = "manual"


class EvalTrigger(StrEnum):
    """Why an evaluation run exists."""

    manual = "manual"
    gate = "gate"  # a gated build's candidate
    gate_baseline = "gate-baseline"  # the live version, scored for a gate that had nothing to compare with
    nightly = "nightly"


class ReportStatus(StrEnum):
    pending = "pending"
    sent = "sent"
    failed = "failed"
    no_recipients = "no_recipients"


class Collection(Base):
    __tablename__ = "collections"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(48), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    owners: Mapped[list[Any]] = mapped_column(default=list)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    live_version_id: Mapped[str | None] = mapped_column(String(32))
    # The one queued build that absorbs every change until it starts (batches uploads).
    pending_build_job_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("collection_id", "filename"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    current_revision_id: Mapped[str | None] = mapped_column(String(32))
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    revisions: Mapped[list[DocumentRevision]] = relationship(
        back_populates="document", order_by="DocumentRevision.number", cascade="all, delete-orphan"
    )


class DocumentRevision(Base):
    __tablename__ = "document_revisions"
    __table_args__ = (UniqueConstraint("document_id", "number"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    content_type: Mapped[str] = mapped_column(String(128))
    upload_metadata: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default=DocumentStatus.queued, index=True)
    error: Mapped[str | None] = mapped_column(Text)
    chunk_count: Mapped[int | None] = mapped_column(Integer)
    # Personal data found in this revision's chunks (config pii flag/redact): {"email": 2, ...}.
    pii_counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Instruction-like chunks (config injection flag/drop): {"chunks": 2, "dropped": 0, "patterns": {...}}.
    injection_counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Chunks whose embedding had to be computed for this revision (the rest came from cache).
    embedded_count: Mapped[int] = mapped_column(Integer, default=0)
    # OCR (images, scanned pages): pages read so far and pages to read; None when no OCR ran.
    ocr_pages_done: Mapped[int | None] = mapped_column(Integer)
    ocr_pages_total: Mapped[int | None] = mapped_column(Integer)
    job_id: Mapped[str | None] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    parsed_at: Mapped[datetime | None] = mapped_column()

    document: Mapped[Document] = relationship(back_populates="revisions")


class Version(Base):
    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("collection_id", "number"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default=VersionState.building)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    embedding_model: Mapped[str] = mapped_column(String(128))
    chroma_collection: Mapped[str] = mapped_column(String(128))
    # A delta version: ``chroma_collection`` holds only the chunks of documents added or changed
    # since the full version ``base_version_number``, whose collection it also reads, minus the
    # chunks of ``hidden_documents`` (changed or removed since; ``hidden_chunk_count`` of them).
    base_version_number: Mapped[int | None] = mapped_column(Integer)
    base_collection: Mapped[str | None] = mapped_column(String(128))
    hidden_documents: Mapped[list[Any]] = mapped_column(default=list)
    hidden_chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    document_count: Mapped[int] = mapped_column(Integer, default=0)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    embedded_chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    reused_chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    changes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    # Blob (in the collection's namespace) holding the version's BM25 index for hybrid retrieval.
    bm25_sha256: Mapped[str | None] = mapped_column(String(64))
    job_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    # publish_policy "gated": {"passed": bool, "reasons": [...], "against": N, "evaluation_id": ...}.
    gate: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The version that was live when this one was published: rollback pops back to it.
    replaced_version_id: Mapped[str | None] = mapped_column(String(32))
    build_seconds: Mapped[float | None] = mapped_column(Float)
    # The confidence threshold its golden set supports (eval.abstention.calibrate; None: not calibrated);
    # ``answer.abstain: auto`` declines below it.
    calibrated_threshold: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    built_at: Mapped[datetime | None] = mapped_column()
    published_at: Mapped[datetime | None] = mapped_column()
    dropped_at: Mapped[datetime | None] = mapped_column()


class VersionDocument(Base):
    __tablename__ = "version_documents"

    version_id: Mapped[str] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True)
    document_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    revision_id: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(255))
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(16))
    collection_id: Mapped[str | None] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.queued, index=True)
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # What started the job (BuildTrigger for builds); an input, kept out of ``result``.
    trigger: Mapped[str | None] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    dispatched_at: Mapped[datetime | None] = mapped_column()
    started_at: Mapped[datetime | None] = mapped_column()
    # Refreshed while a worker process runs the job: a running job whose heartbeat stops lost its worker.
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()


class ChunkCache(Base):
    """Parsed chunks by (collection, document sha256, ingestion-config hash)."""

    __tablename__ = "chunk_cache"
    __table_args__ = (Index("ix_chunk_cache_key", "collection_id", "sha256", "parse_hash", "position", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(String(64))
    parse_hash: Mapped[str] = mapped_column(String(16))
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    text_sha256: Mapped[str] = mapped_column(String(64))
    chunk_metadata: Mapped[dict[str, Any]] = mapped_column(default=dict)


class EmbeddingCache(Base):
    """Embeddings by (collection, model, sha256 of the chunk text); float32 bytes."""

    __tablename__ = "embedding_cache"

    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True)
    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    text_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class QueryLog(Base):
    """One answered query: for monitoring, evaluation and feedback."""

    __tablename__ = "query_log"
    __table_args__ = (Index("ix_query_log_collection_created", "collection_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    version_number: Mapped[int] = mapped_column(Integer)
    question: Mapped[str] = mapped_column(Text)
    mode: Mapped[str] = mapped_column(String(16))
    answer_mode: Mapped[str] = mapped_column(String(16))
    answer: Mapped[str] = mapped_column(Text, default="")
    chunk_ids: Mapped[list[Any]] = mapped_column(default=list)
    cited_chunk_ids: Mapped[list[Any]] = mapped_column(default=list)
    usage: Mapped[dict[str, Any]] = mapped_column(default=dict)
    latency_ms: Mapped[dict[str, Any]] = mapped_column(default=dict)
    warnings: Mapped[list[Any]] = mapped_column(default=list)
    model: Mapped[str | None] = mapped_column(String(128))
    cost: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # The prompt template revision used (0: the collection config's inline prompt_template).
    prompt_revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    client: Mapped[str | None] = mapped_column(String(128))
    # Issue 18: the evidence model's confidence, the share of answer sentences their passages
    # support (None: no answer to check) and how many they do not.
    confidence: Mapped[float | None] = mapped_column(Float)
    grounding_score: Mapped[float | None] = mapped_column(Float)
    unsupported_sentences: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class GoldenSet(Base):
    """One revision of a collection's golden set (questions with references)."""

    __tablename__ = "golden_sets"
    __table_args__ = (UniqueConstraint("collection_id", "revision"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str] = mapped_column(String(255))
    source_format: Mapped[str] = mapped_column(String(16))
    item_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    items: Mapped[list[GoldenItem]] = relationship(order_by="GoldenItem.position", cascade="all, delete-orphan")


class GoldenItem(Base):
    __tablename__ = "golden_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    golden_set_id: Mapped[str] = mapped_column(ForeignKey("golden_sets.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    question: Mapped[str] = mapped_column(Text)
    reference_answer: Mapped[str] = mapped_column(Text, default="")
    reference_contexts: Mapped[list[Any]] = mapped_column(default=list)
    reference_documents: Mapped[list[Any]] = mapped_column(default=list)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    # False: no document answers it; the right outcome is to decline (abstention metrics).
    answerable: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class EvalRun(Base):
    """RAGAS scores of one version on one golden-set revision."""

    __tablename__ = "eval_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), index=True)
    version_number: Mapped[int] = mapped_column(Integer)
    golden_set_id: Mapped[str] = mapped_column(ForeignKey("golden_sets.id", ondelete="CASCADE"))
    golden_revision: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[str | None] = mapped_column(String(32), index=True)
    trigger: Mapped[str] = mapped_column(String(16), default=EvalTrigger.manual)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.queued)
    # {metric: {"mean", "ci_low", "ci_high", "measured", "not_measured", "not_measured_reasons": {reason: n}}}
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    answer_mode: Mapped[str | None] = mapped_column(String(16))
    prompt_revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    judge_model: Mapped[str | None] = mapped_column(String(128))
    judge_host: Mapped[str | None] = mapped_column(String(255))  # host of the judge's base URL
    # {"threshold": float | None, "rule": str, "reason": str, "answerable": n, "unanswerable": n}
    calibration: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Requests sent to the judge, and the re-asks after answers that did not parse.
    judge_calls: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    judge_retries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # What a reader must know before trusting the scores ("the judge failed on every judged question: ...").
    warnings: Mapped[list[Any]] = mapped_column(default=list)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()


class EvalResult(Base):
    __tablename__ = "eval_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("eval_runs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text, default="")
    retrieved_chunk_ids: Mapped[list[Any]] = mapped_column(default=list)
    retrieved_filenames: Mapped[list[Any]] = mapped_column(default=list)
    # {metric: float or None (not measured)}
    scores: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # {metric: reason code} for each metric of ``scores`` that is None (eval.unmeasured.REASONS)
    not_measured: Mapped[dict[str, Any]] = mapped_column(default=dict)
    judge_retries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The golden item's label, and the evidence the answer came with (query.evidence, query.grounding).
    answerable: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    answer_mode: Mapped[str | None] = mapped_column(String(16))
    confidence: Mapped[float | None] = mapped_column(Float)
    grounding_score: Mapped[float | None] = mapped_column(Float)
    unsupported_sentences: Mapped[int | None] = mapped_column(Integer)


class Report(Base):
    """An owner report; kept even when sending fails, so it stays readable through the API."""

    __tablename__ = "reports"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    subject: Mapped[str] = mapped_column(String(255))
    recipients: Mapped[list[Any]] = mapped_column(default=list)
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    chart_png: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default=ReportStatus.pending)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()


class ApiKey(Base):
    """An API key; only its SHA-256 is stored (keys are 256-bit random tokens)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))  # admin | writer | reader
    collections: Mapped[list[Any]] = mapped_column(default=list)  # ["*"] = every collection
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()


class AuditEntry(Base):
    """Who changed what, when, and with which key."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    key_id: Mapped[str | None] = mapped_column(String(32))
    key_name: Mapped[str | None] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    collection: Mapped[str | None] = mapped_column(String(48), index=True)
    target: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    client_ip: Mapped[str | None] = mapped_column(String(64))


class Feedback(Base):
    """A user's rating of one answered query; with an expected answer it can grow the golden set."""

    __tablename__ = "feedback"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    query_id: Mapped[str] = mapped_column(ForeignKey("query_log.id", ondelete="CASCADE"), index=True)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    rating: Mapped[str] = mapped_column(String(8))  # up | down
    comment: Mapped[str] = mapped_column(Text, default="")
    expected_answer: Mapped[str | None] = mapped_column(Text)
    # False: the question is one the knowledge base should decline (becomes an answerable:false golden line).
    answerable: Mapped[bool | None] = mapped_column(Boolean)
    key_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PromptTemplate(Base):
    """A revision of a collection's prompt template; the collection config pins one."""

    __tablename__ = "prompt_templates"
    __table_args__ = (UniqueConstraint("collection_id", "revision"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    template: Mapped[str] = mapped_column(Text)
    note: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsoleSession(Base):
    """A browser signed in to the web console (``/ui``) with an API key.

    The cookie carries a random token; only its SHA-256 is stored. ``key_hash`` binds the
    session to the key it signed in with: every request checks that key again, so revoking or
    expiring the key ends its sessions.
    """

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the cookie's token
    key_hash: Mapped[str] = mapped_column(String(64), index=True)
    key_id: Mapped[str] = mapped_column(String(32))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
