"""Small documents of one upload parsed as a group (issue 21): grouped by dispatch, each failing alone,
the same chunks and counts as one by one, the job settled and the build requested once."""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from core import catalog
from core.blobs import LocalBlobStore
from core.config import CollectionConfig, IngestionConfig
from core.embedding import Embedder
from core.errors import DocumentParseError
from core.filetypes import TEXT, FileKind
from core.models import ChunkCache, DocumentRevision, DocumentStatus, Job, JobStatus
from core.settings import Settings
from ingest.partition import Chunk, partition_document
from release import batches, intake
from release.dispatch import GROUP_MAX_DOCUMENTS, Step, parse_messages
from tests.release.conftest import Sent

ABSTRACT = (
    "Title {n}\n\nWe measured how parental leave of {n} weeks changes the return to work of new parents "
    "in {n} companies. Longer leave raised the share of parents who came back within a year."
)


@functools.cache
def _embedder() -> Embedder:
    return Embedder()


def _upload(session: Session, tmp_path: Path, files: dict[str, bytes]) -> tuple[intake.Upload, Sent, intake.ParseTools]:
    """Upload ``files``; the tools parse in-process (``partition_document``; workers use their sandbox)."""
    settings = Settings(data_dir=tmp_path, max_files_per_request=100)
    collection = catalog.create_collection(session, "abstracts", "", [], CollectionConfig())
    session.commit()
    sent = Sent()
    blobs = LocalBlobStore(settings.blob_dir)
    uploaded = intake.upload(
        session,
        collection,
        [intake.UploadedFile(name, io.BytesIO(data)) for name, data in files.items()],
        None,
        settings=settings,
        blobs=blobs,
        enqueue=sent,
        audit=lambda target, **detail: None,
    )
    return uploaded, sent, intake.ParseTools(blobs, lambda model: _embedder(), _parse, sent, 0.0)


def _parse(data: bytes, filename: str, kind: FileKind, config: IngestionConfig, **options: Any) -> list[Chunk]:
    """``partition_document``; ``broken.txt`` fails as a document the parser cannot read (or that killed it)."""
    if filename == "broken.txt":
        raise DocumentParseError("the parser stopped (exit code -9) while reading this file")
    return partition_document(data, filename, kind, config, **options)


def _abstracts(count: int) -> dict[str, bytes]:
    return {f"{n}.txt": ABSTRACT.format(n=n).encode() for n in range(count)}


def test_small_text_documents_are_sent_in_groups_and_others_alone(session: Session, tmp_path: Path) -> None:
    files = _abstracts(GROUP_MAX_DOCUMENTS + 3) | {"big.txt": b"x " * 40_000, "scan.png": b"\x89PNG\r\n\x1a\n"}
    uploaded, sent, _ = _upload(session, tmp_path, files)
    revision = {o.document.filename: o.revision.id for o in uploaded.outcomes}
    groups = [arg for step, arg, _ in sent.steps if step == Step.parse_group]
    assert [len(g) for g in groups] == [GROUP_MAX_DOCUMENTS, 3]
    assert groups[0][:2] == [revision["0.txt"], revision["1.txt"]]  # upload order
    singles = {(step, arg) for step, arg, _ in sent.steps if step != Step.parse_group}
    assert singles == {(Step.parse, revision["big.txt"]), (Step.ocr, revision["scan.png"])}
    # The reconciler sends a lost job's files the same way.
    assert parse_messages(session, [revision["0.txt"]]) == [(Step.parse, revision["0.txt"])]


def test_a_group_parses_each_document_alone_and_embeds_them_together(session: Session, tmp_path: Path) -> None:
    files = _abstracts(5) | {"broken.txt": b"Nothing wrong with these bytes."}
    uploaded, sent, tools = _upload(session, tmp_path, files)
    ids = [o.revision.id for o in uploaded.outcomes]
    [group] = [arg for step, arg, _ in sent.steps if step == Step.parse_group]
    assert sorted(group) == sorted(ids)
    embedded_before = _embedder().texts_embedded

    claimed = batches.claim_parses(session, group, tools, lambda job: False)
    assert sorted(r.id for r in claimed) == sorted(ids)
    assert batches.claim_parses(session, group, tools, lambda job: True) == []  # a duplicate message
    batches.parse_many(session, claimed, tools)
    batches.after_parses(session, group, tools)

    revisions = {r.document.filename: r for r in catalog.revisions_with_documents(session, ids)}
    broken = revisions.pop("broken.txt")
    assert broken.status == DocumentStatus.failed and "exit code -9" in (broken.error or "")
    assert {r.status for r in revisions.values()} == {DocumentStatus.ready}
    assert all(r.chunk_count == 1 and r.embedded_count == 1 for r in revisions.values())
    assert _embedder().texts_embedded - embedded_before == 5
    # The same chunks as parsing each document on its own.
    for name, revision in revisions.items():
        [row] = session.query(ChunkCache).filter_by(sha256=revision.sha256).all()
        [alone] = partition_document(files[name], name, TEXT, CollectionConfig().ingestion)
        assert row.text == alone.text

    job = session.get(Job, uploaded.job.id)
    assert job is not None and job.status == JobStatus.failed  # one of its documents failed
    assert job.progress_done == 6 and "broken.txt" in (job.error or "") and job.result["build_job_id"]
    assert [step for step, _, _ in sent.steps].count(Step.build) == 1


def test_a_redelivered_group_counts_its_parsed_documents_once_more_and_parses_nothing(
    session: Session, tmp_path: Path
) -> None:
    _, sent, tools = _upload(session, tmp_path, _abstracts(3))
    [group] = [arg for step, arg, _ in sent.steps if step == Step.parse_group]
    batches.parse_many(session, batches.claim_parses(session, group, tools, lambda job: False), tools)
    before = _embedder().texts_embedded
    assert batches.claim_parses(session, group, tools, lambda job: False) == []
    assert _embedder().texts_embedded == before
    assert {session.get(DocumentRevision, i).status for i in group} == {DocumentStatus.ready}  # type: ignore[union-attr]
