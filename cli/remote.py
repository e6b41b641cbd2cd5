"""CLI commands that drive a running ragkeep over its HTTP API (``RAGKEEP_URL``, ``RAGKEEP_API_KEY``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.http_client import ApiError, Server, Unreachable
from eval.unmeasured import describe

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

collections_app = typer.Typer(help="Create and list collections.", no_args_is_help=True)
versions_app = typer.Typer(help="List, publish and roll back versions.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluations.", no_args_is_help=True)
report_app = typer.Typer(help="Owner reports.", no_args_is_help=True)

CollectionOption = Annotated[str, typer.Option("--collection", "-c", help="Collection name.")]
WaitOption = Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the job to finish.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the server's JSON instead of a table.")]

P = ParamSpec("P")
R = TypeVar("R")


def talks_to_server(command: Callable[P, R]) -> Callable[P, R]:
    """Turn API errors into a one-line message and exit code 1 (2 when the server cannot be reached)."""

    @wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ApiError as exc:
            err.print(escape(str(exc)))
            raise typer.Exit(code=1) from exc
        except Unreachable as exc:
            err.print(escape(str(exc)))
            raise typer.Exit(code=2) from exc

    return run


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------- collections


@collections_app.command("create")
@talks_to_server
def collections_create(
    name: Annotated[str, typer.Argument(help="Lowercase letters, digits, '-' and '_'.")],
    description: Annotated[str, typer.Option(help="What the collection holds.")] = "",
    owner: Annotated[list[str] | None, typer.Option(help="Owner e-mail (repeat); gets the reports.")] = None,
    config: Annotated[str | None, typer.Option(help="Collection config as JSON, or @file.json.")] = None,
) -> None:
    """Create a collection (admin)."""
    body: dict[str, Any] = {"name": name, "description": description, "owners": owner or []}
    if config:
        text = Path(config[1:]).read_text() if config.startswith("@") else config
        try:
            body["config"] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"--config is not valid JSON: {exc}") from exc
    with Server() as server:
        created = server.call("POST", "/collections", json=body)
    out.print(f"created collection {created['name']}")


@collections_app.command("list")
@talks_to_server
def collections_list(as_json: JsonOption = False) -> None:
    """List the collections this key can see."""
    with Server() as server:
        items = list(_pages(server, "/collections"))
    if as_json:
        _print_json(items)
        return
    table = Table("name", "live", "documents", "policy", "owners", "description")
    for c in items:
        live = f"v{c['live_version']}" if c["live_version"] else "-"
        table.add_row(
            c["name"],
            live,
            str(c["document_count"]),
            c["config"]["publish_policy"],
            ", ".join(c["owners"]),
            c["description"],
        )
    out.print(table)


def _pages(server: Server, path: str, limit: int = 100) -> Iterator[dict[str, Any]]:
    offset = 0
    while True:
        page = server.call("GET", path, params={"offset": offset, "limit": limit})
        yield from page["items"]
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return


# --------------------------------------------------------------------------- versions


@versions_app.command("list")
@talks_to_server
def versions_list(collection: CollectionOption, as_json: JsonOption = False) -> None:
    """List a collection's versions, newest first."""
    with Server() as server:
        items = list(_pages(server, f"/collections/{collection}/versions"))
    if as_json:
        _print_json(items)
        return
    table = Table("version", "state", "documents", "chunks", "embedded", "build s", "built", "note")
    for v in items:
        note = v["error"] or (v["gate"].get("reason") if v["gate"] else "") or ""
        table.add_row(
            f"v{v['number']}",
            v["state"],
            str(v["document_count"]),
            str(v["chunk_count"]),
            str(v["embedded_chunk_count"]),
            f"{v['build_seconds']:.1f}" if v["build_seconds"] is not None else "-",
            (v["built_at"] or "-")[:19],
            str(note),
        )
    out.print(table)


@versions_app.command("publish")
@talks_to_server
def versions_publish(collection: CollectionOption, number: Annotated[int, typer.Argument(help="Version.")]) -> None:
    """Make a version live (the live one is archived)."""
    with Server() as server:
        version = server.call("POST", f"/collections/{collection}/versions/{number}/publish")
    out.print(f"{collection} v{version['number']} is {version['state']}")


@versions_app.command("rollback")
@talks_to_server
def versions_rollback(collection: CollectionOption) -> None:
    """Make the previously live version live again."""
    with Server() as server:
        version = server.call("POST", f"/collections/{collection}/rollback")
    out.print(f"{collection} rolled back to v{version['number']}")


# ------------------------------------------------------------------------------ query


@talks_to_server
def query(
    question: Annotated[str, typer.Argument(help="The question.")],
    collection: CollectionOption,
    top_k: Annotated[int | None, typer.Option("--top-k", help="Passages to retrieve.")] = None,
    version: Annotated[int | None, typer.Option(help="Query this version instead of the live one.")] = None,
    retrieve: Annotated[bool, typer.Option("--retrieve", help="Only retrieve passages, no answer.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Ask a collection a question; prints the answer and its cited passages."""
    mode = "retrieve" if retrieve else "answer"
    body: dict[str, Any] = {"collection": collection, "question": question, "mode": mode}
    if top_k is not None:
        body["top_k"] = top_k
    if version is not None:
        body["version"] = version
    with Server() as server:
        result = server.call("POST", "/query", json=body)
    if as_json:
        _print_json(result)
        return
    if not retrieve:
        out.print(escape(result["answer"]) or "(no answer)")
        out.print()
    for citation in result["citations"]:
        where = citation["filename"] or "?"
        if citation["page"] is not None:
            where += f" p.{citation['page']}"
        snippet = " ".join(citation["text"].split())[:160]
        out.print(f"[{citation['n']}] {escape(where)} (score {citation['score']:.3f}): {escape(snippet)}")
    for warning in result["warnings"]:
        err.print(f"warning: {escape(warning)}")
    out.print(
        f"[dim]{result['collection']} v{result['version']} · {result['answer_mode']} · "
        f"{result['latency_ms']['total']:.0f} ms · query {result['query_id']}[/dim]"
    )


# ----------------------------------------------------------------------------- ingest

IGNORED_NAMES = {"Thumbs.db", "desktop.ini"}


@dataclass
class Upload:
    path: Path
    name: str
    size: int
    job_id: str | None = None
    document_id: str | None = None
    changed: bool = False
    status: str = "pending"
    detail: str = ""


@dataclass
class IngestRun:
    server: Server
    collection: str
    metadata: str | None
    progress: Progress
    uploads: list[Upload] = field(default_factory=list)
    build_job_ids: list[str] = field(default_factory=list)
    password: str | None = field(default=None, repr=False)

    def form(self) -> dict[str, str] | None:
        """The upload's form fields besides its files."""
        fields = {"metadata": self.metadata, "password": self.password}
        return {k: v for k, v in fields.items() if v} or None

    def upload(self, batch: list[Upload], task: TaskID) -> None:
        """Upload a batch in one request; if the server rejects it, retry its files one by one."""
        try:
            accepted = self.server.call(
                "POST",
                f"/collections/{self.collection}/documents",
                files=[("files", (u.name, u.path.read_bytes())) for u in batch],
                data=self.form(),
            )
        except ApiError as exc:
            if exc.status in (413, 415, 422) and len(batch) > 1:
                for single in batch:
                    self.upload([single], task)
                return
            if exc.status in (401, 403, 404):
                raise  # nothing else can succeed either
            for u in batch:
                u.status, u.detail = "rejected", f"{exc.status} {exc.error}: {exc.detail}"
                self.report(u)
            self.progress.advance(task, len(batch))
            return
        for u, document in zip(batch, accepted["documents"], strict=True):
            u.job_id, u.document_id, u.changed = accepted["job_id"], document["id"], document["changed"]
            u.status = "parsing" if u.changed else "unchanged"
            if not u.changed:
                self.report(u)
        self.progress.advance(task, len(batch))

    def wait_for_parsing(self, task: TaskID) -> None:
        open_jobs = {u.job_id for u in self.uploads if u.changed and u.job_id}
        done: dict[str, int] = {}
        while open_jobs:
            for job_id in sorted(open_jobs):
                job = self.server.call("GET", f"/jobs/{job_id}")
                done[job_id] = job["progress"]["done"]
                if job["status"] not in ("succeeded", "failed"):
                    continue
                open_jobs.discard(job_id)
                if (build := job["result"].get("build_job_id")) and build not in self.build_job_ids:
                    self.build_job_ids.append(build)
                for u in self.uploads:
                    if u.job_id == job_id and u.changed:
                        self.finish(u)
            self.progress.update(task, completed=sum(done.values()))
            if open_jobs:
                self.server.sleep(0.5)

    def finish(self, u: Upload) -> None:
        document = self.server.call("GET", f"/collections/{self.collection}/documents/{u.document_id}")
        if document["status"] == "ready":
            u.status, u.detail = "parsed", f"{document['chunk_count']} chunks"
        else:
            u.status, u.detail = "failed", document["error"] or document["status"]
        self.report(u)

    def report(self, u: Upload) -> None:
        marks = {"parsed": "[green]ok[/]", "unchanged": "[dim]unchanged[/]"}
        mark = marks.get(u.status, f"[red]{u.status}[/]")
        self.progress.console.print(f"{mark} {escape(str(u.path))}" + (f": {escape(u.detail)}" if u.detail else ""))

    def wait_for_build(self, job_id: str) -> dict[str, Any]:
        task = self.progress.add_task("building version", total=None)

        def show(job: dict[str, Any]) -> None:
            total = job["progress"]["total"] or None
            self.progress.update(task, completed=job["progress"]["done"], total=total)

        job = self.server.wait_job(job_id, show)
        self.progress.update(task, completed=job["progress"]["done"], total=job["progress"]["done"] or 1)
        return job

    def wait_for_builds(self) -> tuple[dict[str, Any] | None, str | None]:
        """Follow every build the uploads started: the last version built, or the error of a failed build."""
        version: dict[str, Any] | None = None
        build_error: str | None = None
        for build_job_id in self.build_job_ids:
            job = self.wait_for_build(build_job_id)
            if job["status"] == "failed":
                build_error = job["error"]
            elif job["result"].get("version"):
                version = job["result"]
        return version, build_error


def walk(paths: list[Path]) -> list[Path]:
    """Files under the given paths, sorted, skipping hidden files and folders."""
    found: list[Path] = []
    for path in paths:
        if path.is_file():
            found.append(path)
            continue
        for candidate in sorted(path.rglob("*")):
            hidden = any(part.startswith(".") for part in candidate.relative_to(path).parts)
            if candidate.is_file() and not hidden and candidate.name not in IGNORED_NAMES:
                found.append(candidate)
    return found


def _batches(uploads: list[Upload], size: int, max_bytes: int) -> Iterator[list[Upload]]:
    batch: list[Upload] = []
    total = 0
    for u in uploads:
        if batch and (len(batch) >= size or total + u.size > max_bytes):
            yield batch
            batch, total = [], 0
        batch.append(u)
        total += u.size
    if batch:
        yield batch


def _planned_uploads(files: list[Path]) -> list[Upload]:
    """One upload per file; a second file with a name already taken is rejected (documents are named by filename)."""
    uploads: list[Upload] = []
    first_of: dict[str, Path] = {}
    for path in files:
        u = Upload(path, path.name, path.stat().st_size)
        if path.name in first_of:
            u.status, u.detail = "rejected", f"same filename as {first_of[path.name]} (documents are named by filename)"
        else:
            first_of[path.name] = path
        uploads.append(u)
    return uploads


@talks_to_server
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (walked recursively).", exists=True)],
    collection: CollectionOption,
    metadata: Annotated[str | None, typer.Option(help="JSON object stored on every chunk of these files.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Files per upload request.")] = 20,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for parsing and the version build.")] = True,
    password: Annotated[
        str | None,
        typer.Option(
            envvar="RAGKEEP_UPLOAD_PASSWORD",
            show_default=False,
            help="Opens the password-protected PDF/Office files and encrypted ZIPs among them (one password for all; "
            "files it does not open are rejected). Prefer the environment variable or --ask-password: an option "
            "stays in the shell history.",
        ),
    ] = None,
    ask_password: Annotated[
        bool, typer.Option("--ask-password", help="Type the password for protected files (not echoed).")
    ] = False,
) -> None:
    """Upload files into a collection, follow their parsing and the version build, and summarise.

    Exits 1 if any file was rejected or failed to parse, or the build failed.
    Documents are named by their filename, so two files with the same name are refused.
    """
    if ask_password:
        password = typer.prompt("Password for protected files", hide_input=True, err=True)
    files = walk(paths)
    if not files:
        err.print("no files found")
        raise typer.Exit(code=2)
    uploads = _planned_uploads(files)
    with (
        Server() as server,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
        ) as progress,
    ):
        run = IngestRun(server, collection, metadata, progress, uploads, password=password)
        server.call("GET", f"/collections/{collection}")  # a clear 404 before anything is read
        for u in uploads:
            if u.status == "rejected":
                run.report(u)
        sendable = [u for u in uploads if u.status == "pending"]
        upload_task = progress.add_task("uploading", total=len(sendable))
        for batch in _batches(sendable, batch_size, 64 * 1024 * 1024):
            run.upload(batch, upload_task)
        changed = [u for u in uploads if u.changed]
        version: dict[str, Any] | None = None
        build_error: str | None = None
        if wait and changed:
            run.wait_for_parsing(progress.add_task("parsing", total=len(changed)))
            version, build_error = run.wait_for_builds()
    _summarise(collection, uploads, version, build_error, waited=wait, builds=run.build_job_ids)
    if build_error or any(u.status in ("rejected", "failed") for u in uploads):
        raise typer.Exit(code=1)


def _summarise(
    collection: str,
    uploads: list[Upload],
    version: dict[str, Any] | None,
    build_error: str | None,
    waited: bool,
    builds: list[str],
) -> None:
    counts: dict[str, int] = {}
    for u in uploads:
        counts[u.status] = counts.get(u.status, 0) + 1
    out.print(f"{collection}: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    for u in uploads:
        if u.status in ("rejected", "failed"):
            out.print(f"  {u.status}: {escape(str(u.path))}: {escape(u.detail)}")
    if build_error:
        out.print(f"version build failed: {escape(build_error)}")
    elif version:
        out.print(f"version v{version['version']} is {version['state']} ({version['chunk_count']} chunks)")
    elif not any(u.changed for u in uploads) or (waited and builds):
        out.print("no new version: nothing changed")
    elif waited:
        out.print("the version build is pending behind other uploads to this collection")


# -------------------------------------------------------------------- eval and report


@eval_app.command("run")
@talks_to_server
def eval_run(
    collection: CollectionOption,
    version: Annotated[int | None, typer.Option(help="Version number (default: the live one).")] = None,
    wait: WaitOption = True,
) -> None:
    """Evaluate a version on the collection's golden set and print its scores."""
    with Server() as server:
        if version is None:
            version = server.call("GET", f"/collections/{collection}").get("live_version")
            if version is None:
                err.print(f"{collection} has no live version; pass --version")
                raise typer.Exit(code=1)
        accepted = server.call("POST", f"/collections/{collection}/versions/{version}/evaluations")
        out.print(f"evaluation {accepted['evaluation_id']} of {collection} v{version}: job {accepted['job_id']}")
        if not wait:
            return
        job = server.wait_job(accepted["job_id"])
        if job["status"] == "failed":
            err.print(f"failed: {escape(job['error'])}")
            raise typer.Exit(code=1)
        evaluation = server.call("GET", f"/evaluations/{accepted['evaluation_id']}")
    for metric, summary in evaluation["metrics"].items():
        if summary["mean"] is None:
            why = describe(summary.get("not_measured_reasons") or {}, summary["not_measured"])
            out.print(f"  {metric:<22} not measured ({summary['not_measured']} questions{': ' + why if why else ''})")
        else:
            out.print(
                f"  {metric:<22} {summary['mean']:.3f}  (95% {summary['ci_low']:.3f}..{summary['ci_high']:.3f}, "
                f"{summary['measured']} measured)"
            )
    for warning in evaluation.get("warnings") or []:
        err.print(f"warning: {escape(warning)}")


@report_app.command("send")
@talks_to_server
def report_send(collection: CollectionOption, wait: WaitOption = True) -> None:
    """Build the collection's report and email it to its owners now."""
    with Server() as server:
        accepted = server.call("POST", f"/collections/{collection}/reports/send")
        out.print(f"report job {accepted['job_id']}")
        if not wait:
            return
        job = server.wait_job(accepted["job_id"])
    out.print(f"{job['status']}: {escape(str(job['error'] or job['result']))}")
    if job["status"] == "failed":
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add the server-facing commands to the ``ragkeep`` app."""
    app.add_typer(collections_app, name="collections")
    app.add_typer(versions_app, name="versions")
    app.add_typer(eval_app, name="eval")
    app.add_typer(report_app, name="report")
    app.command("ingest")(ingest)
    app.command("query")(query)
