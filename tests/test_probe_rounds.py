"""What a steady Ollama probe reads, in what order, that its connections last from one round to
the next, and how a round orders providers that timed out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from httpcore._async import http11

from reconciler.adapters.providers.ollama import VERSION_EVERY
from reconciler.adapters.providers.probe import Prober, Target
from reconciler.core.readiness import ProbeReport
from reconciler.core.spec import OllamaProvider
from tests.fakeprovider import FakeModel, FakeServer

LLAMA = FakeModel("llama3.1:8b", loaded=True)


def target(name: str, base_url: str, probe_timeout_s: float) -> Target:
    endpoint = {"base_url": base_url, "probe_timeout_s": probe_timeout_s}
    spec = OllamaProvider.model_validate({"type": "ollama", "endpoint": endpoint})
    return Target(name, spec, frozenset({"llama3.1:8b"}))


def rounds(targets: list[Target], count: int, concurrency: int = 32) -> list[dict[str, Any]]:
    """`count` rounds of one prober; each round's reports and when it started (monotonic)."""

    async def run() -> list[dict[str, Any]]:
        prober = Prober(env={}, concurrency=concurrency)
        found: list[dict[str, Any]] = []
        try:
            for _ in range(count):
                started = time.monotonic()
                found.append({"started": started, **await prober.probe_all(targets)})
        finally:
            await prober.aclose()
        return found

    return asyncio.run(run())


def test_the_version_is_read_again_every_version_every_rounds(fake: FakeServer) -> None:
    url = fake.add("local", models=[LLAMA])
    found = rounds([target("local", url, 3.0)], VERSION_EVERY + 1)
    reports: list[ProbeReport] = [f["local"] for f in found]
    assert all(r.ok and r.version == "0.6.2" for r in reports)
    paths = fake.paths("local")
    assert paths.count("/api/version") == 2  # the first round and round VERSION_EVERY + 1
    assert paths.count("/api/tags") == paths.count("/api/ps") == VERSION_EVERY + 1
    assert paths.count("/api/show") == 1


def test_a_probe_reads_one_after_the_other_on_one_connection(fake: FakeServer) -> None:
    """One socket per provider, not one per read."""
    url = fake.add("local", models=[LLAMA])
    found = rounds([target("local", url, 3.0)], 2)
    assert all(f["local"].ok for f in found)
    assert fake.paths("local") == [
        "/api/version", "/api/tags", "/api/ps", "/api/show",  # the first round learns
        "/api/tags", "/api/ps",  # a steady round
    ]  # fmt: skip
    assert fake.connections["local"] == 1


def test_a_probe_keeps_its_connections_from_one_round_to_the_next(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon probes every 30 s; a connection idle that long is still used (httpx's default
    keeps one 5 s). The connection's clock is moved on instead of waiting."""
    url = fake.add("local", models=[LLAMA])
    skipped = [0.0]
    clock = SimpleNamespace(monotonic=lambda: time.monotonic() + skipped[0])
    monkeypatch.setattr(http11, "time", clock)

    async def two_rounds() -> list[int]:
        prober = Prober(env={})
        opened = []
        try:
            for _ in range(2):
                reports = await prober.probe_all([target("local", url, 3.0)])
                assert reports["local"].ok
                opened.append(fake.connections["local"])
                skipped[0] += 60.0  # two rounds of the daemon's default interval
        finally:
            await prober.aclose()
        return opened

    first, second = asyncio.run(two_rounds())
    assert first >= 1
    assert second == first  # not one new connection for the second round


def _order(reports: dict[str, ProbeReport]) -> list[str]:
    """The providers in the order their probes got a slot (each report's start)."""
    return sorted(reports, key=lambda name: reports[name].checked_at)


def test_a_provider_that_timed_out_is_probed_first_in_the_next_round(fake: FakeServer) -> None:
    """Its deadline then runs while the others are probed, not after them all."""
    names = ["a", "b", "c", "stuck"]
    targets = [target(n, fake.add(n, models=[LLAMA], hang=n == "stuck"), 0.5) for n in names]

    async def run() -> list[dict[str, ProbeReport]]:
        prober = Prober(env={}, concurrency=1)  # one slot: probes start one after the other
        found = []
        try:
            for round_number in range(4):
                if round_number == 2:
                    fake.behaviours["stuck"].hang = False  # it recovers
                found.append(await prober.probe_all(targets))
        finally:
            await prober.aclose()
        return found

    first, second, third, fourth = asyncio.run(run())
    assert _order(first) == names  # nothing known yet: the list's order
    assert first["stuck"].reason is not None and first["stuck"].reason.value == "timeout"
    assert _order(second) == ["stuck", "a", "b", "c"]
    assert second["stuck"].reason is not None
    assert _order(third)[0] == "stuck" and third["stuck"].ok  # it timed out last time
    assert _order(fourth) == names  # answered last time: back in its place
    assert all(reports[n].ok for reports in (first, second) for n in "abc")


def _a_and_stuck(fake: FakeServer) -> list[Target]:
    """Provider `a`, which answers, and `stuck`, which never does (0.5 s probe timeout)."""
    return [target(n, fake.add(n, models=[LLAMA], hang=n == "stuck"), 0.5) for n in ("a", "stuck")]


def _round_after(
    targets: list[Target], between: Callable[[Prober], Awaitable[object]]
) -> dict[str, ProbeReport]:
    """A full round with one slot, then `between(prober)`, then the round reported here."""

    async def run() -> dict[str, ProbeReport]:
        prober = Prober(env={}, concurrency=1)
        try:
            await prober.probe_all(targets)
            await between(prober)
            return await prober.probe_all(targets)
        finally:
            await prober.aclose()

    return asyncio.run(run())


def test_a_partial_round_keeps_what_the_prober_knows_of_the_others(fake: FakeServer) -> None:
    """After an apply the daemon probes only the touched tasks' providers: the others keep
    their connections and their place at the front."""
    targets = _a_and_stuck(fake)
    reports = _round_after(targets, lambda prober: prober.probe_all(targets[:1]))  # only "a"
    assert _order(reports) == ["stuck", "a"]
    assert reports["a"].ok
    assert fake.connections["a"] == 1  # one connection for all three rounds


def test_retain_forgets_every_other_provider(fake: FakeServer) -> None:
    """A full round of the daemon first retains the providers still in the database: one
    removed and declared again starts with nothing known, its last timeout included."""

    async def removed_then_back(prober: Prober) -> None:
        await prober.retain(["stuck"])  # "a" was removed
        await prober.retain(["a"])  # then "stuck" was, and "a" came back

    reports = _round_after(_a_and_stuck(fake), removed_then_back)
    assert _order(reports) == ["a", "stuck"]  # "stuck" is no suspect any more
    assert fake.connections["a"] == 2  # its first connection was closed when it was forgotten


def test_providers_that_timed_out_hand_their_slots_on_at_once(fake: FakeServer) -> None:
    """Five hung providers ahead of a healthy one, one slot: each used to hold the slot for
    SLOT_HOLD_S (0.5 s in all) before the healthy provider's turn; a suspect hands it on after
    SUSPECT_HOLD_S (10 ms) of an idle loop."""
    names = [f"stuck{i}" for i in range(5)]
    targets = [target(n, fake.add(n, models=[LLAMA], hang=True), 1.0) for n in names]
    targets.append(target("ok", fake.add("ok", models=[LLAMA]), 1.0))

    async def run() -> tuple[datetime, dict[str, ProbeReport]]:
        prober = Prober(env={}, concurrency=1)
        try:
            await prober.probe_all(targets)  # learns which ones time out
            started = datetime.now(UTC)
            return started, await prober.probe_all(targets)
        finally:
            await prober.aclose()

    started, reports = asyncio.run(run())
    assert reports["ok"].ok
    assert all(reports[n].reason is not None for n in names)
    waited = (reports["ok"].checked_at - started).total_seconds()
    assert waited < 0.4, f"the healthy provider waited {waited:.2f} s for a slot"
