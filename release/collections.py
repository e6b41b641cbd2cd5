"""A collection's usage (queries, tokens, cost per day and model) and its deletion."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from core import catalog
from core.blobs import BlobStore
from core.config import CollectionConfig
from core.errors import InvalidInput
from core.models import Collection
from release.dispatch import Audit


@dataclass
class UsageDay:
    date: str
    model: str
    queries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    embedding_tokens: int = 0
    cost: float = 0.0


@dataclass(frozen=True)
class Usage:
    collection: str
    start: str
    end: str
    queries: int
    cost: float
    days: list[UsageDay] = field(default_factory=list)


def usage(session: Session, collection: Collection, start: date | None, end: date | None) -> Usage:
    """Queries, tokens and estimated cost per day (UTC) and model, from ``start`` to ``end`` inclusive.

    Defaults: the 30 days up to today.
    """
    last = end or datetime.now(UTC).date()
    first = start or (last - timedelta(days=30) if last > date.min + timedelta(days=30) else date.min)
    if first > last:
        raise InvalidInput("'from' is after 'to'")
    # Inclusive of the whole last day; date.max + 1 day does not exist, so no "next midnight".
    rows = catalog.usage_rows(
        session, collection, datetime.combine(first, time.min, UTC), datetime.combine(last, time.max, UTC)
    )
    days: dict[tuple[str, str], UsageDay] = {}
    for at, model, used, cost in rows:
        key = (at.date().isoformat(), model or "none")
        day = days.setdefault(key, UsageDay(date=key[0], model=key[1]))
        day.queries += 1
        day.prompt_tokens += int(used.get("prompt_tokens", 0))
        day.completion_tokens += int(used.get("completion_tokens", 0))
        day.embedding_tokens += int(used.get("embedding_tokens", 0))
        day.cost = round(day.cost + cost, 8)
    ordered = [days[k] for k in sorted(days)]
    return Usage(
        collection=collection.name,
        start=first.isoformat(),
        end=last.isoformat(),
        queries=len(rows),
        cost=round(sum(d.cost for d in ordered), 6),
        days=ordered,
    )


def _merge(current: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of a partial config into the current one (a PATCH changes only what it names)."""
    merged = dict(current)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "gate":
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def update(
    session: Session,
    collection: Collection,
    description: str | None,
    owners: Sequence[str] | None,
    config: dict[str, Any] | None,
    audit: Audit,
) -> None:
    """Change what is given (a partial ``config`` is merged into the current one; flushed, not committed).

    A new ingestion config applies from the next build.
    """
    fields = {"description": description, "owners": owners, "config": config}
    audit(collection.name, fields=sorted(k for k, v in fields.items() if v is not None))
    if description is not None:
        collection.description = description
    if owners is not None:
        collection.owners = list(owners)
    if config is not None:
        merged = _merge(catalog.collection_config(collection).model_dump(), config)
        try:
            collection.config = CollectionConfig.model_validate(merged).model_dump(mode="json")
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"]))
            raise InvalidInput(f"config{'.' + where if where else ''}: {first['msg']}") from None
    session.flush()


def delete(
    session: Session, collection: Collection, drop: Callable[[str], object], blobs: BlobStore, audit: Audit
) -> None:
    """Delete a collection with its documents, versions, Chroma collections and blobs.

    The catalog first (committed: from then on nothing reads it), then the vectors and bytes.
    """
    name, collection_id = collection.name, collection.id
    audit(name)
    chroma_names = catalog.delete_collection(session, collection)
    session.commit()
    for chroma_name in chroma_names:
        drop(chroma_name)
    blobs.delete_namespace(collection_id)
