"""The web console in a real browser (Debian's Chromium, driven by Playwright) against a real ``ragkeep up``.

One scripted session, as an owner would click through it: sign in with the key ``ragkeep up``
printed; create a collection; upload four files from ../shared/datasets (a password-protected PDF
with its password typed in the form; an empty spreadsheet fails) and watch them reach a live
version; see the failure reason; ask a question and see the cited passage; evaluate, see the
trend chart; publish the previous version and roll back; sign out. Then
a reader key: no write controls, and its forged POST is refused (403), as is a POST without the
CSRF token. Every page is screenshotted at 1280x800 (into $RAGKEEP_ARTIFACTS, else the test's
tmp folder; the path is printed) and checked with axe-core (vendored; no serious or critical
violation). The browser may talk to 127.0.0.1 only: any other request is aborted and fails the test.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import DATASETS, EXAMPLE_DOCS
from tests.processes import ragkeep_up

playwright_sync = pytest.importorskip("playwright.sync_api")
Page = playwright_sync.Page
pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
FILES = [
    EXAMPLE_DOCS / "fake-text.txt",
    EXAMPLE_DOCS / "handbook-1p.docx",
    EXAMPLE_DOCS / "empty.xlsx",  # no text in it: fails to parse
    DATASETS / "pdfminer-samples-subset" / "encryption" / "rc4-40.pdf",  # password-protected (user password "foo")
]
GOLDEN = [
    {
        "question": "Which animals are the best?",
        "reference_answer": "Dogs are the best.",
        "reference_contexts": [FILES[0].read_text(encoding="utf-8")],
    },
    {
        "question": "Where is the test document from?",
        "reference_answer": "Doylestown, PA 18901",
        "reference_contexts": [FILES[0].read_text(encoding="utf-8")],
    },
]
SLOW = 180_000  # ms: parsing, building and evaluating on two shared cores


class Console:
    """The browser session plus what the test checks on every page."""

    def __init__(self, page: Any, url: str, artifacts: Path) -> None:
        self.page, self.url, self.artifacts = page, url, artifacts
        self.shots: list[str] = []
        self.axe_source = AXE.read_text(encoding="utf-8")

    def go(self, path: str) -> None:
        self.page.goto(self.url + path)

    def check(self, name: str) -> None:
        """Screenshot this page and hold it to axe-core's serious and critical rules."""
        self.page.wait_for_load_state("load")
        shot = self.artifacts / f"{len(self.shots) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(shot), full_page=False)
        self.shots.append(shot.name)
        # Runtime.evaluate is not subject to the page's CSP, so the console's policy stays as served.
        if not self.page.evaluate("typeof window.axe !== 'undefined'"):
            self.page.evaluate(self.axe_source + "\n;undefined")
        result = self.page.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
            ".map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' '))}))"
        )
        bad = [v for v in result if v["impact"] in ("serious", "critical")]
        assert not bad, f"{name}: accessibility violations {json.dumps(bad, indent=1)}"

    def reload_until(self, path: str, selector: str, timeout_s: float = SLOW / 1000) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            self.go(path)
            if self.page.locator(selector).count():
                return
            assert time.monotonic() < deadline, f"{selector!r} never appeared on {path}"
            time.sleep(1)


@pytest.fixture(scope="module")
def stack_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """A real ``ragkeep up`` on the embedded default; yields its URL, the admin key it printed, its folder."""
    tmp = tmp_path_factory.mktemp("console")
    with ragkeep_up(tmp) as up:
        key = up.admin_key()
        assert f"Sign in to the web console with it: {up.url}/ui" in up.log.read_text()
        yield up.url, key, tmp


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: sh scripts/apt-install.sh apt-test.txt")
    with playwright_sync.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield chromium
        chromium.close()


def _guard(context: Any, outside: list[str], csp_errors: list[str]) -> None:
    """Abort and record every request that is not to 127.0.0.1; record CSP refusals."""

    def route(r: Any) -> None:
        host = urlsplit(r.request.url).hostname
        if r.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    context.on(
        "console",
        lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None,
    )


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    root = Path(os.environ["RAGKEEP_ARTIFACTS"]) / "console" if os.environ.get("RAGKEEP_ARTIFACTS") else tmp_path
    root.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots: {root}")
    return root


def _post_status(page: Any, url: str, form: dict[str, str]) -> int:
    """A POST from inside the signed-in browser (its cookie, same origin), as a forged form would send it."""
    status: int = page.evaluate(
        "async ([url, form]) => (await fetch(url, {method: 'POST', body: new URLSearchParams(form),"
        " redirect: 'manual'})).status",
        [url, form],
    )
    return status


def test_an_owner_runs_a_collection_from_the_console(
    stack_up: tuple[str, str, Path], browser: Any, artifacts: Path, tmp_path: Path
) -> None:
    url, admin_key, _ = stack_up
    outside: list[str] = []
    csp_errors: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    _guard(context, outside, csp_errors)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.on("dialog", lambda dialog: dialog.accept())
    ui = Console(page, url, artifacts)
    expect = playwright_sync.expect
    expect.set_options(timeout=60_000)  # two shared cores, other test runs beside this one

    # Sign in with the key ragkeep up printed; the first screen says where to start.
    ui.go("/ui")
    assert page.url.startswith(f"{url}/ui/login")
    ui.check("sign-in")
    page.fill("#key", "rk_wrong")
    page.click("button[type=submit]")
    expect(page.locator("[role=alert]")).to_contain_text("invalid API key")
    page.fill("#key", admin_key)
    page.click("button[type=submit]")
    expect(page.locator("h2", has_text="Start here")).to_be_visible()
    cookie = next(c for c in context.cookies() if c["name"] == "rk_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["expires"] > time.time()
    ui.check("collections-empty")

    # Create a collection; upload three files, one of which fails; watch them reach a live version.
    page.fill("#cname", "handbook")
    page.fill("#cdesc", "Team handbook & test documents")
    page.click("form[action='/ui/collections'] button")
    expect(page.locator("h1")).to_have_text("Documents")
    dropped = page.evaluate_handle(
        "() => { const t = new DataTransfer();"
        " t.items.add(new File(['a'], 'a.txt')); t.items.add(new File(['b'], 'b.txt')); return t; }"
    )
    page.wait_for_load_state("load")  # console.js (deferred) has set up the drop box
    page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})
    # the dropped files land in the file input (a function: a string predicate would need eval, which the CSP forbids)
    page.wait_for_function("() => document.getElementById('files').files.length === 2")
    page.set_input_files("#files", [str(f) for f in FILES])
    page.fill("#password", "foo")  # opens rc4-40.pdf; the other files have none
    page.click("#upload-form button[type=submit]")
    expect(page.locator(".outcomes li.ok")).to_have_count(4)
    ui.check("documents-uploaded")
    expect(page.locator("#documents .summary")).to_contain_text("Live: v1", timeout=SLOW)  # htmx polling, no reload
    expect(page.locator("#documents .summary")).to_contain_text("3 ready, 1 failed")
    failed = page.locator("tr", has=page.locator(".badge.failed"))
    expect(failed.locator(".reason")).to_contain_text("no text could be extracted")
    ui.check("documents-live")
    ui.go("/ui/c/handbook/documents")
    ui.check("documents")
    page.click("#documents a:has-text('rc4-40.pdf')")
    expect(page.locator("h2", has_text="Revisions")).to_be_visible()
    ui.check("document-revisions")

    # Ask: the answer cites a passage, with where it came from.
    ui.go("/ui/c/handbook/ask")
    page.fill("#question", "Which animals are the best?")
    page.click("form.ask button[type=submit]")
    answer = page.locator("section.answer").first
    expect(answer.locator(".citations .where").first).to_contain_text("fake-text.txt")
    expect(answer.locator("blockquote.passage").first).to_contain_text("Dogs are the best")
    ui.check("ask")

    # Quality: a golden set, an evaluation of v1, then of v2 (built by hand), and the trend chart.
    golden = tmp_path / "golden.jsonl"
    golden.write_text("\n".join(json.dumps(g) for g in GOLDEN) + "\n", encoding="utf-8")
    ui.go("/ui/c/handbook/quality")
    page.set_input_files("#golden", str(golden))
    page.click("form[action$='/goldensets'] button")
    expect(page.locator("td", has_text="golden.jsonl")).to_be_visible()
    page.click("a[href='/ui/c/handbook/goldensets/1']")
    expect(page.locator("td", has_text="Which animals are the best?")).to_be_visible()
    ui.check("golden-set")
    ui.go("/ui/c/handbook/quality")
    page.click("text=Evaluate the live version now")
    ui.reload_until("/ui/c/handbook/quality", "svg.trend circle.dot")
    ui.go("/ui/c/handbook/versions")
    page.click("text=Build a version now")
    ui.reload_until("/ui/c/handbook/versions", "#v2 .badge.live")
    ui.go("/ui/c/handbook/quality")
    page.click("text=Evaluate the live version now")
    ui.reload_until("/ui/c/handbook/quality", "svg.trend >> nth=0 >> circle.dot >> nth=1")
    expect(page.locator("svg.trend polyline.line").first).to_be_attached()
    ui.check("quality")

    # Publish the previous version (the confirmation names what changes), then roll back.
    ui.go("/ui/c/handbook/versions")
    ui.check("versions")
    page.click("text=Publish v1…")
    expect(page.locator("h1")).to_contain_text("Publish v1 of handbook?")
    expect(page.locator("main")).to_contain_text("v2 is live now")
    ui.check("confirm-publish")
    page.click("button:has-text('Publish v1')")
    expect(page.locator("#v1 .badge.live")).to_be_visible()
    page.click("text=Roll back to v2…")
    expect(page.locator("h1")).to_contain_text("Roll handbook back to v2?")
    page.click("button:has-text('Roll back to v2')")
    expect(page.locator("#v2 .badge.live")).to_be_visible()
    ui.go("/ui/c/handbook/versions/diff?a=1&b=2")
    ui.check("diff")

    # Ask two versions side by side.
    ui.go("/ui/c/handbook/ask")
    page.fill("#question", "Where is the test document from?")
    page.select_option("#version", "1")
    page.select_option("#compare", "2")
    page.click("form.ask button[type=submit]")
    expect(page.locator("section.answer")).to_have_count(2)
    ui.check("ask-side-by-side")

    for tab in ("settings", "usage"):
        ui.go(f"/ui/c/handbook/{tab}")
        ui.check(tab)
    ui.go("/ui/collections")
    expect(page.locator("td", has_text="handbook")).to_be_visible()
    ui.check("collections")

    # An admin makes a reader key; the reader sees no write controls and cannot write.
    ui.go("/ui/keys")
    page.fill("#kname", "reader for handbook")
    page.fill("#kscope", "handbook")
    page.click("form[action='/ui/keys'] button")
    reader_key = page.locator("code.secret").inner_text()
    ui.check("keys")
    page.click("text=Sign out")
    expect(page.locator("h1")).to_have_text("Sign in to ragkeep")
    ui.go("/ui/collections")
    assert page.url.startswith(f"{url}/ui/login"), "signed out: the console asks for a key again"

    page.fill("#key", reader_key)
    page.click("button[type=submit]")
    ui.go("/ui/c/handbook/documents")
    assert page.locator("#upload-form").count() == 0 and page.locator("button.danger").count() == 0
    ui.check("reader-documents")
    ui.go("/ui/c/handbook/versions")
    assert page.locator("text=Build a version now").count() == 0 and page.locator("text=Publish v1…").count() == 0
    for tab in ("quality", "settings"):
        ui.go(f"/ui/c/handbook/{tab}")
        assert page.locator("main button[type=submit]").count() == 0, f"a reader sees no write control on {tab}"
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert _post_status(page, "/ui/c/handbook/versions/1/publish", {"csrf_token": csrf}) == 403
    assert _post_status(page, "/ui/c/handbook/rollback", {}) == 403
    assert _post_status(page, "/ui/c/handbook/ask", {"question": "x"}) == 403, "no CSRF token: refused"
    page.click("text=Sign out")
    expect(page.locator("h1")).to_have_text("Sign in to ragkeep")
    context.close()

    print(f"console screenshots ({len(ui.shots)}): {artifacts}")
    assert not outside, f"the browser tried to reach beyond 127.0.0.1: {outside}"
    assert not csp_errors, f"the console broke its own Content-Security-Policy: {csp_errors}"
