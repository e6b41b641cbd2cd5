"""Process-wide configuration, read once from ``RAGKEEP_*`` environment variables.

Every value has a safe embedded default so that ``ragkeep up`` works on a fresh
machine with nothing configured: SQLite catalog, SQLite-backed Celery broker, a
Chroma server child process and a local blob folder, all under ``data_dir``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class BlobSettings(BaseModel):
    """Where uploaded files (and each version's BM25 index) are kept: a local folder, or an S3-compatible bucket."""

    url: str | None = Field(
        default=None,
        pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$",
        description="s3://bucket/prefix: an S3-compatible object store shared by every host; "
        "unset: the folder `blobs` in data_dir.",
    )
    endpoint_url: str | None = Field(
        default=None, description="The store's endpoint, e.g. http://minio:9000; unset: AWS S3 in `region`."
    )
    region: str = Field(default="us-east-1", description="Region the requests are signed for.")
    access_key_id: str = Field(
        default="", description="Access key; empty: boto3's own chain (AWS_* variables, ~/.aws, an instance role)."
    )
    secret_access_key: str = Field(default="", description="Secret of the access key.")
    path_style: bool = Field(
        default=True,
        description="Address the bucket in the path (http://host/bucket/key), as most S3-compatible servers "
        "expect; false: virtual-hosted (http://bucket.host/key).",
    )
    timeout_s: float = Field(default=30.0, gt=0, description="Connect and read timeout per request to the store.")


class WorkerSettings(BaseModel):
    concurrency: int = Field(default=2, ge=1, description="Celery worker processes per host.")
    torch_threads: int = Field(
        default=0,
        ge=0,
        description="Embedding-model threads (ONNX Runtime or torch) per worker process; 0 = cores / concurrency.",
    )
    parse_soft_time_limit_s: int = Field(default=600, ge=5, description="A document that parses longer fails alone.")
    build_soft_time_limit_s: int = Field(default=3600, ge=30, description="A build running longer fails.")
    embed_batch_size: int = Field(default=32, ge=1, le=1024, description="Texts per embedding forward pass.")
    reconcile_interval_s: int = Field(default=60, ge=5, description="How often beat re-dispatches stuck jobs.")
    stuck_after_s: int = Field(
        default=300,
        ge=10,
        description="A queued job not dispatched, or a running job without a heartbeat, for this long is dispatched "
        "again.",
    )
    build_debounce_s: float = Field(
        default=2.0, ge=0, description="Uploads arriving within this window share one build."
    )
    metrics_port: int = Field(
        default=9101, ge=0, le=65535, description="Prometheus metrics of `ragkeep worker`; 0 turns them off."
    )
    metrics_host: str = Field(default="127.0.0.1", description="Bind address of the worker's metrics.")


class OcrSettings(BaseModel):
    """OCR of images and scanned pages (``ingest/ocr.py``), run by workers of the ``ocr`` queue."""

    concurrency: int = Field(
        default=1, ge=1, description="Processes of the OCR worker that `ragkeep up` runs (it consumes only `ocr`)."
    )
    threads: int = Field(default=0, ge=0, description="ONNX Runtime threads per OCR process; 0 = cores / concurrency.")
    dpi: int = Field(default=200, ge=72, le=600, description="Resolution scanned PDF pages are rendered at for OCR.")
    # 3 h: a 300-page scan takes 70-125 min on 2 busy cores (make bench); below the broker's 4 h visibility timeout.
    soft_time_limit_s: int = Field(
        default=10800, ge=30, le=14000, description="A document whose OCR (all its pages) takes longer fails alone."
    )


class LLMSettings(BaseModel):
    """An OpenAI-compatible chat endpoint for answers; without base_url answers are extractive."""

    base_url: str | None = Field(default=None, description="e.g. http://127.0.0.1:11434/v1 (OpenAI, vLLM, Ollama).")
    model: str | None = Field(default=None, description="Model name sent to the endpoint.")
    api_key: str = Field(default="", description="Bearer key for the endpoint (empty for local servers).")
    timeout_s: float = Field(default=30.0, gt=0, description="After this the answer falls back to extractive.")
    max_tokens: int = Field(default=512, ge=1, le=32768, description="Completion limit per answer.")
    temperature: float = Field(default=0.0, ge=0, le=2)

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.model)


class JudgeSettings(BaseModel):
    """The judge LLM for RAGAS's LLM metrics (faithfulness, answer relevancy, LLM context precision/recall)."""

    base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible endpoint; unset: the answering LLM (RAGKEEP_LLM__*) judges, or, without one, "
        "LLM metrics are not measured.",
    )
    model: str | None = Field(default=None, description="Judge model name.")
    api_key: str = Field(default="", description="Bearer key for the judge endpoint.")
    timeout_s: float = Field(default=60.0, gt=0, description="Per judge call.")
    max_tokens: int = Field(
        default=4096,
        ge=16,
        le=131072,
        description="Completion limit per judge call. RAGAS's structured outputs (statement lists with reasons) "
        "outgrow 1,024 tokens on long answers; a cut-off answer is recorded as 'judge output truncated'.",
    )
    parse_retries: int = Field(
        default=1,
        ge=0,
        le=5,
        description="Times a judge answer that does not parse is asked again (per judge call); every retry is "
        "counted on the evaluation.",
    )
    use_llm: bool = Field(
        default=True,
        description="With no judge endpoint set, the answering LLM (RAGKEEP_LLM__*) is the judge; false: no judge.",
    )

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.model)


class SMTPSettings(BaseModel):
    host: str = Field(default="127.0.0.1", description="SMTP server for owner reports.")
    port: int = Field(default=25, ge=1, le=65535)
    username: str = Field(default="", description="Login (empty: no AUTH).")
    password: str = Field(default="", description="Password for the login.")
    starttls: bool = Field(default=False, description="Upgrade the connection with STARTTLS.")
    sender: str = Field(default="ragkeep@localhost", description="From address of reports.")
    timeout_s: float = Field(default=30.0, gt=0, description="Per SMTP connection.")
    retries: int = Field(default=5, ge=0, le=20, description="Sending attempts after the first one.")
    retry_delay_s: float = Field(default=15.0, ge=0, description="First retry delay; doubles each time (max 600).")


class EvalSettings(BaseModel):
    schedule: str = Field(default="0 2 * * *", description="Nightly evaluation + reports, crontab in UTC.")
    trend_runs: int = Field(default=10, ge=2, le=100, description="Runs shown in the report's trend chart.")
    bootstrap_samples: int = Field(default=2000, ge=100, le=100000, description="Resamples for intervals.")
    worst_questions: int = Field(default=5, ge=1, le=50, description="Worst questions listed in reports.")


class Price(BaseModel):
    input_per_1k: float = Field(default=0.0, ge=0, description="Currency units per 1,000 input tokens.")
    output_per_1k: float = Field(default=0.0, ge=0, description="Currency units per 1,000 output tokens.")


class LimitSettings(BaseModel):
    requests_per_minute: int = Field(default=600, ge=0, description="Per API key; 0 = unlimited (429 above).")
    max_pending_mb_per_collection: int = Field(
        default=2048, ge=1, description="Uploaded bytes still waiting to be parsed, per collection (429 above)."
    )
    max_unpacked_mb: int = Field(
        default=512, ge=1, description="DOCX/XLSX/PPTX may unpack to at most this (ZIP bombs)."
    )
    max_pdf_pages: int = Field(default=2000, ge=1, description="Longer PDFs fail as documents.")
    max_parse_memory_mb: int = Field(
        default=2048, ge=64, description="Memory one document may add to the parser process; more fails it."
    )
    convert_timeout_s: int = Field(
        default=120, ge=5, description="LibreOffice/pandoc conversion of one file; longer fails it (killed)."
    )
    decrypt_timeout_s: int = Field(
        default=60, ge=1, description="Decrypting the password-protected files of one upload, together (422 past it)."
    )


class QuerySettings(BaseModel):
    warm_on_start: bool = Field(default=True, description="Load the embedding model when the API starts.")
    index_cache_size: int = Field(default=32, ge=1, description="Version indexes kept warm per API process.")
    max_top_k: int = Field(default=50, ge=1, le=500, description="Largest top_k a request may ask for.")
    log_retention_days: int = Field(default=90, ge=1, description="Query log rows older than this are deleted.")


class Settings(BaseSettings):
    """ragkeep settings. Environment prefix ``RAGKEEP_``, nested delimiter ``__``."""

    model_config = SettingsConfigDict(env_prefix="RAGKEEP_", env_nested_delimiter="__", extra="ignore")

    auth: Literal["enabled", "disabled"] = Field(
        default="enabled", description="disabled turns every check off (local experiments only)."
    )
    admin_api_key: str | None = Field(default=None, description="An admin key; unset: `ragkeep up` creates one.")
    data_dir: Path = Field(default=Path("ragkeep-data"), description="Root of every embedded store.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in data_dir.")
    redis_url: str | None = Field(
        default=None, description="Celery broker on Redis; default Kombu SQLAlchemy on SQLite."
    )
    chroma_url: str | None = Field(
        default=None, description="Chroma server; default a child `chroma run` on chroma_port."
    )
    embedding_backend: Literal["onnx", "torch"] = Field(
        default="onnx",
        description="onnx: the model exported to ONNX Runtime at load (faster one text at a time); "
        "torch: sentence-transformers. Same vectors either way.",
    )
    chroma_port: int = Field(default=8001, ge=1, le=65535, description="Port of the embedded Chroma server.")
    api_host: str = Field(default="127.0.0.1", description="Bind address of `ragkeep up` / `ragkeep api`.")
    api_port: int = Field(default=8000, ge=1, le=65535, description="API port (`--port` overrides).")
    max_upload_mb: int = Field(default=100, ge=1, description="Largest accepted file, in MiB (413 above).")
    max_files_per_request: int = Field(default=100, ge=1, description="Files accepted in one upload request.")
    console_session_hours: int = Field(
        default=12, ge=1, le=720, description="How long a web console sign-in lasts (it ends sooner with its key)."
    )
    log_format: Literal["json", "text"] = Field(
        default="json", description="json: one object per line with request_id; text: for reading by eye."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Least severe level logged."
    )
    queue_prefix: str = Field(default="", description="Prefix for Celery queue names (lets tests share a broker).")
    blobs: BlobSettings = BlobSettings()
    worker: WorkerSettings = WorkerSettings()
    ocr: OcrSettings = OcrSettings()
    llm: LLMSettings = LLMSettings()
    query: QuerySettings = QuerySettings()
    judge: JudgeSettings = JudgeSettings()
    smtp: SMTPSettings = SMTPSettings()
    eval: EvalSettings = EvalSettings()
    limits: LimitSettings = LimitSettings()
    prices: dict[str, Price] = Field(
        default_factory=dict,
        description='Per model, JSON: {"gpt-4o-mini": {"input_per_1k": 0.00015, "output_per_1k": 0.0006}}.',
    )

    @property
    def resolved_judge(self) -> JudgeSettings:
        """The judge evaluations use: RAGKEEP_JUDGE__* when set; else the answering LLM (its endpoint, model,
        key and timeout), unless ``judge.use_llm`` is false; else no judge (LLM metrics not measured)."""
        if self.judge.configured or not self.judge.use_llm or not self.llm.configured:
            return self.judge
        return self.judge.model_copy(
            update={
                "base_url": self.llm.base_url,
                "model": self.llm.model,
                "api_key": self.llm.api_key,
                "timeout_s": max(self.judge.timeout_s, self.llm.timeout_s),
            }
        )

    def cost(self, model: str | None, input_tokens: int, output_tokens: int) -> float:
        """Estimated cost of one call; models without a price cost 0."""
        price = self.prices.get(model or "")
        if price is None:
            return 0.0
        return input_tokens / 1000 * price.input_per_1k + output_tokens / 1000 * price.output_per_1k

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir / 'catalog.sqlite'}"

    @property
    def broker_url(self) -> str:
        if self.redis_url:
            return self.redis_url
        return f"sqla+sqlite:///{self.resolved_data_dir / 'broker.sqlite'}"

    @property
    def embedded_chroma(self) -> bool:
        """True when ragkeep itself runs the Chroma server (no RAGKEEP_CHROMA_URL)."""
        return self.chroma_url is None

    @property
    def resolved_chroma_url(self) -> str:
        return self.chroma_url or f"http://127.0.0.1:{self.chroma_port}"

    @property
    def blob_dir(self) -> Path:
        """The local blob folder (the embedded default; unused when ``blobs.url`` names a bucket)."""
        return self.resolved_data_dir / "blobs"

    @property
    def chroma_dir(self) -> Path:
        return self.resolved_data_dir / "chroma"

    @property
    def model_cache_dir(self) -> Path:
        """The embedding model's ONNX graphs, exported by the first process that loads it (core.embedding)."""
        return self.resolved_data_dir / "models"

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    def torch_threads(self) -> int:
        if self.worker.torch_threads:
            return self.worker.torch_threads
        return max(1, (os.cpu_count() or 1) // self.worker.concurrency)

    def ocr_threads(self) -> int:
        if self.ocr.threads:
            return self.ocr.threads
        return max(1, (os.cpu_count() or 1) // self.ocr.concurrency)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
