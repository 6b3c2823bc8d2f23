"""Run `reconciler run` as a real process and talk to it over HTTP, as an operator would."""

from __future__ import annotations

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


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
