"""The deployment files and docs must stay true to the code (no Docker engine runs here)."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from cli.main import app as cli_app
from core.settings import Settings

ROOT = Path(__file__).parent.parent


def _env_names(model: type[BaseModel] = Settings, prefix: str = "RAGKEEP_") -> set[str]:
    names: set[str] = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= _env_names(annotation, f"{prefix}{name.upper()}__")
        else:
            names.add(f"{prefix}{name.upper()}")
    return names


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_compose_has_every_part_of_the_service() -> None:
    assert set(_compose()["services"]) == {"api", "worker", "ocr-worker", "beat", "redis", "postgres", "chroma", "s3"}


def test_compose_runs_exactly_one_beat_and_several_workers() -> None:
    """Issue 21: the topology says how many of each part; beat must be unique (it would send every job twice)."""
    services = _compose()["services"]
    assert services["beat"]["deploy"]["replicas"] == 1
    assert services["worker"]["deploy"]["replicas"] >= 2


def test_compose_workers_consume_every_queue_and_ocr_has_its_own() -> None:
    """Issue 19: OCR runs on its own queue and worker, so a long scan never holds up text documents."""
    from workers.names import Queue

    services = _compose()["services"]

    def queues(name: str) -> set[str]:
        command = services[name]["command"]
        return set(command[command.index("--queues") + 1].split(","))

    assert queues("ocr-worker") == {Queue.ocr.value}
    assert Queue.ocr.value not in queues("worker")
    assert queues("worker") | queues("ocr-worker") == {q.value for q in Queue}


def test_compose_environment_names_real_settings_and_points_at_its_services() -> None:
    services = _compose()["services"]
    known = _env_names()
    for name in ("api", "worker", "ocr-worker", "beat"):
        env = services[name]["environment"]
        unknown = {k for k in env if k.startswith("RAGKEEP_")} - known
        assert not unknown, f"{name} sets settings that do not exist: {unknown}"
        settings = Settings(
            redis_url=env["RAGKEEP_REDIS_URL"],
            database_url=env["RAGKEEP_DATABASE_URL"],
            chroma_url=env["RAGKEEP_CHROMA_URL"],
            blobs={k.removeprefix("RAGKEEP_BLOBS__").lower(): v for k, v in env.items() if "BLOBS__" in k},
        )
        assert settings.broker_url.startswith("redis://redis:")
        assert (
            settings.resolved_database_url.startswith("postgresql+psycopg://")
            and "@postgres:" in env["RAGKEEP_DATABASE_URL"]
        )
        assert settings.resolved_chroma_url == "http://chroma:8000"
        # Issue 21: nothing shared but the services; the files go to the s3 service's bucket.
        assert "volumes" not in services[name] and env["RAGKEEP_DATA_DIR"] == "/data"
        assert settings.blobs.url == "s3://ragkeep/blobs" and settings.blobs.endpoint_url == "http://s3:8333"
        for dependency in services[name]["depends_on"]:
            assert dependency in services
    postgres = services["postgres"]["environment"]
    url = services["api"]["environment"]["RAGKEEP_DATABASE_URL"]
    assert f"{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}@postgres:5432/{postgres['POSTGRES_DB']}" in url
    assert "--port" in services["chroma"]["command"] and "8000" in services["chroma"]["command"]
    s3, api = services["s3"], services["api"]["environment"]
    assert "-s3.port=8333" in s3["command"] and "-bucket=ragkeep" in s3["command"]
    assert s3["environment"]["AWS_ACCESS_KEY_ID"] == api["RAGKEEP_BLOBS__ACCESS_KEY_ID"]
    assert s3["environment"]["AWS_SECRET_ACCESS_KEY"] == api["RAGKEEP_BLOBS__SECRET_ACCESS_KEY"]


def test_compose_commands_are_real_cli_commands() -> None:
    commands = {c.name or (c.callback.__name__ if c.callback else "") for c in cli_app.registered_commands}
    services = _compose()["services"]
    for name in ("api", "worker", "ocr-worker", "beat"):
        command = services[name]["command"]
        assert command[0] == "ragkeep" and command[1] in commands
    assert services["api"]["ports"] == ["8000:8000"]


def test_dockerfile_copies_every_package_and_installs_the_runtime_debian_packages() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    include = re.search(r"^include = \[(.*)\]$", pyproject, flags=re.M)
    assert include
    packages = {name.strip(' "*') for name in include.group(1).split(",")}
    copied = set(re.findall(r"^COPY (\w+) \1$", dockerfile, flags=re.M))
    assert packages <= copied, f"the image lacks {packages - copied}"
    assert "COPY apt-runtime.txt" in dockerfile and "apt-runtime.txt | xargs apt-get install" in dockerfile


def test_readme_configuration_table_matches_the_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `(RAGKEEP_[A-Z0-9_]+)`", readme, flags=re.M))
    assert documented == _env_names()


def test_readme_has_exactly_the_two_setup_commands_and_the_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set up and run", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in setup.strip().splitlines()]
    assert commands == ["make install", ".venv/bin/ragkeep up"]
    test = readme.split("## Test", 1)[1].split("```bash", 1)[1].split("```", 1)[0].strip()
    assert test == "make test"
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make install" in (ROOT / ".ci" / "run").read_text()


FORBIDDEN = {
    "core": {"fastapi", "celery", "service", "workers", "ingest", "query", "eval", "cli"},
    "ingest": {"fastapi", "celery", "service", "workers", "query", "cli"},
    "query": {"fastapi", "celery", "service", "workers", "ingest", "cli"},
    "eval": {"fastapi", "celery", "service", "workers", "ingest", "release", "cli"},
    "release": {"fastapi", "celery", "service", "workers", "cli"},
    "workers": {"fastapi", "service", "cli"},
    "service": {"ingest", "cli", "celery"},
}


def _imports(path: Path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_packages_keep_the_import_direction() -> None:
    for package, forbidden in FORBIDDEN.items():
        for path in (ROOT / package).rglob("*.py"):
            bad = _imports(path) & forbidden
            assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


# SQL lives in the catalog's repositories (one module per aggregate), the engine setup and the
# migrations; every other module calls ``catalog.fn(session, ...)``.
# workers/broker.py: the embedded broker's own file (Kombu's message table), not the catalog.
SQL_HOMES = ("core/catalog/", "core/db.py", "core/migrations/", "workers/broker.py")
# Modules that still issue SQL, each to move into a repository of core/catalog/ (issue 17). The list
# only shrinks: an entry whose SQL is gone fails the test until it is removed from here.
SQL_PENDING: dict[str, str] = {}
SQL_CONSTRUCTS = {
    "select", "insert", "update", "delete", "text", "func", "and_", "or_", "not_", "bindparam", "literal",
    "literal_column", "case", "exists", "union", "union_all", "column", "table", "values", "tuple_",
}  # fmt: skip
STATEMENT_METHODS = {"execute", "scalars", "scalar", "exec_driver_sql"}


def _sql_uses(path: Path) -> list[str]:
    """Where ``path`` builds or runs SQL: SQLAlchemy statement constructs, dialect inserts, and a
    session's or connection's execute/scalars/scalar (with a statement) or query."""
    import ast

    tree = ast.parse(path.read_text())
    aliases = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name.split(".")[0] == "sqlalchemy"
    }
    uses: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sqlalchemy":
            statement_module = node.module.startswith(("sqlalchemy.sql", "sqlalchemy.dialects"))
            names = [a.name for a in node.names if statement_module or a.name in SQL_CONSTRUCTS]
            if names:
                uses.append(f"{node.lineno}: from {node.module} import {', '.join(names)}")
        elif isinstance(node, ast.Attribute) and node.attr in SQL_CONSTRUCTS:
            if isinstance(node.value, ast.Name) and node.value.id in aliases:
                uses.append(f"{node.lineno}: {node.value.id}.{node.attr}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method, receiver = node.func.attr, ast.unparse(node.func.value)
            if (method in STATEMENT_METHODS and (node.args or node.keywords)) or (
                method == "query" and receiver.endswith(("session", "Session"))
            ):
                uses.append(f"{node.lineno}: {receiver}.{method}(...)")
    return uses


def _python_modules() -> list[Path]:
    skip = {"tests", ".venv", ".git", "build", "dist"}
    return [
        p for p in ROOT.rglob("*.py") if not (set(p.relative_to(ROOT).parts[:-1]) & skip or p.parts[-2].startswith("."))
    ]


def test_sql_lives_only_in_the_catalog_repositories() -> None:
    found = {}
    for path in _python_modules():
        rel = path.relative_to(ROOT).as_posix()
        if not rel.startswith(SQL_HOMES) and (uses := _sql_uses(path)):
            found[rel] = uses
    unexpected = {rel: uses for rel, uses in found.items() if rel not in SQL_PENDING}
    assert not unexpected, f"SQL outside core/catalog/ (add a repository function there instead): {unexpected}"
    done = sorted(set(SQL_PENDING) - set(found))
    assert not done, f"no SQL left in {done}: remove them from SQL_PENDING"
    # The check sees what it must: the repositories' own statements and sessions.
    assert _sql_uses(ROOT / "core/catalog/versions.py") and _sql_uses(ROOT / "core/catalog/caches.py")


# Each external system is imported by the one module named here (a library upgrade then
# touches that module and its tests). bench/ is left out: its baselines run the raw
# libraries on purpose, to be compared with ragkeep's path.
PRODUCT = ("core", "ingest", "query", "eval", "release", "workers", "service", "cli")
EXTERNAL_HOMES: dict[str, set[str]] = {
    "chromadb": {"core/chroma.py"},
    "llama_index.vector_stores": {"core/chroma.py"},  # LlamaIndex's Chroma wrapper
    "unstructured": {"ingest/partition.py"},
    "rapidocr": {"ingest/ocr.py"},  # OCR (issue 19)
    "pi_heif": {"ingest/ocr.py"},
    "pikepdf": {"ingest/decrypt.py"},  # password-protected PDFs decrypted at upload
    "msoffcrypto": {"ingest/decrypt.py"},  # password-protected Office files decrypted at upload
    "pyzipper": {"ingest/decrypt.py"},  # encrypted ZIP members (ZipCrypto, WinZip AES) read at upload
    "pypdfium2": {"ingest/pdfium.py"},  # PDFium: text layer, page count, title, OCR's page images
    "ragas": {"eval/ragas_adapter.py"},
    "langchain": {"eval/ragas_adapter.py"},  # and langchain_* packages: what ragas runs on
    "smtplib": {"core/email.py", "release/mail.py"},
    "email": {"core/email.py", "release/mail.py", "ingest/emails.py"},  # ingest/emails.py reads uploaded emails
    "boto3": {"core/s3.py"},  # the S3-compatible blob store
    "botocore": {"core/s3.py"},
    "oxmsg": {"ingest/emails.py"},
    "pypandoc": {"ingest/convert.py"},
    "charset_normalizer": {"ingest/partition.py"},
}


def _dotted_imports(path: Path) -> set[str]:
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _is_part_of(module: str, system: str) -> bool:
    if system == "langchain":
        top = module.split(".")[0]
        return top == "langchain" or top.startswith("langchain_")
    return module == system or module.startswith(system + ".")


def test_each_external_system_is_imported_by_its_one_module() -> None:
    offenders: list[str] = []
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            where = path.relative_to(ROOT).as_posix()
            for module in _dotted_imports(path):
                for system, homes in EXTERNAL_HOMES.items():
                    if _is_part_of(module, system) and where not in homes:
                        offenders.append(f"{where} imports {module} (only {', '.join(sorted(homes))} may)")
    assert not offenders, "\n".join(sorted(offenders))


def test_the_external_import_rule_sees_imports_inside_functions(tmp_path: Path) -> None:
    """The rule must catch a lazy import too: ragkeep imports heavy libraries inside functions."""
    module = tmp_path / "lazy.py"
    module.write_text("def f() -> None:\n    from chromadb.api import ClientAPI\n    import langchain_core\n")
    found = _dotted_imports(module)
    assert any(_is_part_of(name, "chromadb") for name in found)
    assert any(_is_part_of(name, "langchain") for name in found)
    assert not _is_part_of("emailer", "email") and not _is_part_of("email_validator", "email")


# Issue 17: a Celery task is an adapter (load ids, call one release/ function, record state, decide
# retry) and a route parses, calls one function and maps the result; their rules live in release/.
ADAPTER_LINES = {
    "workers/tasks.py": ("app.task", 20),
    "service/routers": ("router.", 25),
    "service/ui": ("router.", 25),  # the web console's routes are routes too
}


def _body_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = function.body
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):  # the docstring
        body = body[1:]
    end = body[-1].end_lineno or body[-1].lineno
    return end - body[0].lineno + 1 if body else 0


def _adapters(path: Path, decorator: str) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names = [ast.unparse(d.func if isinstance(d, ast.Call) else d) for d in node.decorator_list]
            if any(name.startswith(decorator) for name in names):
                found.append(node)
    return found


def test_tasks_and_routes_stay_thin_adapters() -> None:
    too_long, seen = [], 0
    for where, (decorator, limit) in ADAPTER_LINES.items():
        target = ROOT / where
        for path in [target] if target.is_file() else sorted(target.glob("*.py")):
            for function in _adapters(path, decorator):
                seen += 1
                if (lines := _body_lines(function)) > limit:
                    too_long.append(f"{path.relative_to(ROOT)}:{function.name} has {lines} lines (at most {limit})")
    assert seen > 40, "the decorators were not recognised: the rule would check nothing"
    assert not too_long, "\n".join(too_long)
