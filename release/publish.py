"""Publishing, rolling back and retention: moving the live pointer and dropping old versions."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session

from core import catalog
from core.errors import ConcurrentChange
from core.models import Collection, Version, utcnow
from release.dispatch import Audit

log = logging.getLogger(__name__)


def publish(session: Session, collection: Collection, number: int, audit: Audit) -> Version:
    """Make a ready (or archived, still kept) version live by hand; the current live version is archived.

    Committed here, in the caller's thread: in the API, FastAPI validates the response in a
    second thread-pool hop and only then commits the session. Until then the live-pointer row
    lock (on SQLite, the database's write lock) would stay held by a request waiting for a
    thread that the requests queued on that lock hold: a burst stalled 30 s and ended in 500s.
    """
    version = catalog.get_version(session, collection, number)
    catalog.publish(session, collection, version)
    audit(str(number))
    session.commit()
    return version


def rollback(session: Session, collection: Collection, audit: Audit) -> Version:
    """Make the version that was live before the current one live again (committed, as in ``publish``)."""
    version = catalog.rollback(session, collection)
    audit(str(version.number))
    session.commit()
    return version


def publish_if_newest(
    session: Session, collection: Collection, version: Version, gate: dict[str, object] | None = None
) -> None:
    """Auto-publish, unless a newer version went live meanwhile (builds can finish out of order).

    ``gate``, a passed gate decision, is recorded in the same commit as the publish, so
    nobody sees a version that passed its gate and is not live yet.
    """
    for _ in range(3):
        session.refresh(collection)
        if gate is not None:
            version.gate = gate
        live = session.get(Version, collection.live_version_id) if collection.live_version_id else None
        if live is not None and live.number > version.number:
            session.commit()
            return
        try:
            catalog.publish(session, collection, version)
            session.commit()
            return
        except ConcurrentChange:
            session.rollback()
    if gate is not None:
        version.gate = gate
        session.commit()
    log.warning("could not publish %s v%d after concurrent changes", collection.name, version.number)


def apply_retention(session: Session, collection: Collection, keep: int, drop: Callable[[str], object]) -> list[int]:
    """Drop the versions beyond ``keep``; a dropped version's vectors stay while a kept delta
    version still reads them as its base, and go with the last such delta."""
    dropped: list[Version] = []
    for old in catalog.versions_to_drop(session, collection, keep):
        old.dropped_at = utcnow()
        dropped.append(old)
    session.flush()
    in_use = catalog.collections_in_use(session, collection.id)
    for name in {v.chroma_collection for v in [*dropped, *catalog.dropped_bases(session, collection.id)]} - in_use:
        drop(name)
    session.commit()
    return [v.number for v in dropped]
