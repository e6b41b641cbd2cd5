"""Per-process resources of a worker: catalog engine, blob store, Chroma client, embedder.

Built in Celery's ``worker_process_init`` (after the fork): torch must not run in the
parent before forking, or prefork children hang.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property

from core import chroma
from core.blobs import BlobStore, open_blob_store
from core.chroma import ChromaClient
from core.config import DEFAULT_EMBEDDING_MODEL
from core.db import Database
from core.embedding import Embedder
from core.settings import Settings, get_settings
from eval.ragas_adapter import RagasScorer
from ingest.sandbox import ParseSandbox
from query.engine import QueryEngine
from workers import observe
from workers.client import TaskClient
from workers.heartbeat import Heartbeat, interval_s

log = logging.getLogger(__name__)


@dataclass
class Resources:
    settings: Settings
    db: Database
    blobs: BlobStore
    tasks: TaskClient
    embedders: dict[str, Embedder] = field(default_factory=dict)
    _engine: QueryEngine | None = None
    _scorer: RagasScorer | None = None

    @cached_property
    def chroma(self) -> ChromaClient:
        return chroma.connect(self.settings.resolved_chroma_url)

    @cached_property
    def heartbeat(self) -> Heartbeat:
        """Beats for the jobs this process runs (its thread starts with the first job)."""
        return Heartbeat(self.db, interval_s(self.settings.worker.stuck_after_s))

    @cached_property
    def parser(self) -> ParseSandbox:
        """Documents are parsed in a helper process under the memory limit (spawned at start, or on first use)."""
        limits = self.settings.limits
        return ParseSandbox(limits.max_parse_memory_mb, limits.max_pdf_pages)

    @property
    def query_engine(self) -> QueryEngine:
        """Evaluations answer through the same engine as the API's /query."""
        if self._engine is None:
            self._engine = QueryEngine(self.settings, self.db, self.blobs, self.chroma, self.embedder)
        return self._engine

    @property
    def scorer(self) -> RagasScorer:
        if self._scorer is None:
            self._scorer = RagasScorer(self.settings.resolved_judge, self.embedder(DEFAULT_EMBEDDING_MODEL))
        return self._scorer

    def embedder(self, model_id: str) -> Embedder:
        if model_id not in self.embedders:
            self.embedders[model_id] = Embedder(
                model_id,
                batch_size=self.settings.worker.embed_batch_size,
                threads=self.settings.torch_threads(),
                backend=self.settings.embedding_backend,
                on_embed=observe.embedded,
                graph_cache=self.settings.model_cache_dir,
            )
        return self.embedders[model_id]


_resources: Resources | None = None


def init_resources(settings: Settings | None = None, warm: bool = True, parse_helper: bool = False) -> Resources:
    """This process's resources; ``warm``: the default model loaded; ``parse_helper``: its helper spawned first."""
    global _resources
    settings = settings or get_settings()
    _resources = Resources(
        settings=settings,
        db=Database(settings.resolved_database_url),
        blobs=open_blob_store(settings),
        tasks=TaskClient(settings),
    )
    if parse_helper:  # it loads while the model does
        _resources.parser.spawn()
    if warm:
        _resources.embedder(DEFAULT_EMBEDDING_MODEL).warm_up()
    return _resources


def resources() -> Resources:
    return _resources if _resources is not None else init_resources(warm=False)


def close_resources() -> None:
    global _resources
    if _resources is not None:
        if "parser" in _resources.__dict__:
            _resources.parser.close()
        if "heartbeat" in _resources.__dict__:
            _resources.heartbeat.close()
        _resources.db.dispose()
        _resources = None
