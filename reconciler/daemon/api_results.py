"""`GET /api/v1/results`: the answers of finished jobs, a page at a time.

Pages are keyset pages by (task, item id), the queue's unique key; `next` is an opaque cursor
naming the last row served, null once a page comes back short. A page costs its own rows however
deep into the results it is.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from datetime import UTC
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import Engine

from reconciler.service import results

MAX_LIMIT = 1000


class StatusFilter(StrEnum):
    done = "done"
    dead = "dead"
    all = "all"


def encode_cursor(task: str, item_id: str) -> str:
    raw = json.dumps([task, item_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> results.Cursor:
    """The (task, item id) a cursor names; ValueError when it is not one this API gave."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        task, item_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise ValueError("not a cursor") from None
    if not isinstance(task, str) or not isinstance(item_id, str):
        raise ValueError("not a cursor")
    return task, item_id


def router(engine: Engine) -> APIRouter:
    """The `/api/v1/results` endpoint, reading `engine`."""
    api = APIRouter(tags=["api"])

    @api.get("/api/v1/results")
    async def api_results(
        task: Annotated[str | None, Query(max_length=63, description="Only this task's.")] = None,
        status: Annotated[StatusFilter, Query(description="done, dead or all")] = StatusFilter.done,
        after: Annotated[str | None, Query(max_length=200, description="A page's `next`.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    ) -> dict[str, Any]:
        """Finished jobs by task and item id: answer, who answered, latency, tokens, attempts,
        when, and the error of dead jobs; `next` is the cursor of the following page."""
        try:
            cursor = decode_cursor(after) if after else None
        except ValueError:
            raise HTTPException(
                400, "`after` is not a cursor this API gave: pass a `next`"
            ) from None
        if cursor is not None and task is not None and cursor[0] != task:
            raise HTTPException(400, f"`after` is a cursor of another task than {task!r}")
        statuses = results.FINISHED if status is StatusFilter.all else (status.value,)
        query = results.ResultQuery(task, statuses)
        rows = await asyncio.to_thread(results.page, engine, query, cursor, limit)
        last = rows[-1] if len(rows) == limit else None
        return {
            "results": [_document(row) for row in rows],
            "next": encode_cursor(last["task"], last["item_id"]) if last else None,
        }

    return api


def _document(row: dict[str, Any]) -> dict[str, Any]:
    finished = row["finished_at"]
    if finished is not None and finished.tzinfo is None:
        finished = finished.replace(tzinfo=UTC)
    document = {k: v for k, v in row.items() if k not in ("id", "result", "finished_at")}
    return {
        **document,
        "answer": row["result"],
        "finished_at": finished.isoformat() if finished else None,
    }
