"""The OpenAI-compatible probe: `GET {base_url}/models`, and the server's health path if set.

Both are free metadata reads on vLLM, llama.cpp, LM Studio, OpenAI and OpenRouter.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx

from reconciler.adapters.providers.http import (
    ProbeFailure,
    check_status,
    provider_text,
    request,
)
from reconciler.adapters.providers.observation import Observation
from reconciler.core.readiness import Reason


def models_path(base_url: str) -> str:
    """`models` under a base URL that ends in a version (`/v1`), else `v1/models`."""
    last = urlsplit(base_url).path.rstrip("/").rsplit("/", 1)[-1]
    versioned = len(last) > 1 and last[0] == "v" and last[1:].isdigit()
    return "models" if versioned else "v1/models"


async def probe_openai_compatible(
    client: httpx.AsyncClient,
    headers: Mapping[str, str],
    health_path: str | None,
) -> Observation:
    """The models the server lists; first its health endpoint when it has one."""
    if health_path is not None:
        origin = client.base_url.copy_with(path=health_path, query=None)
        answer = await request(client, "GET", str(origin), headers)
        if answer.status == 503 and b"loading" in answer.body.lower():
            raise ProbeFailure(Reason.loading, f"{health_path} answered 503: loading model")
        check_status(answer, health_path)
    path = models_path(str(client.base_url))
    answer = await request(client, "GET", path, headers)
    check_status(answer, f"/{path}")
    body = answer.json(f"/{path}")
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise ProbeFailure(Reason.bad_response, f"/{path} has no `data` list")
    ids = {
        provider_text(entry["id"])
        for entry in data
        if isinstance(entry, dict) and isinstance(entry.get("id"), str)
    }
    return Observation(models=frozenset(ids))
