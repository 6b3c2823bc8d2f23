"""Group commit: outcomes that arrive while a write runs go out together in the next one.

The first outcome is written at once, so a lone job waits for nothing; under load one
transaction carries every outcome that arrived during the previous one, instead of one
transaction per job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

Outcome = tuple[int, dict[str, Any]]
RETRY_BASE_S = 0.2
RETRY_CAP_S = 5.0

log = logging.getLogger(__name__)


class GroupCommit:
    """Queue `(job id, values)` writes for `write_many`, which runs on a worker thread, takes
    a batch of them and returns the ids it wrote."""

    def __init__(self, write_many: Callable[[Sequence[Outcome]], set[int]]) -> None:
        self._write_many = write_many
        self._pending: list[tuple[int, dict[str, Any], asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def write(self, job_id: int, values: dict[str, Any]) -> bool:
        """Write one outcome with whatever else is waiting; True when it was written."""
        written: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((job_id, values, written))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await written

    async def _drain(self) -> None:
        failures = 0
        while self._pending:
            # A waiter cancelled meanwhile (its job given back at shutdown) is not written.
            batch = [entry for entry in self._pending if not entry[2].done()]
            self._pending = []
            if not batch:
                continue
            try:
                kept = await asyncio.to_thread(self._write_many, [(i, v) for i, v, _ in batch])
            except Exception as exc:
                # An answer already paid for is not thrown away because the database was busy
                # or down for a moment: the jobs stay held (their leases renewed) and the
                # write is tried again, with whatever arrived meanwhile.
                failures += 1
                delay = min(RETRY_CAP_S, RETRY_BASE_S * 2 ** (failures - 1))
                log.warning(
                    "could not store %d outcome(s) (%s); trying again in %.1f s",
                    len(batch),
                    type(exc).__name__,
                    delay,
                )
                self._pending[:0] = batch
                await asyncio.sleep(delay)
                continue
            failures = 0
            for job_id, _, waiter in batch:
                if not waiter.done():  # a waiter cancelled meanwhile no longer listens
                    waiter.set_result(job_id in kept)
