"""A readiness probe round over many providers on loopback, some of which never answer.

The fake servers run in a separate process (tests/fakeprovider.py), one port per provider.
- hung: N providers, 10% accept the connection and never answer; probe timeout 1 s. The round
  must end near the timeout however many hang: the figure is round time / timeout.
- healthy: N providers that all answer. The floor is one raw httpx GET per provider with the
  same concurrency and one client per provider; a probe of Ollama makes 4 requests
  (/api/version, /api/tags, /api/show, /api/ps), of an OpenAI-compatible server 1 (/models).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.harness import Options, Report, measure, progress, rate, seconds
from reconciler.adapters.providers.probe import DEFAULT_CONCURRENCY, Prober, Target
from reconciler.core.spec import OllamaProvider, OpenAICompatibleProvider, ProviderSpec

NAME = "probe"
TIMEOUT_S = 1.0
ROOT = Path(__file__).resolve().parent.parent
HEADERS = (
    "case",
    "providers",
    "hung",
    "cold s",
    "round s",
    "x timeout",
    "probes/s",
    "ms/probe",
    "floor s",
    "x floor",
    "healthy ok",
    "runs",
)


@contextmanager
def fake_providers(kind: str, count: int, hanging: int) -> Iterator[list[str]]:
    """Base URLs of `count` fake providers served by another process."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakeprovider", kind, str(count), str(hanging)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield json.loads(proc.stdout.readline())
    finally:
        proc.communicate(input="", timeout=30)


def _targets(kind: str, urls: list[str]) -> list[Target]:
    model: type[ProviderSpec] = OllamaProvider if kind == "ollama" else OpenAICompatibleProvider
    return [
        Target(
            f"p{i}",
            model.model_validate(
                {
                    "type": model.type_name,
                    "endpoint": {"base_url": url, "probe_timeout_s": TIMEOUT_S},
                }
            ),
            frozenset({"llama3.1:8b"}),
        )
        for i, url in enumerate(urls)
    ]


class Rounds:
    """An event loop, a prober and raw clients kept across rounds, as the daemon keeps them."""

    def __init__(self, targets: list[Target], urls: list[str]) -> None:
        self.loop = asyncio.new_event_loop()
        self.targets, self.urls = targets, urls
        self.prober = Prober(env={})
        context = ssl.create_default_context()
        self.raw = [
            httpx.AsyncClient(base_url=url + "/", trust_env=False, verify=context) for url in urls
        ]

    def probe(self) -> int:
        reports = self.loop.run_until_complete(self.prober.probe_all(self.targets))
        return sum(1 for r in reports.values() if r.ok)

    def cold(self) -> int:
        """A round with fresh clients, as `reconciler status --probe` makes."""

        async def once() -> int:
            prober = Prober(env={})
            try:
                reports = await prober.probe_all(self.targets)
            finally:
                await prober.aclose()
            return sum(1 for r in reports.values() if r.ok)

        return self.loop.run_until_complete(once())

    def floor(self, path: str) -> int:
        semaphore = asyncio.Semaphore(DEFAULT_CONCURRENCY)

        async def one(client: httpx.AsyncClient) -> int:
            async with semaphore:
                return (await client.get(path)).status_code

        async def all_of() -> list[int]:
            return await asyncio.gather(*(one(client) for client in self.raw))

        return sum(1 for code in self.loop.run_until_complete(all_of()) if code == 200)

    def close(self) -> None:
        async def closing() -> None:
            await self.prober.aclose()
            for client in self.raw:
                await client.aclose()

        self.loop.run_until_complete(closing())
        self.loop.close()


def run(options: Options) -> Report:
    sizes = (200,) if options.quick else (100, 1_000)
    report = Report(
        title="Readiness probe rounds against fake providers on loopback (medians)",
        headers=HEADERS,
        notes=[
            f"probe timeout {TIMEOUT_S:g} s; hung providers accept and never answer. cold: a "
            "round with new clients (`status --probe`); round: a steady round of the daemon's "
            "prober. x timeout: round / probe timeout (target: 1.5 or less).",
            "floor: one raw httpx GET per provider (/api/version or /v1/models) on kept clients, "
            f"same concurrency ({DEFAULT_CONCURRENCY}). A steady Ollama probe makes 2 requests "
            "(/api/tags, /api/ps; 4 when cold), an OpenAI-compatible one 1. healthy ok: the "
            "fewest healthy providers reported ready in a cold / steady round (a shortfall is "
            "a false timeout).",
        ],
    )
    for count in sizes:
        for kind, hung in (("ollama", count // 10), ("ollama", 0), ("openai", 0)):
            case = f"{NAME}/{kind}/{count}" + ("/hung" if hung else "")
            if options.selected(case):
                progress(f"{case} ...")
                report.rows.append(_case(case, kind, count, hung, options))
    return report


def _case(case: str, kind: str, count: int, hung: int, options: Options) -> list[str]:
    healthy = count - hung
    floor_path = "api/version" if kind == "ollama" else "models"
    with fake_providers(kind, count, hung) as urls:
        rounds = Rounds(_targets(kind, urls), urls)
        try:
            cold_ok: list[int] = []
            steady_ok: list[int] = []
            cold = measure(lambda: cold_ok.append(rounds.cold()), options)
            rounds.probe()  # the first round of a prober learns versions and capabilities
            steady = measure(lambda: steady_ok.append(rounds.probe()), options)
            floor = None
            if not hung:
                rounds.floor(floor_path)
                floor = measure(lambda: rounds.floor(floor_path), options)
        finally:
            rounds.close()
    return [
        case,
        str(count),
        str(hung),
        seconds(cold.median),
        seconds(steady.median),
        f"{steady.median / TIMEOUT_S:.2f}" if hung else "-",
        rate(count, steady.median),
        f"{steady.ms / count:.2f}",
        seconds(floor.median) if floor else "-",
        f"{steady.median / floor.median:.2f}" if floor else "-",
        f"{min(cold_ok)}/{min(steady_ok)} of {healthy}",
        f"{cold.runs}/{steady.runs}",
    ]
