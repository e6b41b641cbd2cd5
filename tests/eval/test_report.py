"""The owner report, rendered from catalog rows on SQLite and PostgreSQL."""

from __future__ import annotations

from core import catalog
from core.config import CollectionConfig
from core.db import Database
from core.models import DocumentStatus, JobKind
from core.settings import EvalSettings
from eval.report import build_report

INJECTED = {
    "chunks": 2,
    "dropped": 0,
    "patterns": {"ignore_instructions": 2, "system_prompt_request": 1},
}


def test_report_lists_the_documents_flagged_as_possible_prompt_injection(db: Database) -> None:
    with db.sessions() as session:
        collection = catalog.create_collection(session, "handbook", "", ["owner@example.com"], CollectionConfig())
        job = catalog.create_job(session, JobKind.ingest, collection.id)
        files = [
            catalog.IncomingFile(name, sha * 64, 10, "txt", "text/plain", {})
            for name, sha in (("expenses.txt", "a"), ("travel.txt", "b"), ("removed.txt", "c"))
        ]
        uploaded = catalog.record_upload(session, collection, files, job)
        for outcome, counts in zip(uploaded, [{}, INJECTED, INJECTED], strict=True):
            outcome.revision.status = DocumentStatus.ready
            outcome.revision.injection_counts = counts
        catalog.mark_document_deleted(session, uploaded[2].document)
        session.commit()

        report = build_report(session, collection, EvalSettings())

    assert report.context["flagged_documents"] == [
        {
            "filename": "travel.txt",
            "revision": 1,
            "chunks": 2,
            "dropped": 0,
            "patterns": ["ignore_instructions", "system_prompt_request"],
        }
    ], "only documents still in the collection"
    assert "Possible prompt injection" in report.html and "POSSIBLE PROMPT INJECTION (policy flag)" in report.text
    for rendering in (report.html, report.text):
        assert "travel.txt" in rendering and "ignore_instructions, system_prompt_request" in rendering
        assert "expenses.txt" not in rendering and "removed.txt" not in rendering
