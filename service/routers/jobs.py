"""Jobs: the status of every asynchronous unit of work."""

from __future__ import annotations

from fastapi import APIRouter

from core import catalog
from service.access import GuardedRoute, ensure_visible
from service.deps import PrincipalDep, SessionDep
from service.mappers import job_read
from service.schemas import JobRead, error_responses

router = APIRouter(prefix="/jobs", tags=["jobs"], route_class=GuardedRoute)


@router.get("/{job_id}", responses=error_responses(404))
def get_job(job_id: str, session: SessionDep, principal: PrincipalDep) -> JobRead:
    """Status, progress and error of one job."""
    job = catalog.get_job(session, job_id)
    ensure_visible(session, principal, job.collection_id, catalog.job_missing(job_id))
    return job_read(session, job)
