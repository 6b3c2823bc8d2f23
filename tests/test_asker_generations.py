"""Calls of jobs claimed before and after an apply, in flight together, against a fake Ollama.

A worker holds jobs of an older route snapshot while newer ones arrive. However the two are
interleaved, the provider never gets more calls at once than the newest `max_concurrency`, no
call waits for a local connection, an older snapshot never brings an older client back, and a
replaced client is closed once its calls are done.
"""

from __future__ import annotations

import asyncio
from typing import Any

from reconciler.core.spec import OllamaProvider
from reconciler.service.ask import Asker, RouteSnapshot
from tests.fakeprovider import FakeModel, FakeServer, answering

ROUTE: dict[str, Any] = {
    "provider": "local",
    "model": "llama3.1:8b",
    "enabled": True,
    "fallbacks": [],
    "params": {},
    "prompt": None,
    "output_schema": None,
}


def snapshot(generation: int, url: str, concurrency: int) -> RouteSnapshot:
    endpoint = {"base_url": url, "timeout_s": 10, "connect_timeout_s": 0.5}
    spec = OllamaProvider.model_validate(
        {"type": "ollama", "endpoint": endpoint, "max_concurrency": concurrency}
    )
    return RouteSnapshot(generation, {"scoring": ROUTE}, {"local": spec})


def test_old_and_new_snapshots_share_one_limit_and_the_newest_client(fake: FakeServer) -> None:
    url = fake.add("local", models=[FakeModel("llama3.1:8b", loaded=True)], chat=answering())
    fake.behaviours["local"].chat_delay_s = 0.6  # longer than the 0.5 s pool timeout
    old, new = snapshot(1, url, 8), snapshot(2, url, 4)
    asker = Asker(env={})
    peak = 0

    async def watch(done: asyncio.Event) -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, asker._limits["local"].in_flight if asker._limits else 0)
            await asyncio.sleep(0.01)

    async def run() -> list[Any]:
        done = asyncio.Event()
        watcher = asyncio.create_task(watch(done))
        first = [asker.ask(old, "scoring", ROUTE, {"text": f"old {i}"}) for i in range(2)]
        calls = [asyncio.create_task(call) for call in first]
        await asyncio.sleep(0.05)  # the older snapshot's calls are in flight
        for i in range(16):  # then the two alternate, as claims of both generations would
            taken = old if i % 2 else new
            calls.append(asyncio.create_task(asker.ask(taken, "scoring", ROUTE, {"text": str(i)})))
        answers = await asyncio.gather(*calls, return_exceptions=True)
        done.set()
        await watcher
        await asker.close()
        return answers

    answers = asyncio.run(run())
    failures = [a for a in answers if isinstance(a, BaseException)]
    assert not failures, failures  # no PoolTimeout, no call refused
    assert peak <= 4  # the newest limit counts the older calls still running too
    clients = {id(entry[2]) for entry in asker._clients.values()}
    assert len(clients) <= 1
    assert fake.connections["local"] <= 4 + 2
