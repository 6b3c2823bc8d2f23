"""Test-only entry point: `python tests/fault_apply.py ARGS` runs `reconciler ARGS` with a fault.

The fault comes from the environment and is counted in SQL statements executed by this process
(every engine, every connection, the statements before the apply transaction included):

    RECONCILER_TEST_FAULT=kill:K     SIGKILL this process right after its K-th statement
    RECONCILER_TEST_FAULT=raise:K    raise the driver's OperationalError after the K-th statement
    RECONCILER_TEST_FAULT=pause:K    after the K-th statement create the file named by
                                     RECONCILER_TEST_SIGNAL, then wait until the file
                                     `<that name>.release` exists (at most a minute)
    (K may also be `commit`: right before the first COMMIT, every statement done)
    RECONCILER_TEST_TRACE=FILE       append each statement's first words to FILE, one a line,
                                     before the statement runs (so a blocked BEGIN shows)

`python tests/fault_apply.py --serve` forks such runs on request (see `serve`): a crash test
needs dozens of processes, and importing reconciler takes most of a second. The listener lives
here, never in the reconciler package. The test side is below too: `Forker` drives the server,
`Apply` is one forked run, `FaultHook` injects the same faults in-process, and two helpers hold
the apply lock or wait until a killed holder's lock is gone.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy import Engine, event, text

from reconciler.adapters.db.apply_lock import APPLY_LOCK_KEY
from reconciler.adapters.db.engine import is_sqlite

FAULT_ENV = "RECONCILER_TEST_FAULT"
TRACE_ENV = "RECONCILER_TEST_TRACE"
SIGNAL_ENV = "RECONCILER_TEST_SIGNAL"
_PAUSE_LIMIT_S = 60.0


class InjectedFault(Exception):
    """Raised by a `raise:K` fault when the driver's own error class is not at hand."""


class FaultHook:
    """A class-level engine listener: applies to every engine of this process while installed."""

    def __init__(
        self,
        fault: str = "",
        trace: Path | None = None,
        signal_file: Path | None = None,
    ) -> None:
        action, _, where = fault.partition(":")
        self.action = action
        self.at_commit = where == "commit"
        self.at = int(where) if where.isdigit() else 0
        self.trace = trace
        self.signal_file = signal_file
        self.statements: list[str] = []
        self.fired = False

    def install(self) -> None:
        event.listen(Engine, "before_cursor_execute", self._before_execute)
        event.listen(Engine, "after_cursor_execute", self._after_execute)
        event.listen(Engine, "commit", self._before_commit)

    def remove(self) -> None:
        event.remove(Engine, "before_cursor_execute", self._before_execute)
        event.remove(Engine, "after_cursor_execute", self._after_execute)
        event.remove(Engine, "commit", self._before_commit)

    def _before_execute(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if self.trace is not None:
            with self.trace.open("a", encoding="utf-8") as handle:
                handle.write(" ".join(statement.split()[:3]) + "\n")

    def _after_execute(self, conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements.append(" ".join(statement.split()[:3]))
        if self.at and len(self.statements) == self.at:
            self._fire(conn)

    def _before_commit(self, conn: Any) -> None:
        if self.at_commit and not self.fired:
            self._fire(conn)

    def _fire(self, conn: Any) -> None:
        self.fired = True
        if self.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.action == "raise":
            dbapi = getattr(conn.dialect, "loaded_dbapi", None)
            error = getattr(dbapi, "OperationalError", InjectedFault)
            raise error(f"injected fault after statement {len(self.statements)}")
        elif self.action == "pause":
            self._pause()

    def _pause(self) -> None:
        assert self.signal_file is not None, f"pause needs {SIGNAL_ENV}"
        release = Path(f"{self.signal_file}.release")
        self.signal_file.write_text(f"{os.getpid()}\n", encoding="utf-8")
        deadline = time.monotonic() + _PAUSE_LIMIT_S
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.01)


def run_with_hook(args: list[str]) -> int:
    """`reconciler ARGS` in this process, with the fault the environment asks for."""
    trace = os.environ.get(TRACE_ENV)
    signal_file = os.environ.get(SIGNAL_ENV)
    FaultHook(
        os.environ.get(FAULT_ENV, ""),
        Path(trace) if trace else None,
        Path(signal_file) if signal_file else None,
    ).install()
    from reconciler.cli import main as reconciler_main

    return reconciler_main(args)


def serve() -> int:
    """Import reconciler once, then fork one run per request: a crash test needs many processes.

    Requests on stdin, one JSON object a line, each answered with one JSON line on stdout:
    {"op": "start", "args": [...], "env": {...}, "stdout": FILE, "stderr": FILE} -> {"pid": N};
    {"op": "poll", "pid": N} -> {"code": null or the exit code};
    {"op": "wait", "pid": N} -> {"code": exit code, -9 when killed}.
    No engine or thread exists in this process, so forking it is safe.
    """
    import reconciler.cli  # noqa: F401

    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "start":
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                _child(request)
            answer: dict[str, int | None] = {"pid": pid}
        else:
            flags = os.WNOHANG if request["op"] == "poll" else 0
            done, status = os.waitpid(request["pid"], flags)
            answer = {"code": os.waitstatus_to_exitcode(status) if done else None}
        print(json.dumps(answer), flush=True)
    return 0


def _child(request: dict[str, Any]) -> NoReturn:
    code = 1
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        for fd, name in ((1, "stdout"), (2, "stderr")):
            target = os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        os.environ.update(request["env"])
        code = run_with_hook(request["args"])
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


# --- the test side --------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Forker:
    """`tests/fault_apply.py --serve`: imports reconciler once and forks each apply on request."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.children: set[int] = set()

    def ask(self, **request: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        assert answer, "the fork server died"
        result: dict[str, Any] = json.loads(answer)
        return result

    def start(self, args: list[str], work: Path, fault: str = "") -> Apply:
        """Fork `reconciler ARGS` with `fault`; its output, trace and signal files go in `work`."""
        work.mkdir()
        env = {FAULT_ENV: fault, TRACE_ENV: str(work / "trace"), SIGNAL_ENV: str(work / "paused")}
        answer = self.ask(
            op="start",
            args=args,
            env=env,
            stdout=str(work / "stdout"),
            stderr=str(work / "stderr"),
        )
        self.children.add(answer["pid"])
        return Apply(self, answer["pid"], work)

    def close(self) -> None:
        for pid in self.children:  # left paused or hung by a failed test
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.communicate(timeout=10)  # closes its stdin, so the server ends


@dataclass
class Apply:
    """An `apply` process forked by the fork server, with its fault, trace and output files."""

    forker: Forker
    pid: int
    work: Path
    code: int | None = None

    def running(self) -> bool:
        if self.code is None:
            self.code = self.forker.ask(op="poll", pid=self.pid)["code"]
            if self.code is not None:
                self.forker.children.discard(self.pid)
        return self.code is None

    def finish(self, timeout: float = 60) -> Outcome:
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                raise AssertionError(f"apply pid {self.pid} still ran after {timeout} s")
            time.sleep(0.01)
        assert self.code is not None
        stdout, stderr = ((self.work / name).read_text("utf-8") for name in ("stdout", "stderr"))
        return Outcome(self.code, stdout, stderr)

    @property
    def signal_file(self) -> Path:
        return self.work / "paused"

    def wait_for_pause(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.signal_file.exists():
            assert self.running(), f"apply ended before pausing: {self.finish()}"
            assert time.monotonic() < deadline, "apply never reached its pause point"
            time.sleep(0.01)

    def release(self) -> None:
        Path(f"{self.signal_file}.release").touch()

    def statements(self) -> list[str]:
        trace = self.work / "trace"
        return trace.read_text("utf-8").splitlines() if trace.exists() else []


def wait_lock_free(engine: Engine) -> None:
    """PostgreSQL: wait until the server has rolled back a killed client and freed the lock."""
    if is_sqlite(engine):
        return
    query = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND classid = :hi AND objid = :lo AND objsubid = 1"
    )
    keys = {"hi": APPLY_LOCK_KEY >> 32, "lo": APPLY_LOCK_KEY & 0xFFFFFFFF}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if not conn.execute(query, keys).scalar_one():
                return
        time.sleep(0.02)
    raise AssertionError("the apply lock was still held 10 s after its holder died")


@contextmanager
def lock_held_by_this_test(engine: Engine) -> Iterator[None]:
    """Hold the apply lock the way the store takes it, from a connection of this process."""
    if is_sqlite(engine):
        holder = sqlite3.connect(str(engine.url.database), isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            yield
        finally:
            holder.close()
        return
    with engine.connect() as conn, conn.begin():
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": APPLY_LOCK_KEY})
        yield


def main() -> int:
    if sys.argv[1:] == ["--serve"]:
        return serve()
    return run_with_hook(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
