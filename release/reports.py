"""The owners' report: requesting one, building it (kept in the catalog), sending it by email."""

from __future__ import annotations

import base64
from collections.abc import Callable

from sqlalchemy.orm import Session

from core import catalog, email
from core.embedding import Embedder
from core.models import Collection, Job, JobKind, Report, ReportStatus, utcnow
from core.settings import Settings
from eval.report import CHART_CID, build_report
from release.dispatch import Audit, Enqueue, Step, dispatch

Embedders = Callable[[str], Embedder]  # a model id -> its embedder (the worker's or the API engine's)


def request_report(session: Session, collection: Collection, enqueue: Enqueue, audit: Audit | None = None) -> Job:
    """Build the collection's report and email it to the owners, asynchronously: the job, committed and sent."""
    job = catalog.create_job(session, JobKind.report, collection.id, total=1)
    dispatch(session, enqueue, job, Step.report, job.id, audit)
    return job


def inline_chart(html: str, chart: bytes | None) -> str:
    """For the browser: the e-mail's cid: image reference becomes a data URI."""
    if not chart:
        return html
    return html.replace(f"cid:{CHART_CID}", "data:image/png;base64," + base64.b64encode(chart).decode())


def current_page(session: Session, collection: Collection, settings: Settings, embedder: Embedders) -> str:
    """The owners' report as of now, as one HTML page (its chart inline)."""
    rendered = build_report(session, collection, settings.eval, embedder)
    return inline_chart(rendered.html, rendered.chart_png)


def _report_of(session: Session, job: Job, collection: Collection, settings: Settings, embedder: Embedders) -> Report:
    """The job's report: built once, kept (a retried send mails the same report)."""
    report = session.get(Report, job.result["report_id"]) if job.result.get("report_id") else None
    if report is not None:
        return report
    rendered = build_report(session, collection, settings.eval, embedder)
    report = Report(
        collection_id=collection.id,
        subject=rendered.subject,
        recipients=list(collection.owners),
        html=rendered.html,
        text=rendered.text,
        chart_png=rendered.chart_png,
        job_id=job.id,
    )
    session.add(report)
    session.flush()
    job.result = {**job.result, "report_id": report.id}
    session.commit()
    return report


def deliver(
    session: Session, job: Job, collection: Collection, settings: Settings, embedder: Embedders
) -> ReportStatus:
    """Build (once) and email the report of an opened report job; raises one of ``email.SEND_ERRORS`` when SMTP fails.

    ``embedder`` (model id -> embedder) groups the knowledge-gap questions. The caller retries a
    failed send later (``defer``) or gives up (``give_up``).
    """
    report = _report_of(session, job, collection, settings, embedder)
    if not report.recipients:
        report.status = ReportStatus.no_recipients
        catalog.finish_job(session, job, result={"report_id": report.id, "status": report.status})
        session.commit()
        return ReportStatus.no_recipients
    report.attempts += 1
    message = email.build_message(
        settings.smtp.sender,
        report.recipients,
        report.subject,
        report.text,
        report.html,
        report.chart_png,
        CHART_CID if report.chart_png else None,
    )
    try:
        email.send(settings.smtp, message)
    except email.SEND_ERRORS as exc:
        report.error = f"{type(exc).__name__}: {exc}"[:500]
        session.commit()
        raise
    report.status, report.sent_at, report.error = ReportStatus.sent, utcnow(), None
    catalog.finish_job(
        session, job, result={"report_id": report.id, "status": report.status, "recipients": report.recipients}
    )
    session.commit()
    return ReportStatus.sent


def retry_delay(settings: Settings, attempt: int) -> float | None:
    """Seconds until the next try of a failed send, or None when the retries are used up."""
    smtp = settings.smtp
    if attempt >= smtp.retries:
        return None
    return float(min(600.0, smtp.retry_delay_s * 2**attempt))


def defer(session: Session, job: Job, delay_s: float) -> None:
    """The send is tried again in ``delay_s``: the job waits, it is not lost (the reconciler leaves it)."""
    catalog.mark_dispatched(session, [job.id], delay_s=delay_s)
    session.commit()


def give_up(session: Session, job: Job, collection: Collection) -> None:
    """The send failed for good; the report stays readable through the API."""
    report = session.get(Report, job.result.get("report_id", ""))
    if report is None:
        return
    report.status = ReportStatus.failed
    catalog.finish_job(
        session,
        job,
        error=f"could not send the report after {report.attempts} attempts "
        f"({report.error}); it stays readable at /collections/{collection.name}/reports/latest",
        result={"report_id": report.id, "status": report.status},
    )
    session.commit()
