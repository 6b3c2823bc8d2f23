"""Run `reconciler run` as a real process and talk to it over HTTP, as an operator would."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

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


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Start daemons (`start_daemon(db_url, config_dir, *extra_args)`); all killed afterwards."""
    started: list[Daemon] = []

    def start(
        db_url: str,
        config_dir: Path,
        *extra: str,
        env: dict[str, str] | None = None,
        wait_healthy: bool = True,
    ) -> Daemon:
        port = free_port()
        log_path = tmp_path / f"daemon-{len(started)}-{port}.log"
        args = [
            sys.executable,
            "-m",
            "reconciler",
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
        started.append(daemon)
        if wait_healthy:
            daemon.wait_for(
                lambda: daemon.get("/healthz").status_code == 200, 30, "/healthz to answer"
            )
        return daemon

    yield start
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()
