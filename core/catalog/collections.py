"""Collections repository: names, creation, lookup, listing and deletion of collections."""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.catalog.versions import collections_in_use
from core.config import CollectionConfig
from core.errors import CollectionExists, CollectionNotFound, InvalidInput
from core.models import Collection

COLLECTION_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,46})[a-z0-9]$")


def validate_collection_name(name: str) -> str:
    if not COLLECTION_NAME.match(name) or "--" in name:
        raise InvalidInput(
            f"invalid collection name {name!r}: use 3-48 lowercase letters, digits and single hyphens, "
            "starting and ending with a letter or digit"
        )
    return name


def create_collection(
    session: Session, name: str, description: str, owners: list[str], config: CollectionConfig
) -> Collection:
    validate_collection_name(name)
    collection = Collection(name=name, description=description, owners=owners, config=config.model_dump(mode="json"))
    session.add(collection)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise CollectionExists(f"collection {name!r} already exists") from None
    return collection


def get_collection(session: Session, name: str) -> Collection:
    collection = session.scalar(select(Collection).where(Collection.name == name))
    if collection is None:
        raise CollectionNotFound(f"collection {name!r} does not exist")
    return collection


def get_collection_by_id(session: Session, collection_id: str) -> Collection | None:
    return session.get(Collection, collection_id)


def list_collections(
    session: Session, offset: int, limit: int, only: frozenset[str] | None = None
) -> tuple[Sequence[Collection], int]:
    """Collections by name; ``only`` restricts to the names a scoped key may see."""
    where = [] if only is None else [Collection.name.in_(sorted(only))]
    total = session.scalar(select(func.count()).select_from(Collection).where(*where)) or 0
    items = session.scalars(select(Collection).where(*where).order_by(Collection.name).offset(offset).limit(limit))
    return items.all(), total


def collection_config(collection: Collection) -> CollectionConfig:
    return CollectionConfig.model_validate(collection.config)


def delete_collection(session: Session, collection: Collection) -> list[str]:
    """Delete the collection's catalog rows; return the Chroma collections to drop (those of
    versions not dropped, and the dropped bases that delta versions still read)."""
    names = sorted(collections_in_use(session, collection.id))
    session.delete(collection)
    session.flush()
    return names


def collection_ids(session: Session) -> list[str]:
    """Every collection's id."""
    return list(session.scalars(select(Collection.id)))
