"""Schemathesis against the service's own OpenAPI schema: no 5xx, no response that breaks the schema."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from core.settings import Settings
from service.app import create_app

ADMIN = "rk_admin-key-for-schema-fuzzing"
# What the service promises: never a 5xx, and every response matches its documented schema and
# content type. (Requests that pass the schema may still fail a cross-field rule, e.g. a prompt
# template without {context}, so "valid data accepted" is not asserted.)
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.fixture(scope="module")
def fuzzed_app(tmp_path_factory: pytest.TempPathFactory, chroma_server: str) -> Iterator[FastAPI]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("fuzz"),
        chroma_url=chroma_server,
        admin_api_key=ADMIN,
        query={"warm_on_start": False},
        limits={"requests_per_minute": 0},
    )
    app = create_app(settings)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN}"}) as client:  # runs the lifespan
        client.post("/collections", json={"name": "fuzz-kb"})
        yield app


def test_api_never_errors_or_breaks_its_schema(fuzzed_app: FastAPI) -> None:
    """Every operation, 15 generated requests each (bounded, derandomised so CI is repeatable)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app)
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
        )
        def exercise(case: schemathesis.Case) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {ADMIN}"}, checks=CHECKS)

        exercise()
        checked.append(operation.label)
    assert len(checked) > 30
