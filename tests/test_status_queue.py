"""The status page's queue section: depth by task and status, what finished in the last minutes,
the latest dead jobs and links to the results; read from the database on both engines.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from reconciler.adapters.db import queue_store as queue
from reconciler.daemon.app import QUEUE_WINDOW_S, SHOWN_DEAD
from reconciler.daemon.page import status_page
from reconciler.daemon.state import DaemonState
from reconciler.service.queue import QueueView, overview


def _queue_view(engine: Engine) -> QueueView:
    return overview(engine, QUEUE_WINDOW_S, SHOWN_DEAD)


HOSTILE = "<script>alert(1)</script>\x1b[31m"


def text_of(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def test_the_queue_section_shows_depth_recent_throughput_latency_and_dead_jobs(
    engine: Engine,
) -> None:
    now = datetime.now(UTC)
    queue.enqueue(engine, "scoring", [(f"s-{i}", {"text": "x"}) for i in range(6)], now)
    queue.enqueue(engine, "triage", [("t-1", {"text": "y"}), ("t-2", {"text": "z"})], now)
    jobs = queue.claim(engine, "w", ["scoring", "triage"], 5, timedelta(seconds=60), now)
    by_item = {job.item_id: job.id for job in jobs}
    done = {"status": queue.DONE, "result": {"score": 1}, "finished_at": now, "updated_at": now}
    dead = {"status": queue.DEAD, "error": HOSTILE, "finished_at": now, "updated_at": now}
    old = {**done, "finished_at": now - timedelta(hours=1)}  # long before the window
    outcomes = [
        (by_item["s-0"], {**done, "latency_ms": 100.0}),
        (by_item["s-1"], {**done, "latency_ms": 300.0}),
        (by_item["s-2"], {**old, "latency_ms": 900.0}),
        (by_item["s-3"], dead),
    ]
    assert queue.finish_many(engine, "w", outcomes) == {job_id for job_id, _ in outcomes}

    view = _queue_view(engine)
    page = status_page(DaemonState("config", "db", queue=view), datetime.now(UTC))

    assert "<script>" not in page and "\x1b" not in page
    text = text_of(page)
    # Task, queued, leased, done, dead, done recently (and the rate), mean latency, results.
    assert "scoring 1 1 3 1 2 (0.4/min), 1 dead 200 ms JSON · reconciler results scoring" in text
    assert "triage 2 0 0 0 0 (0.0/min) — JSON · reconciler results triage" in text
    assert "href='/api/v1/results?task=scoring'" in page
    shown = HOSTILE.replace("\x1b", "\\x1b")  # the escape character written out
    assert f"scoring/s-3 after 1 attempt(s): {shown}" in text
    assert "reconciler jobs retry TASK --dead" in text


def test_an_empty_queue_says_how_to_fill_it(engine: Engine) -> None:
    page = status_page(DaemonState("config", "db", queue=_queue_view(engine)), datetime.now(UTC))
    assert "No jobs. Add items with reconciler enqueue TASK FILE.jsonl" in text_of(page)
