"""Every route of the OpenAPI document by every kind of caller, through HTTP against real processes.

Two collections: ``alpha`` (with ``alpha-spare``) is what the scoped keys may see, ``bravo`` is
what they may not. For each operation and each principal the test asserts the status, that
nothing of bravo appears in any answer a scoped key gets (beyond echoing what it sent), and
that an id or name of bravo's answers exactly as one that does not exist.

Regression (issue 15.1, 15.2): a collection-scoped admin key could list and revoke other
collections' keys, read their audit rows, learn their names from a 409, and mint an
unscoped admin key; a reader that posted a malformed upload got 422 instead of 403; an
evaluation id of another collection answered 422 where an unknown one answered 404.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import EXAMPLE_DOCS, REDIS_URL
from tests.integration.conftest import ADMIN_KEY, Stack, run_stack

pytestmark = pytest.mark.integration

HEALTH = {"/healthz", "/readyz", "/metrics"}
UNAUTHENTICATED = ("none", "malformed", "revoked", "expired")
SCOPED = ("reader-A", "writer-A", "admin-A")
RANK = {"reader": 0, "writer": 1, "admin": 2}
GHOST = "0123456789abcdef0123456789abcdef"  # an id that exists nowhere
GHOST_NAME = "zulu-nowhere"
# (method, path) → the role the route needs on its collection; "global" needs an unscoped admin.
ROLES: dict[tuple[str, str], str] = {
    ("post", "/collections"): "global",
    ("patch", "/collections/{name}"): "writer",
    ("delete", "/collections/{name}"): "admin",
    ("post", "/collections/{name}/documents"): "writer",
    ("delete", "/collections/{name}/documents/{document_id}"): "writer",
    ("post", "/collections/{name}/versions"): "writer",
    ("post", "/collections/{name}/versions/{number}/publish"): "writer",
    ("post", "/collections/{name}/rollback"): "writer",
    ("post", "/collections/{name}/goldensets"): "writer",
    ("post", "/collections/{name}/goldensets/from-feedback"): "writer",
    ("post", "/collections/{name}/versions/{number}/evaluations"): "writer",
    ("post", "/collections/{name}/reports/send"): "writer",
    ("post", "/collections/{name}/prompts"): "writer",
    ("post", "/keys"): "admin",
    ("get", "/keys"): "admin",
    ("delete", "/keys/{key_id}"): "admin",
    ("get", "/audit"): "admin",
}


@dataclass
class Side:
    """One collection's names and ids, as the requests of the matrix use them."""

    name: str
    spare: str
    document_id: str = ""
    job_id: str = ""
    evaluation_id: str = ""
    report_id: str = ""
    query_id: str = ""
    feedback_id: str = ""
    key_id: str = ""
    markers: set[str] = field(default_factory=set)


@dataclass
class World:
    stack: Stack
    keys: dict[str, str]
    alpha: Side
    bravo: Side
    ghost: Side
    plain: httpx.Client  # no default headers: each request carries only its principal's key
    counter: Iterator[int] = field(default_factory=itertools.count)


def _admin(s: Stack) -> httpx.Client:
    return s.http


def _key(s: Stack, name: str, role: str, collections: object, **extra: object) -> tuple[str, str]:
    response = _admin(s).post("/keys", json={"name": name, "role": role, "collections": collections, **extra})
    assert response.status_code == 201, response.text
    return response.json()["key"], response.json()["id"]


def _fill(s: Stack, side: Side, text: bytes) -> None:
    """A live version with one document, a golden set, an evaluation, a query, feedback and a report."""
    http = _admin(s)
    assert http.post("/collections", json={"name": side.name, "owners": ["owner@example.com"]}).status_code == 201
    assert http.post("/collections", json={"name": side.spare}).status_code == 201
    upload = s.upload(side.name, [("notes.txt", text)])
    side.document_id, side.job_id = upload["documents"][0]["id"], upload["job_id"]
    s.wait_live(side.name, 1)
    golden = json.dumps({"question": "What do the notes say?", "reference_answer": text.decode()[:80]})
    assert http.post(f"/collections/{side.name}/goldensets", files={"file": ("g.jsonl", golden)}).status_code == 201
    evaluation = http.post(f"/collections/{side.name}/versions/1/evaluations").json()
    side.evaluation_id = evaluation["evaluation_id"]
    s.wait_job(evaluation["job_id"])
    answer = http.post("/query", json={"collection": side.name, "question": "What do the notes say?"})
    assert answer.status_code == 200, answer.text
    side.query_id = answer.json()["query_id"]
    feedback = http.post(
        "/feedback", json={"query_id": side.query_id, "rating": "down", "expected_answer": "the notes' text"}
    )
    assert feedback.status_code == 201, feedback.text
    side.feedback_id = feedback.json()["id"]
    # The report is stored before it is mailed (no SMTP server here: the job keeps retrying).
    assert http.post(f"/collections/{side.name}/reports/send").status_code == 202
    deadline = time.monotonic() + 120
    while not (reports := http.get(f"/collections/{side.name}/reports").json()["items"]):
        assert time.monotonic() < deadline, "the report was not built"
        time.sleep(0.3)
    side.report_id = reports[0]["id"]
    side.markers = {
        side.name,
        side.document_id,
        side.job_id,
        side.evaluation_id,
        side.report_id,
        side.query_id,
        side.feedback_id,
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, chroma_server: str) -> Iterator[World]:
    env = {"RAGKEEP_REDIS_URL": REDIS_URL, "RAGKEEP_LIMITS__REQUESTS_PER_MINUTE": "0"}
    for s in run_stack(tmp_path_factory.mktemp("access-matrix"), chroma_server, env):
        alpha, bravo = Side("alpha", "alpha-spare"), Side("bravo", "bravo-spare")
        _fill(s, alpha, (EXAMPLE_DOCS / "fake-text.txt").read_bytes())
        _fill(s, bravo, b"Bravo's quarterly revenue was 13,507 million. The board met in May.")
        scope = [alpha.name, alpha.spare]
        keys = {"global": ADMIN_KEY, "none": "", "malformed": "rk_not-a-key"}
        for role in RANK:
            keys[f"{role}-A"] = _key(s, f"{role}-A", role, scope)[0]
        alpha.key_id = _key(s, "spare-A", "reader", [alpha.name])[1]
        bravo.key_id = _key(s, "reader-B", "reader", [bravo.name])[1]
        bravo.markers |= {bravo.key_id, "reader-B"}
        revoked, revoked_id = _key(s, "revoked", "admin", "*")
        assert _admin(s).delete(f"/keys/{revoked_id}").status_code == 204
        keys["revoked"] = revoked
        soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        keys["expired"] = _key(s, "expired", "admin", "*", expires_at=soon)[0]
        time.sleep(1.2)
        ghost = Side(GHOST_NAME, GHOST_NAME, GHOST, GHOST, GHOST, GHOST, GHOST, GHOST, GHOST)
        with httpx.Client(base_url=s.url, timeout=60) as plain:
            yield World(s, keys, alpha, bravo, ghost, plain)


def _operations(world: World) -> list[tuple[str, str]]:
    schema = world.stack.http.get("/openapi.json").json()
    return sorted((method, path) for path, item in schema["paths"].items() for method in item)


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    files: Any = None
    sent: tuple[str, ...] = ()  # values the caller sent, which an answer may echo


def _call(world: World, method: str, template: str, side: Side) -> Call:
    """A well-formed request to ``method template`` about ``side``'s objects."""
    n = next(world.counter)
    values = {
        "name": side.name,
        "document_id": side.document_id,
        "number": "1",
        "evaluation_id": side.evaluation_id,
        "report_id": side.report_id,
        "job_id": side.job_id,
        "key_id": side.key_id,
    }
    if (method, template) == ("delete", "/collections/{name}"):
        values["name"] = side.spare  # alpha-spare, created again before each deletion
        if side is world.alpha:
            world.stack.http.post("/collections", json={"name": side.spare})
    if (method, template) == ("delete", "/collections/{name}/documents/{document_id}") and side is world.alpha:
        values["document_id"] = world.stack.upload(side.name, [(f"spare-{n}.txt", f"spare {n}".encode())])["documents"][
            0
        ]["id"]
    call = Call(method, template.format(**values))
    call.sent = tuple(v for k, v in values.items() if "{" + k + "}" in template)
    body_for: dict[tuple[str, str], Callable[[], None]] = {
        ("post", "/collections"): lambda: setattr(call, "json", {"name": f"new-{n}"}),
        ("patch", "/collections/{name}"): lambda: setattr(call, "json", {"description": "matrix"}),
        ("post", "/collections/{name}/documents"): lambda: setattr(
            call, "files", [("files", (f"m-{n}.txt", f"matrix upload {n}".encode()))]
        ),
        ("post", "/collections/{name}/goldensets"): lambda: setattr(
            call, "files", {"file": ("g.jsonl", json.dumps({"question": "q?", "reference_answer": "a"}))}
        ),
        ("post", "/collections/{name}/goldensets/from-feedback"): lambda: setattr(
            call, "json", {"feedback_ids": [side.feedback_id]}
        ),
        ("post", "/collections/{name}/prompts"): lambda: setattr(
            call, "json", {"template": "Context:\n{context}\n\nQuestion: {question}\nAnswer:"}
        ),
        ("post", "/query"): lambda: setattr(call, "json", {"collection": side.name, "question": "notes?"}),
        ("post", "/v1/chat/completions"): lambda: setattr(
            call, "json", {"model": side.name, "messages": [{"role": "user", "content": "notes?"}]}
        ),
        ("post", "/feedback"): lambda: setattr(call, "json", {"query_id": side.query_id, "rating": "up"}),
        ("post", "/keys"): lambda: setattr(
            call, "json", {"name": f"made-{n}", "role": "reader", "collections": [side.name]}
        ),
        ("get", "/audit"): lambda: call.params.update(collection=side.name),
        ("get", "/collections/{name}/evaluations/compare"): lambda: call.params.update(
            base=side.evaluation_id, candidate=side.evaluation_id
        ),
    }
    if (method, template) in body_for:
        body_for[(method, template)]()
    for key in ("collection", "base", "candidate"):
        if key in call.params:
            call.sent += (call.params[key],)
    if isinstance(call.json, dict):
        call.sent += tuple(str(call.json[k]) for k in ("collection", "model", "query_id") if k in call.json)
        call.sent += tuple(call.json.get("feedback_ids", ())) + tuple(call.json.get("collections", ()))
    return call


def _send(world: World, principal: str, call: Call, malformed: bool = False) -> httpx.Response:
    key = world.keys[principal]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if malformed:  # a body no route accepts: the key's rights must be checked before it is read
        headers["content-type"] = "application/json"
        return world.plain.request(
            call.method.upper(), call.path, params=call.params, content=b'{"junk": [', headers=headers
        )
    return world.plain.request(
        call.method.upper(), call.path, params=call.params, json=call.json, files=call.files, headers=headers
    )


def _scrub(text: str, sent: tuple[str, ...], placeholder: str = "<sent>") -> str:
    for value in sorted(set(sent), key=len, reverse=True):
        if value:
            text = text.replace(value, placeholder)
    return text


def _needs(method: str, template: str) -> str:
    return ROLES.get((method, template), "reader")


def _allowed(principal: str, need: str) -> bool:
    if principal == "global":
        return True
    if need == "global":
        return False
    return RANK[principal.removesuffix("-A")] >= RANK[need]


def test_every_route_answers_every_principal_as_its_rights_say(world: World) -> None:
    operations = _operations(world)
    assert len(operations) > 40
    problems: list[str] = []
    cells = 0
    for method, template in operations:
        need = _needs(method, template)
        for principal in (*UNAUTHENTICATED, *SCOPED, "global"):
            a = _call(world, method, template, world.alpha)
            response = _send(world, principal, a)
            cells += 1
            where = f"{method.upper()} {template} as {principal}"
            if template in HEALTH:
                if response.status_code not in (200, 503):
                    problems.append(f"{where}: {response.status_code}")
                continue
            if principal in UNAUTHENTICATED:
                expected_ok = response.status_code == 401
            elif _allowed(principal, need):
                expected_ok = response.status_code not in (401, 403, 404) and response.status_code < 500
            else:
                expected_ok = response.status_code == 403
            if not expected_ok:
                problems.append(f"{where}: {response.status_code} {response.text[:200]}")
            if principal == "global":
                continue
            leaked = [m for m in world.bravo.markers if m in _scrub(response.text, a.sent)]
            if leaked:
                problems.append(f"{where} mentions bravo ({leaked}): {response.text[:300]}")
            # A body that no route accepts: 401/403 first, never a 422 that describes the route.
            if method in ("post", "patch") and (principal in UNAUTHENTICATED or not _allowed(principal, need)):
                malformed = _send(world, principal, a, malformed=True)
                if malformed.status_code != (401 if principal in UNAUTHENTICATED else 403):
                    problems.append(f"{where}, malformed body: {malformed.status_code} {malformed.text[:200]}")
            if principal in UNAUTHENTICATED or not a.sent:
                continue  # nothing of a collection was named: there is no bravo to compare
            # bravo's objects answer exactly as objects that do not exist.
            b = _call(world, method, template, world.bravo)
            ghost = _call(world, method, template, world.ghost)
            hidden, missing = _send(world, principal, b), _send(world, principal, ghost)
            if (hidden.status_code, _scrub(hidden.text, b.sent)) != (
                missing.status_code,
                _scrub(missing.text, ghost.sent),
            ):
                problems.append(
                    f"{where}: bravo's answered {hidden.status_code} {hidden.text[:160]!r}, "
                    f"an unknown one {missing.status_code} {missing.text[:160]!r}"
                )
            if hidden.status_code < 400 and (method, template) != ("get", "/audit"):
                problems.append(f"{where}: bravo's objects answered {hidden.status_code}")
            leaked = [m for m in world.bravo.markers if m in _scrub(hidden.text, b.sent)]
            if leaked:
                problems.append(f"{where} on bravo mentions it ({leaked}): {hidden.text[:300]}")
    assert not problems, f"{len(problems)} of {cells} cells are wrong:\n" + "\n".join(problems)


def test_a_scoped_admin_cannot_widen_itself(world: World) -> None:
    """Regression: a scoped admin minted an unscoped admin key and read bravo through it."""
    headers = {"Authorization": f"Bearer {world.keys['admin-A']}"}
    http = world.stack.http
    for body in (
        {"name": "wider", "role": "admin", "collections": "*"},
        {"name": "wider", "role": "reader", "collections": ["bravo"]},
        {"name": "wider", "role": "writer", "collections": ["alpha", "bravo"]},
    ):
        refused = http.post("/keys", json=body, headers=headers)
        assert refused.status_code == 403, (body, refused.text)
        assert "bravo" not in refused.text
    made = http.post("/keys", json={"name": "own", "role": "admin", "collections": ["alpha"]}, headers=headers)
    assert made.status_code == 201, made.text
    own = {"Authorization": f"Bearer {made.json()['key']}"}
    # The key it made is narrower still: it cannot hand alpha-spare out.
    narrower = http.post("/keys", json={"name": "n", "role": "reader", "collections": ["alpha-spare"]}, headers=own)
    assert narrower.status_code == 403
    listed = http.get("/keys", headers=headers).json()
    assert all(set(k["collections"]) <= {"alpha", "alpha-spare"} for k in listed["items"])
    assert http.delete(f"/keys/{world.bravo.key_id}", headers=headers).status_code == 404
    assert http.get("/audit", params={"collection": "bravo"}, headers=headers).json() == {"items": [], "total": 0}
    assert all(
        row["collection"] in ("alpha", "alpha-spare", None)
        for row in http.get("/audit", headers=headers).json()["items"]
    )
    created = http.post("/collections", json={"name": "bravo"}, headers=headers)
    assert created.status_code == 403 and "bravo" not in created.text


def test_hostile_input_is_a_4xx_never_a_5xx(world: World) -> None:
    """Regression (issue 15.3): deep metadata and deep JSON were 500 and 400, extreme dates 500,
    ``to=0`` was read as 1970, OPTIONS named one method of three, top_k's message named 500."""
    http = world.stack.http
    deep = http.post(
        "/collections/alpha/documents", files=[("files", ("d.txt", b"deep"))], data={"metadata": "[" * 100_000}
    )
    assert deep.status_code == 422 and "nests too deeply" in deep.json()["detail"]
    big = http.post(
        "/collections/alpha/documents", files=[("files", ("d.txt", b"big"))], data={"metadata": " " * 200_000 + "{}"}
    )
    assert big.status_code == 422 and "at most" in big.json()["detail"]
    for body in (b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe{", b'{"collection": "alpha", "question": '):
        response = http.post("/query", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, (body[:20], response.text)
        assert response.json()["error"] == "InvalidInput"
    for query in ("to=0001-01-01", "to=9999-12-31", "from=0001-01-01&to=9999-12-31"):
        usage = http.get(f"/collections/alpha/usage?{query}")
        assert usage.status_code == 200, (query, usage.text)
    assert http.get("/collections/alpha/usage?to=9999-12-31").json()["queries"] == 0
    assert http.get("/collections/alpha/usage?from=0001-01-01&to=9999-12-31").json()["queries"] >= 1
    for query in ("to=0", "to=1700000000", "from=2026-02-30"):
        assert http.get(f"/collections/alpha/usage?{query}").status_code == 422, query
    options = http.options("/collections/alpha")
    assert options.status_code == 204 and {"GET", "PATCH", "DELETE"} <= set(options.headers["allow"].split(", "))
    put = http.put("/collections/alpha")
    assert put.status_code == 405 and {"GET", "PATCH", "DELETE"} <= set(put.headers["allow"].split(", "))
    top = http.post("/query", json={"collection": "alpha", "question": "notes?", "top_k": 10**12})
    assert top.status_code == 422 and top.json()["detail"] == "top_k may be at most 50"
    schema = http.get("/openapi.json").json()
    assert schema["components"]["schemas"]["QueryCreate"]["properties"]["top_k"]["anyOf"][0]["maximum"] == 50
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            refusal = operation["responses"]["422"]["content"]["application/json"]["schema"]
            assert refusal == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)
            if path not in HEALTH:
                assert {"401", "403", "429"} <= set(operation["responses"]), (method, path)
