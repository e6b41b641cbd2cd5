"""Upload intake, report delivery (to a real SMTP server), nightly choice and usage, without Celery."""

from __future__ import annotations

import email
import io
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SMTPSession
from sqlalchemy.orm import Session

from core import catalog
from core.blobs import LocalBlobStore
from core.config import CollectionConfig
from core.embedding import Embedder
from core.errors import FileTooLarge, InvalidInput, TooManyRequests
from core.models import (
    Collection,
    EvalTrigger,
    Job,
    JobKind,
    JobStatus,
    Report,
    ReportStatus,
    VersionState,
)
from core.settings import Settings
from release import evaluations, intake, reports
from release.dispatch import Step
from tests.processes import free_port
from tests.release.conftest import Sent

PDF_FREE_TEXT = b"Parental leave is sixteen weeks at full pay.\n"


class Audited:
    def __init__(self) -> None:
        self.entries: list[tuple[str, dict[str, object]]] = []

    def __call__(self, target: str, **detail: object) -> None:
        self.entries.append((target, detail))


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: SMTP, session: SMTPSession, envelope: Envelope) -> str:  # noqa: N802
        self.messages.append(email.message_from_bytes(envelope.content, policy=default_policy))  # type: ignore[arg-type]
        return "250 Message accepted"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, max_files_per_request=3)


def _collection(session: Session, owners: list[str] | None = None) -> Collection:
    collection = catalog.create_collection(session, "hr-kb", "", owners or [], CollectionConfig())
    session.commit()
    return collection


def _upload(
    session: Session, collection: Collection, settings: Settings, files: dict[str, bytes], metadata: str | None = None
) -> tuple[intake.Upload, Sent, Audited]:
    sent, audited = Sent(), Audited()
    uploaded = intake.upload(
        session,
        collection,
        [intake.UploadedFile(name, io.BytesIO(data)) for name, data in files.items()],
        metadata,
        settings=settings,
        blobs=LocalBlobStore(settings.blob_dir),
        enqueue=sent,
        audit=audited,
    )
    return uploaded, sent, audited


def test_an_upload_stores_bytes_records_revisions_and_sends_one_parse_per_changed_file(
    session: Session, settings: Settings
) -> None:
    collection = _collection(session)
    uploaded, sent, audited = _upload(session, collection, settings, {"leave.txt": PDF_FREE_TEXT}, '{"team": "hr"}')
    [outcome] = uploaded.outcomes
    assert outcome.changed and outcome.revision.upload_metadata == {"team": "hr"}
    assert LocalBlobStore(settings.blob_dir).get(collection.id, outcome.revision.sha256) == PDF_FREE_TEXT
    assert sent.steps == [(Step.parse, outcome.revision.id, None)]
    assert audited.entries[0][0] == uploaded.job.id and audited.entries[0][1]["files"] == [
        {"filename": "leave.txt", "sha256": outcome.revision.sha256, "changed": True}
    ]
    again, sent_again, _ = _upload(session, collection, settings, {"leave.txt": PDF_FREE_TEXT}, '{"team": "hr"}')
    assert not again.outcomes[0].changed and sent_again.steps == []
    assert again.job.status == JobStatus.succeeded and again.job.result["detail"].startswith("every file repeats")


@pytest.mark.parametrize(
    ("files", "metadata", "error"),
    [
        ({"a.txt": b"x", "b.txt": b"y", "c.txt": b"z", "d.txt": b"w"}, None, "at most 3 files"),
        ({"a.txt": PDF_FREE_TEXT}, '{"filename": "x"}', "reserved"),
        ({"a.txt": PDF_FREE_TEXT}, "[1]", "must be a JSON object"),
        ({"a.txt": PDF_FREE_TEXT, "b.txt": b""}, None, "is empty"),
    ],
)
def test_a_bad_upload_is_refused_whole_before_anything_is_stored(
    session: Session, settings: Settings, files: dict[str, bytes], metadata: str | None, error: str
) -> None:
    collection = _collection(session)
    with pytest.raises(InvalidInput, match=error):
        _upload(session, collection, settings, files, metadata)
    assert catalog.list_documents(session, collection, 0, 10)[1] == 0
    assert not settings.blob_dir.exists() or not any(settings.blob_dir.rglob("*"))


def test_too_large_and_over_quota_uploads_are_refused(session: Session, tmp_path: Path) -> None:
    collection = _collection(session)
    small = Settings(data_dir=tmp_path, max_upload_mb=1)
    with pytest.raises(FileTooLarge, match="upload limit"):
        _upload(session, collection, small, {"a.txt": b"a" * (1024 * 1024 + 1)})
    quota = Settings.model_validate({"data_dir": tmp_path, "limits": {"max_pending_mb_per_collection": 1}})
    _upload(session, collection, quota, {"a.txt": b"a" * 700_000})
    with pytest.raises(TooManyRequests, match="waiting to be parsed"):
        _upload(session, collection, quota, {"b.txt": b"b" * 700_000})


def test_a_report_is_built_once_and_sent_to_the_owners(session: Session, settings: Settings) -> None:
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings.smtp.port = port
        collection = _collection(session, owners=["owner@example.com"])
        sent = Sent()
        job = reports.request_report(session, collection, sent)
        assert sent.steps == [(Step.report, job.id, None)]
        catalog.start_job(session, job)
        assert reports.deliver(session, job, collection, settings, Embedder) == ReportStatus.sent
    finally:
        controller.stop()
    report = session.get(Report, job.result["report_id"])
    assert report is not None and report.status == ReportStatus.sent and report.attempts == 1
    assert job.status == JobStatus.succeeded and job.result["recipients"] == ["owner@example.com"]
    [message] = box.messages
    assert message["To"] == "owner@example.com" and message["Subject"] == report.subject


def test_a_failed_send_keeps_the_report_and_gives_up_after_the_retries(session: Session, settings: Settings) -> None:
    settings.smtp.port = free_port()  # nothing listens there
    settings.smtp.timeout_s = 2
    collection = _collection(session, owners=["owner@example.com"])
    job = catalog.create_job(session, JobKind.report, collection.id, total=1)
    session.commit()
    with pytest.raises(OSError):
        reports.deliver(session, job, collection, settings, Embedder)
    assert reports.retry_delay(settings, 0) == settings.smtp.retry_delay_s
    assert reports.retry_delay(settings, settings.smtp.retries) is None
    reports.give_up(session, job, collection)
    report = session.get(Report, job.result["report_id"])
    assert report is not None and report.status == ReportStatus.failed and report.error
    assert job.status == JobStatus.failed and "stays readable" in (job.error or "")


def test_a_report_without_owners_is_kept_and_not_sent(session: Session, settings: Settings) -> None:
    collection = _collection(session)
    job = catalog.create_job(session, JobKind.report, collection.id, total=1)
    session.commit()
    assert reports.deliver(session, job, collection, settings, Embedder) == ReportStatus.no_recipients
    assert session.get(Job, job.id) is job and job.result["status"] == "no_recipients"


def test_the_nightly_run_evaluates_the_live_version_and_unscored_ready_ones(session: Session) -> None:
    collection = _collection(session)
    assert evaluations.nightly_candidates(session, collection) == [], "no golden set: nothing to evaluate"
    golden = catalog.create_golden_set(session, collection, "g.jsonl", "jsonl", [{"question": "q?"}])
    versions = []
    for state in (VersionState.live, VersionState.ready, VersionState.ready, VersionState.archived):
        build = catalog.create_job(session, JobKind.build, collection.id)
        version = catalog.create_version(session, collection, build.id, lambda name, n: f"rk_{name}_v{n}")
        version.state = state
        versions.append(version)
    session.commit()
    scored = catalog.create_job(session, JobKind.evaluate, collection.id)
    run = catalog.create_eval_run(session, collection, versions[1], golden, EvalTrigger.nightly, scored)
    run.status = JobStatus.succeeded
    session.commit()
    assert [v.number for v in evaluations.nightly_candidates(session, collection)] == [1, 3]
