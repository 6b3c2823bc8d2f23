"""A readiness probe round over many providers on loopback, some of which never answer.

The fake servers run in a separate process (tests/fakeprovider.py), one port per provider.
- hung: N providers, 10% accept the connection and never answer; probe timeout 1 s. The round
  must end near the timeout however many hang: the figure is round time / timeout.
- healthy: N providers that all answer. The floor is the network work of a steady probe done
  by plain httpx: the same GETs, with the same concurrency and one kept client per provider. A
  steady Ollama probe reads /api/tags and /api/ps (a cold one also /api/version and /api/show,
  and /api/version again every VERSION_EVERY rounds); an OpenAI-compatible one reads /models.
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
from reconciler.adapters.providers.ollama import VERSION_EVERY
from reconciler.adapters.providers.probe import DEFAULT_CONCURRENCY, Prober, Target
from reconciler.core.spec import OllamaProvider, OpenAICompatibleProvider, ProviderSpec

NAME = "probe"
TIMEOUT_S = 1.0
ROOT = Path(__file__).resolve().parent.parent
# The GETs of a steady probe, by provider kind.
STEADY_PATHS = {"ollama": ("api/tags", "api/ps"), "openai": ("models",)}
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

    def floor(self, paths: tuple[str, ...]) -> int:
        """Providers whose every GET of `paths` answered 200, sent by plain httpx."""
        semaphore = asyncio.Semaphore(DEFAULT_CONCURRENCY)

        async def one(client: httpx.AsyncClient) -> bool:
            async with semaphore:
                return all([(await client.get(path)).status_code == 200 for path in paths])

        async def all_of() -> list[bool]:
            return await asyncio.gather(*(one(client) for client in self.raw))

        return sum(self.loop.run_until_complete(all_of()))

    def close(self) -> None:
        async def closing() -> None:
            await self.prober.aclose()
            for client in self.raw:
                await client.aclose()

        self.loop.run_until_complete(closing())
        self.loop.close()


def _cases(quick: bool) -> list[tuple[str, int, int, str]]:
    """(kind, providers, hung, suffix) of each case: 10% hung, or none.

    The hung providers come first in the prober's list, or last for the `hung-last` case.
    """
    sizes = (200,) if quick else (100, 1_000)
    cases = [
        (kind, count, hung, "/hung" if hung else "")
        for count in sizes
        for kind, hung in (("ollama", count // 10), ("ollama", 0), ("openai", 0))
    ]
    if not quick:
        cases.insert(3, ("ollama", 200, 0, ""))
        cases.insert(5, ("ollama", 1_000, 100, "/hung-last"))
    return cases


def run(options: Options) -> Report:
    report = Report(
        title="Readiness probe rounds against fake providers on loopback (medians)",
        headers=HEADERS,
        notes=[
            f"probe timeout {TIMEOUT_S:g} s; hung providers accept and never answer. cold: a "
            "round with new clients (`status --probe`); round: a steady round of the daemon's "
            "prober. x timeout: round / probe timeout (target: 1.5 or less). The hung providers "
            "come first in the prober's list, last in `hung-last`.",
            "floor: the GETs of a steady probe sent by plain httpx on kept clients, one after "
            f"the other per provider, same concurrency ({DEFAULT_CONCURRENCY}): /api/tags and "
            "/api/ps for Ollama (a steady probe reads /api/version too every "
            f"{VERSION_EVERY} rounds, and /api/show only for a new model digest), /v1/models "
            "for OpenAI-compatible. healthy ok: the fewest healthy providers reported ready in "
            "a cold / steady round (a shortfall is a false timeout).",
        ],
    )
    for kind, count, hung, suffix in _cases(options.quick):
        case = f"{NAME}/{kind}/{count}{suffix}"
        if options.selected(case):
            progress(f"{case} ...")
            report.rows.append(_case(case, kind, count, hung, options))
    return report


def _case(case: str, kind: str, count: int, hung: int, options: Options) -> list[str]:
    healthy = count - hung
    floor_paths = STEADY_PATHS[kind]
    with fake_providers(kind, count, hung) as served:
        urls = served[hung:] + served[:hung] if case.endswith("/hung-last") else served
        rounds = Rounds(_targets(kind, urls), urls)
        try:
            cold_ok: list[int] = []
            steady_ok: list[int] = []
            cold = measure(lambda: cold_ok.append(rounds.cold()), options)
            rounds.probe()  # the first round of a prober learns versions and capabilities
            steady = measure(lambda: steady_ok.append(rounds.probe()), options)
            floor = None
            if not hung:
                rounds.floor(floor_paths)
                floor = measure(lambda: rounds.floor(floor_paths), options)
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
