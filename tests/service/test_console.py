"""The web console's sessions, CSRF, access rules and escaping, through the real app (no browser).

The scripted browser session against a real ``ragkeep up`` is tests/integration/test_console.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from core.settings import Settings
from service.app import create_app
from tests.conftest import EXAMPLE_DOCS

ADMIN = "rk_admin-key-for-console-tests"


@pytest.fixture
def client(tmp_path: Path, chroma_server: str) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path, chroma_url=chroma_server, admin_api_key=ADMIN, query={"warm_on_start": False}
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _csrf(page: Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def _sign_in(client: TestClient, key: str) -> str:
    response = client.post("/ui/login", data={"key": key}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return _csrf(client.get("/ui/collections"))


def _alerts(page: Response) -> list[str]:
    return re.findall(r'role="alert"[^>]*>([^<]*)<', page.text)


def _new_key(client: TestClient, csrf: str, role: str, collections: str) -> str:
    created = client.post(
        "/ui/keys", data={"csrf_token": csrf, "name": f"{role}-1", "role": role, "collections": collections}
    )
    assert created.status_code == 201, _alerts(created)
    found = re.search(r'class="secret">([^<]+)<', created.text)
    assert found
    return found.group(1)


def test_pages_need_a_session_and_a_wrong_key_is_refused_with_its_reason(client: TestClient) -> None:
    response = client.get("/ui/collections", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/ui/login?next=/ui/collections"
    refused = client.post("/ui/login", data={"key": "rk_nope"})
    assert refused.status_code == 401 and "invalid API key" in refused.text
    assert "rk_console" not in refused.headers.get("set-cookie", "")


def test_the_session_cookie_is_httponly_strict_and_expiring(client: TestClient) -> None:
    response = client.post("/ui/login", data={"key": ADMIN}, follow_redirects=False)
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=43" in cookie  # 12 h by default
    assert "Secure" not in cookie, "plain HTTP here; Secure is set when the console is served over HTTPS"
    page = client.get("/ui/collections")
    assert page.status_code == 200 and "Start here" in page.text, "the first screen says where to begin"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_every_post_needs_the_sessions_csrf_token(client: TestClient) -> None:
    csrf = _sign_in(client, ADMIN)
    assert client.post("/ui/collections", data={"name": "hr-docs"}).status_code == 403
    assert client.post("/ui/collections", data={"name": "hr-docs", "csrf_token": "forged"}).status_code == 403
    assert (
        client.post("/ui/collections", data={"name": "hr-docs", "csrf_token": csrf}, follow_redirects=False).status_code
        == 303
    )
    assert client.post("/ui/logout").status_code == 403


def test_a_reader_sees_no_write_controls_and_its_writes_are_refused(client: TestClient) -> None:
    csrf = _sign_in(client, ADMIN)
    for name in ("hr-docs", "finance"):
        client.post("/ui/collections", data={"name": name, "csrf_token": csrf})
    reader = _new_key(client, csrf, "reader", "hr-docs")
    client.cookies.clear()
    csrf = _sign_in(client, reader)
    page = client.get("/ui/c/hr-docs/documents")
    assert page.status_code == 200 and "Upload files" not in page.text and "Delete" not in page.text
    assert "Build a version now" not in client.get("/ui/c/hr-docs/versions").text
    forged = client.post("/ui/c/hr-docs/documents", data={"csrf_token": csrf}, files=[("files", ("a.txt", b"x"))])
    assert forged.status_code == 403
    assert client.post("/ui/c/hr-docs/versions", data={"csrf_token": csrf}).status_code == 403
    broken = client.post(
        "/ui/c/hr-docs/documents",
        content=b"--x\r\nnot a part",
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert broken.status_code == 403, "the role is checked before the body is read, as in the REST API"
    assert client.get("/ui/keys").status_code == 403
    for page_path in ("documents", "versions", "ask", "quality", "settings", "usage", "goldensets/1", "rollback"):
        hidden, missing = client.get(f"/ui/c/finance/{page_path}"), client.get(f"/ui/c/nothing-here/{page_path}")
        assert hidden.status_code == missing.status_code == 404, f"{page_path}: finance does not exist for this key"
        assert hidden.text.replace("finance", "X") == missing.text.replace("nothing-here", "X")
    posted = client.post("/ui/c/finance/versions", data={"csrf_token": csrf})
    assert posted.status_code == 404, "a write to an invisible collection is a 404 too, not a 403"
    assert "finance" not in client.get("/ui/collections").text


def test_revoking_the_key_ends_its_console_sessions(client: TestClient) -> None:
    csrf = _sign_in(client, ADMIN)
    writer = _new_key(client, csrf, "writer", "*")
    keys_page = client.get("/ui/keys").text
    key_id = re.findall(r'action="/ui/keys/([0-9a-f]+)/revoke"', keys_page)
    assert len(key_id) == 1
    with TestClient(client.app) as other:
        _sign_in(other, writer)
        assert other.get("/ui/collections").status_code == 200
        assert client.post(f"/ui/keys/{key_id[0]}/revoke", data={"csrf_token": csrf}).status_code == 200
        assert other.get("/ui/collections", follow_redirects=False).status_code == 303


def test_uploads_report_each_file_and_user_strings_are_escaped(client: TestClient) -> None:
    csrf = _sign_in(client, ADMIN)
    client.post("/ui/collections", data={"name": "hr-docs", "csrf_token": csrf})
    files = [
        ("files", ("<img src=x onerror=alert(1)>.txt", b"Leave policy. New hires get twenty days of leave.")),
        ("files", ("empty.txt", b"")),
    ]
    page = client.post("/ui/c/hr-docs/documents", data={"csrf_token": csrf}, files=files)
    assert page.status_code == 200
    assert "<img src=x" not in page.text and "&lt;img src=x onerror=alert(1)&gt;.txt" in page.text
    assert re.search(r'class="refused"><strong>empty\.txt</strong>:\s*refused \(422\)', page.text)
    assert re.search(r'class="ok"><strong>&lt;img src=x', page.text)
    # console.js sends one file per request with its CSRF token in a header, and shows the line it gets back.
    line = client.post(
        "/ui/c/hr-docs/documents",
        headers={"X-Upload-Fragment": "1", "X-CSRF-Token": csrf},
        files=[("files", ("notes.md", b"# Notes\n\nSick leave needs a note after three days."))],
    )
    assert line.status_code == 200 and line.text.strip().startswith('<li class="ok"><strong>notes.md</strong>')
    assert "<html" not in line.text


def test_the_upload_forms_password_opens_protected_files_and_without_it_they_are_refused(
    client: TestClient,
) -> None:
    csrf = _sign_in(client, ADMIN)
    client.post("/ui/collections", data={"name": "hr-docs", "csrf_token": csrf})
    page = client.get("/ui/c/hr-docs/documents")
    assert re.search(
        r'<label for="password">[^<]+</label>\s*<input id="password" name="password" type="password"', page.text
    )
    locked = ("files", ("password.pdf", (EXAMPLE_DOCS / "pdf" / "password.pdf").read_bytes()))
    plain = ("files", ("notes.txt", b"Leave policy notes."))
    refused = client.post("/ui/c/hr-docs/documents", data={"csrf_token": csrf}, files=[locked, plain])
    assert re.search(
        r'class="refused"><strong>password\.pdf</strong>:\s*refused \(422\): [^<]*password-protected', refused.text
    )
    assert re.search(r'class="ok"><strong>notes\.txt</strong>', refused.text)  # each file on its own
    # console.js sends the form's password with each file
    line = client.post(
        "/ui/c/hr-docs/documents",
        headers={"X-Upload-Fragment": "1", "X-CSRF-Token": csrf},
        data={"password": "password"},
        files=[locked],
    )
    assert line.status_code == 200 and line.text.strip().startswith('<li class="ok"><strong>password.pdf</strong>')
    assert "password.pdf" in client.get("/ui/c/hr-docs/documents").text


def test_settings_are_validated_as_patch_validates_them_and_shown_inline(client: TestClient) -> None:
    csrf = _sign_in(client, ADMIN)
    client.post("/ui/collections", data={"name": "hr-docs", "csrf_token": csrf})
    bad = client.post(
        "/ui/c/hr-docs/settings", data={"csrf_token": csrf, "config": '{"retrieval": {"top_k": 0}}', "owners": ""}
    )
    assert bad.status_code == 422 and _alerts(bad) and _alerts(bad)[0].startswith("config.retrieval.top_k")
    owners = client.post("/ui/c/hr-docs/settings", data={"csrf_token": csrf, "config": "{}", "owners": "nobody"})
    assert owners.status_code == 422 and "owners" in _alerts(owners)[0]
    good = client.post(
        "/ui/c/hr-docs/settings",
        data={
            "csrf_token": csrf,
            "config": '{"retrieval": {"top_k": 7}}',
            "owners": "hr@example.com",
            "description": "HR",
        },
        follow_redirects=False,
    )
    assert good.status_code == 303
    read = client.get("/collections/hr-docs", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert (
        read["config"]["retrieval"]["top_k"] == 7
        and read["owners"] == ["hr@example.com"]
        and read["description"] == "HR"
    )


def test_an_expired_session_sends_the_browser_to_sign_in(client: TestClient) -> None:
    from core import catalog
    from core.console import _digest
    from core.models import utcnow

    client.post("/ui/login", data={"key": ADMIN}, follow_redirects=False)
    token = client.cookies.get("rk_console")
    assert token
    with client.app.state.ragkeep.db.session() as session:  # type: ignore[attr-defined]
        row = catalog.get_console_session(session, _digest(token))
        assert row is not None and row.key_hash != token, "the catalog keeps hashes, never the token or the key"
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.commit()
    response = client.get("/ui/c/anything/documents", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/ui/login")
    htmx = client.get("/ui/collections", headers={"HX-Request": "true"}, follow_redirects=False)
    assert htmx.status_code == 204 and htmx.headers["hx-redirect"].startswith("/ui/login")


def test_charts_escape_their_labels_and_draw_the_interval_band() -> None:
    from service.ui import charts

    points = [charts.Point("<b>v1</b>", 0.5, 0.4, 0.6), charts.Point("v2", None), charts.Point("v3", 0.7, 0.6, 0.8)]
    svg = str(charts.trend("faithfulness <by run>", points))
    assert "<b>" not in svg and "&lt;b&gt;v1&lt;/b&gt;" in svg and "faithfulness &lt;by run&gt;" in svg
    assert '<polygon class="band"' in svg and svg.count('class="dot"') == 2, "an unmeasured run is a gap, not a 0"
    assert str(charts.sparkline([0.3])) == "", "one value draws no line"
    assert "<polyline" in str(charts.sparkline([0.3, None, 0.6], title="<x>")) and "&lt;x&gt;" in str(
        charts.sparkline([0.3, 0.6], title="<x>")
    )
    bars = str(charts.bars("queries", ["11-30", "12-01"], [0, 3]))
    assert bars.count('class="bar"') == 2 and "<title>12-01: 3</title>" in bars


def test_sign_in_from_another_origin_is_refused_and_https_cookies_are_secure(
    tmp_path: Path, chroma_server: str
) -> None:
    settings = Settings(
        data_dir=tmp_path, chroma_url=chroma_server, admin_api_key=ADMIN, query={"warm_on_start": False}
    )
    with TestClient(create_app(settings), base_url="https://console.example") as client:
        forged = client.post("/ui/login", data={"key": ADMIN}, headers={"Origin": "https://evil.example"})
        assert forged.status_code == 403 and "rk_console" not in forged.headers.get("set-cookie", "")
        signed_in = client.post(
            "/ui/login", data={"key": ADMIN}, headers={"Origin": "https://console.example"}, follow_redirects=False
        )
        assert signed_in.status_code == 303 and "Secure" in signed_in.headers["set-cookie"]


def test_a_golden_set_revision_shows_its_questions(client: TestClient) -> None:
    csrf = _sign_in(client, ADMIN)
    client.post("/ui/collections", data={"name": "hr-docs", "csrf_token": csrf})
    line = b'{"question": "How many <days> of leave?", "reference_answer": "Twenty."}\n'
    uploaded = client.post(
        "/ui/c/hr-docs/goldensets",
        data={"csrf_token": csrf},
        files=[("file", ("golden.jsonl", line))],
        follow_redirects=False,
    )
    assert uploaded.status_code == 303
    assert '<a href="/ui/c/hr-docs/goldensets/1">1</a>' in client.get("/ui/c/hr-docs/quality").text
    page = client.get("/ui/c/hr-docs/goldensets/1")
    assert page.status_code == 200 and "How many &lt;days&gt; of leave?" in page.text and "Twenty." in page.text
    assert client.get("/ui/c/hr-docs/goldensets/2").status_code == 404


def test_with_auth_disabled_the_console_signs_anyone_in_as_admin(tmp_path: Path, chroma_server: str) -> None:
    settings = Settings(data_dir=tmp_path, chroma_url=chroma_server, auth="disabled", query={"warm_on_start": False})
    with TestClient(create_app(settings)) as client:
        assert client.post("/ui/login", data={"key": "anything"}, follow_redirects=False).status_code == 303
        page = client.get("/ui/collections")
        assert page.status_code == 200 and "auth disabled · admin" in page.text and "Create a collection" in page.text
        assert client.post("/ui/collections", data={"name": "hr-docs"}).status_code == 403, "CSRF still holds"


def test_deleting_a_document_and_an_impossible_rollback_answer_like_the_api(client: TestClient) -> None:
    csrf = _sign_in(client, ADMIN)
    client.post("/ui/collections", data={"name": "hr-docs", "csrf_token": csrf})
    client.post("/ui/c/hr-docs/documents", data={"csrf_token": csrf}, files=[("files", ("a.txt", b"Leave policy."))])
    ids = re.findall(r'action="/ui/c/hr-docs/documents/([0-9a-f]+)/delete"', client.get("/ui/c/hr-docs/documents").text)
    assert len(ids) == 1
    assert client.get(f"/ui/c/hr-docs/documents/{ids[0]}").status_code == 200
    deleted = client.post(f"/ui/c/hr-docs/documents/{ids[0]}/delete", data={"csrf_token": csrf}, follow_redirects=False)
    assert deleted.status_code == 303
    assert client.get(f"/ui/c/hr-docs/documents/{ids[0]}").status_code == 404
    assert "a.txt" not in client.get("/ui/c/hr-docs/documents").text
    audit = client.get("/audit", headers={"Authorization": f"Bearer {ADMIN}"}).json()["items"]
    assert {"documents.upload", "documents.delete", "collection.create"} <= {a["action"] for a in audit}
    rollback = client.get("/ui/c/hr-docs/rollback")
    assert rollback.status_code == 409 and "no earlier live version" in rollback.text
    assert client.post("/ui/c/hr-docs/rollback", data={"csrf_token": csrf}).status_code == 409
    assert client.get("/ui/c/hr-docs/versions/7/publish").status_code == 404
