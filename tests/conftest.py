"""Shared fixtures: running the CLI in-process and as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from reconciler.adapters.db import migrate
from reconciler.adapters.db.engine import make_engine
from reconciler.cli import main
from tests.daemon_harness import start_daemon  # noqa: F401  (a fixture)
from tests.db_inspect import recording_writes
from tests.fakeprovider import FakeServer, fake_server
from tests.netguard import guard

_GUARD_DIR = Path(__file__).resolve().parent / "netguard"


def pytest_configure(config: pytest.Config) -> None:
    """Guard this process, and every Python process a test starts, against leaving loopback."""
    guard.install()
    os.environ["RECONCILER_TEST_NETGUARD"] = "1"
    paths = [str(_GUARD_DIR), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))


@pytest.fixture(autouse=True)
def _network_stays_on_loopback() -> Iterator[None]:
    """Fail any test whose code tried to connect, or resolve a name, beyond loopback."""
    guard.violations.clear()
    yield
    tried = list(guard.violations)
    guard.violations.clear()
    assert not tried, f"the test tried to leave loopback: {tried}"


ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run `reconciler ARGS` in this process and capture what it prints."""

    def run(*args: str | os.PathLike[str]) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def run_reconciler(
    *args: str | os.PathLike[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
) -> Result:
    """Run `python -m reconciler ARGS` as a separate process, as a user would."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def rc(cli: Callable[..., Result], engine: Engine) -> Callable[..., Result]:
    """`rc(config_dir_or_None, *args)`: the command line in this process on `engine`'s database."""
    from tests.cli_checks import database_cli  # it imports this module

    return database_cli(cli, engine)


@pytest.fixture
def writes() -> Iterator[list[str]]:
    """Every INSERT/UPDATE/DELETE sent by any engine of this process while the test runs."""
    with recording_writes() as seen:
        yield seen


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write `{relative path: text}` under tmp_path/config and return the directory."""

    def write(files: dict[str, str], directory: str = "config") -> Path:
        root = tmp_path / directory
        for name, content in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
        return root

    return write


# --- databases -------------------------------------------------------------------------------

POSTGRES_URL = os.environ.get(
    "RECONCILER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
_IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    """An AUTOCOMMIT engine on the test server; skips when it is down, but fails under CI=true."""
    engine = make_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        engine.dispose()
        reason = f"PostgreSQL at {POSTGRES_URL} is unreachable ({str(exc.orig).strip()[:120]})"
        if _IN_CI:
            pytest.fail(f"{reason}; CI=true requires it")
        pytest.skip(reason)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url(postgres_admin: Engine) -> Iterator[str]:
    """A fresh database of its own on the test server, dropped afterwards."""
    name = f"reconciler_t_{uuid.uuid4().hex[:12]}"
    with postgres_admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    with postgres_admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'reconciler.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Every database test runs on both engines."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a database migrated to the newest revision."""
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


class StatementCounter:
    """Counts the statements an engine executes, by their first word."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statements: list[str] = []
        self.texts: list[str] = []  # each statement in full
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement.lstrip().split(None, 1)[0].upper())
        self.texts.append(statement)

    def selects_of(self, column: str) -> int:
        """How many SELECTs read `column` (`table.column`, as SQLAlchemy writes it)."""
        return sum(1 for s in self.texts if s.lstrip().upper().startswith("SELECT") and column in s)

    @property
    def writes(self) -> int:
        return sum(1 for s in self.statements if s in ("INSERT", "UPDATE", "DELETE"))

    def reset(self) -> None:
        self.statements.clear()
        self.texts.clear()

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)


@pytest.fixture
def counter(engine: Engine) -> Iterator[StatementCounter]:
    counting = StatementCounter(engine)
    yield counting
    counting.close()


# --- fake providers ---------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    """Fake Ollama and OpenAI-compatible servers on 127.0.0.1, one port per provider."""
    with fake_server() as server:
        yield server
