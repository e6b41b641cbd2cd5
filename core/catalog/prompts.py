"""Prompt templates repository: numbered revisions per collection."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.catalog._numbering import add_numbered
from core.errors import NotFound
from core.models import Collection, PromptTemplate


def create_prompt(
    session: Session, collection: Collection, template: str, note: str, created_by: str | None
) -> PromptTemplate:
    def build(revision: int) -> PromptTemplate:
        return PromptTemplate(
            collection_id=collection.id, revision=revision, template=template, note=note, created_by=created_by
        )

    return add_numbered(session, PromptTemplate.revision, PromptTemplate.collection_id, collection.id, build)


def list_prompts(session: Session, collection: Collection) -> Sequence[PromptTemplate]:
    return session.scalars(
        select(PromptTemplate)
        .where(PromptTemplate.collection_id == collection.id)
        .order_by(PromptTemplate.revision.desc())
    ).all()


def get_prompt(session: Session, collection: Collection, revision: int) -> PromptTemplate:
    row = session.scalar(
        select(PromptTemplate).where(PromptTemplate.collection_id == collection.id, PromptTemplate.revision == revision)
    )
    if row is None:
        raise NotFound(f"prompt revision {revision} of collection {collection.name!r} does not exist")
    return row
