"""Run `reconciler run` as a real process and talk to it over HTTP, as an operator would.

The `start_daemon` fixture gives `Daemons`: `start_daemon(db_url, config_dir, *args)` starts one on
a config directory, `start_daemon.on_fake(db_url, *args)` does the usual set-up first (a fake
provider, its config files) and waits for generation 1.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.builders import provider_file, routes_file
from tests.fakeprovider import FakeModel, FakeServer

ROOT = Path(__file__).resolve().parent.parent


# Daemons are given ports below the kernel's ephemeral range (32768 and up), each pytest-xdist
# worker its own block, so that no other worker, and no client socket, can take a port between
# the moment it is chosen and the moment the daemon binds it.
_PORT_BLOCK = 1000
_FIRST_PORT = 20000
_next_port = itertools.count()


def free_port() -> int:
    """A port on 127.0.0.1 that no other test worker will be given, free when returned."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    base = _FIRST_PORT + _PORT_BLOCK * (int(worker) if worker.isdigit() else 0)
    for _ in range(_PORT_BLOCK):
        port = base + next(_next_port) % _PORT_BLOCK
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {base}..{base + _PORT_BLOCK - 1}")


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=5, trust_env=False)

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = self.get("/api/v1/status").json()
        return body

    def metric(self, sample: str) -> float:
        """One sample of /metrics: `reconciler_leader`, `..._total{result="applied"}`; 0 if absent.

        A name without labels matches its first labelled sample too.
        """
        for line in self.get("/metrics").text.splitlines():
            if line.startswith((sample + " ", sample + "{")):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for(
        self, condition: Callable[[], bool], timeout: float = 15, what: str = "the condition"
    ) -> None:
        """Poll `condition` until true; fail with the daemon's log when it never is."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                pytest.fail(
                    f"the daemon exited ({self.proc.returncode}) before {what}:\n{self.log()}"
                )
            time.sleep(0.05)
        pytest.fail(f"timed out after {timeout}s waiting for {what}; daemon log:\n{self.log()}")

    def wait_generation(self, generation: int, timeout: float = 15) -> dict[str, Any]:
        self.wait_for(
            lambda: (self.status().get("generation") or 0) >= generation,
            timeout,
            f"generation {generation}",
        )
        return self.status()

    def send(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Send `signum` and wait; returns the exit code (fails when it takes over `timeout`)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the daemon did not exit within {timeout}s of {signum}:\n{self.log()}")

    def stop_timed(self, signum: int) -> tuple[int, float]:
        """`stop(signum)` allowing 15 s: the exit code and the seconds it took."""
        started = time.monotonic()
        code = self.stop(signum, timeout=15)
        return code, time.monotonic() - started


class Daemons:
    """What the `start_daemon` fixture gives: call it to start a daemon on a config directory, or
    use `on_fake` for the usual set-up (a fake provider, its config files, generation 1)."""

    def __init__(self, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.tmp_path = tmp_path
        self.request = request
        self.started: list[Daemon] = []

    def __call__(
        self,
        db_url: str,
        config_dir: Path,
        *extra: str,
        options: Sequence[str] = (),
        env: dict[str, str] | None = None,
        wait_healthy: bool = True,
    ) -> Daemon:
        """`python -m reconciler OPTIONS --database-url .. --config .. run --http .. EXTRA`."""
        port = free_port()
        log_path = self.tmp_path / f"daemon-{len(self.started)}-{port}.log"
        args = [
            sys.executable,
            "-m",
            "reconciler",
            *options,
            "--database-url",
            db_url,
            "--config",
            str(config_dir),
            "run",
            "--http",
            f"127.0.0.1:{port}",
            "--migrate",
            *extra,
        ]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, **(env or {})},
            )
        daemon = Daemon(proc, port, log_path, args)
        self.started.append(daemon)
        if wait_healthy:
            daemon.wait_for(
                lambda: daemon.get("/healthz").status_code == 200, 30, "/healthz to answer"
            )
        return daemon

    def on_fake(
        self,
        db_url: str,
        *extra: str,
        provider: Mapping[str, Any] | None = None,
        providers: Callable[[str], str] = provider_file,
        routes: str | None = None,
        options: Sequence[str] = (),
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> OnFake:
        """Start fake provider `local` (`fake.add("local", **provider)`, by default serving
        llama3.1:8b), write `providers(its url)` and `routes` (default `routes_file()`) as
        providers.yaml and routes.yaml, start a daemon on them and, if `wait`, wait for generation
        1. Uses the test's `fake` and `write_config` fixtures."""
        fake: FakeServer = self.request.getfixturevalue("fake")
        write_config: Callable[..., Path] = self.request.getfixturevalue("write_config")
        if provider is None:
            provider = {"models": [FakeModel("llama3.1:8b")]}
        url = fake.add("local", **provider)
        files = {
            "providers.yaml": providers(url),
            "routes.yaml": routes if routes is not None else routes_file(),
        }
        directory = write_config(files)
        daemon = self(db_url, directory, *extra, options=options, env=env)
        first = daemon.wait_generation(1) if wait else {}
        return OnFake(daemon, directory, url, first)

    def kill_all(self) -> None:
        for daemon in self.started:
            if daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait()


@dataclass
class OnFake:
    """A daemon started by `Daemons.on_fake`: its config directory, the fake provider's URL and
    its status at generation 1 (empty when not waited for)."""

    daemon: Daemon
    directory: Path
    provider_url: str
    first: dict[str, Any]


@pytest.fixture
def start_daemon(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Daemons]:
    """Start daemons (`start_daemon(db_url, config_dir, *extra_args)`, `start_daemon.on_fake(db_url,
    *extra_args)`); all killed afterwards."""
    daemons = Daemons(tmp_path, request)
    yield daemons
    daemons.kill_all()
