"""Golden-set files: JSONL lines, or LlamaIndex's ``LabelledRagDataset`` JSON (``rag_dataset.json``).

Parsing is all-or-nothing: every malformed line is reported with its line number and
nothing is stored, so a golden set never silently loses questions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, ValidationError
from sqlalchemy.orm import Session

from core import catalog
from core.errors import InvalidInput, NotFound
from core.models import Collection, GoldenSet

MAX_ITEMS = 5000
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20000)]


class GoldenItemIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    question: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
    reference_answer: Annotated[str, StringConstraints(max_length=20000)] = ""
    reference_contexts: Annotated[list[Text], Field(max_length=50)] = []
    reference_documents: Annotated[list[Text], Field(max_length=50)] = []
    tags: Annotated[list[Text], Field(max_length=50)] = []
    # false: no document answers it (a reference answer is then not needed); the right outcome is to decline
    answerable: StrictBool = True


@dataclass(frozen=True)
class ParsedGoldenSet:
    source_format: str
    items: list[GoldenItemIn]


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where or 'value'}: {first.get('msg', 'invalid')}"


def _from_llamaindex(payload: dict[str, Any]) -> list[GoldenItemIn]:
    examples = payload.get("examples")
    if not isinstance(examples, list):
        raise InvalidInput("a LabelledRagDataset JSON needs an 'examples' list")
    items, problems = [], []
    for number, example in enumerate(examples, start=1):
        if not isinstance(example, dict):
            problems.append(f"example {number}: not an object")
            continue
        try:
            items.append(
                GoldenItemIn(
                    question=example.get("query", ""),
                    reference_answer=example.get("reference_answer") or "",
                    reference_contexts=example.get("reference_contexts") or [],
                )
            )
        except ValidationError as exc:
            problems.append(f"example {number}: {_describe(exc)}")
    if problems:
        raise InvalidInput("golden set rejected, nothing stored: " + "; ".join(problems[:20]))
    return items


def _from_jsonl(text: str) -> list[GoldenItemIn]:
    items, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: invalid JSON ({exc.msg})")
            continue
        if not isinstance(value, dict):
            problems.append(f"line {number}: not a JSON object")
            continue
        try:
            items.append(GoldenItemIn.model_validate(value))
        except ValidationError as exc:
            problems.append(f"line {number}: {_describe(exc)}")
    if problems:
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        raise InvalidInput("golden set rejected, nothing stored: " + "; ".join(problems[:20]) + more)
    return items


def parse_golden_set(data: bytes) -> ParsedGoldenSet:
    """Parse an uploaded golden set; raise ``InvalidInput`` naming every bad line."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput("golden set must be UTF-8 text (JSONL or LabelledRagDataset JSON)") from None
    stripped = text.lstrip()
    if not stripped:
        raise InvalidInput("golden set is empty")
    source_format, items = "jsonl", None
    if stripped.startswith("{") and "\n{" not in stripped.strip():
        # One JSON document: a LabelledRagDataset (or a single JSONL line).
        try:
            payload = json.loads(stripped)
        except json.JSONDecodeError:
            payload = None
        if isinstance(payload, dict) and "examples" in payload:
            source_format, items = "llamaindex", _from_llamaindex(payload)
    if items is None:
        items = _from_jsonl(text)
    if not items:
        raise InvalidInput("golden set has no questions")
    if len(items) > MAX_ITEMS:
        raise InvalidInput(f"golden set has {len(items)} questions; at most {MAX_ITEMS}")
    return ParsedGoldenSet(source_format, items)


def from_feedback(
    session: Session, collection: Collection, feedback_ids: list[str], base_revision: int | None
) -> tuple[GoldenSet, GoldenSet | None]:
    """A new golden-set revision: the base revision's questions (default: the newest) plus the chosen
    feedback's questions, each with its expected answer as the reference, or, for feedback marked
    ``answerable: false`` (a knowledge gap the next version must decline), as an unanswerable line.
    Returns it and its base."""
    chosen = catalog.feedback_with_queries(session, collection, feedback_ids)
    without = [f.id for f, _ in chosen if not f.expected_answer and f.answerable is not False]
    if without:
        raise InvalidInput(
            f"feedback {', '.join(without)} has no expected_answer to use as a reference "
            "(or answerable: false, for a question no document answers)"
        )
    sets = catalog.list_golden_sets(session, collection)
    base: GoldenSet | None = sets[0] if sets else None
    if base_revision is not None:
        base = next((g for g in sets if g.revision == base_revision), None)
        if base is None:
            raise NotFound(f"golden set revision {base_revision} does not exist")
    items: list[dict[str, object]] = [
        {
            "question": i.question,
            "reference_answer": i.reference_answer,
            "reference_contexts": i.reference_contexts,
            "reference_documents": i.reference_documents,
            "tags": i.tags,
            "answerable": i.answerable,
        }
        for i in (base.items if base is not None else [])
    ]
    known = {str(item["question"]) for item in items}
    for feedback, query in chosen:
        if query.question not in known:
            known.add(query.question)
            items.append(
                {
                    "question": query.question,
                    "reference_answer": feedback.expected_answer or "",
                    "reference_contexts": [],
                    "reference_documents": [],
                    "tags": ["feedback"] if feedback.answerable is not False else ["feedback", "gap"],
                    "answerable": feedback.answerable is not False,
                }
            )
    return catalog.create_golden_set(session, collection, "from-feedback", "feedback", items), base
