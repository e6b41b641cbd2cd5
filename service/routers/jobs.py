"""Jobs: the status of every asynchronous unit of work."""

from __future__ import annotations

from fastapi import APIRouter

from core import catalog
from service.deps import SessionDep
from service.schemas import JobRead, error_responses
from service.views import job_read

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.get("/{job_id}", responses=error_responses(404))
def get_job(job_id: str, session: SessionDep) -> JobRead:
    """Status, progress and error of one job."""
    return job_read(session, catalog.get_job(session, job_id))
