"""The Ollama probe: `/api/version`, `/api/tags`, `/api/show` and `/api/ps`. Never inference.

Each is a metadata read that costs the server nothing: no model is loaded or kept loaded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx

from reconciler.adapters.providers.http import ProbeFailure, check_status, request
from reconciler.adapters.providers.observation import Observation
from reconciler.core.readiness import Reason, model_matches


async def probe_ollama(
    client: httpx.AsyncClient, wanted: set[str], headers: Mapping[str, str]
) -> Observation:
    """What an Ollama server has: its version, models, their capabilities, what is loaded."""
    version, names, loaded = await asyncio.gather(
        _version(client, headers), _tags(client, headers), _loaded(client, headers)
    )
    capabilities: dict[str, frozenset[str]] = {}
    for model in sorted(wanted):
        found = model_matches(model, names)
        if found is None:
            continue
        reported = await _capabilities(client, headers, found)
        if reported is None:
            names.discard(found)  # listed a moment ago, gone now
        elif reported:
            capabilities[found] = reported
    return Observation(version, frozenset(names), capabilities, loaded)


async def _version(client: httpx.AsyncClient, headers: Mapping[str, str]) -> str | None:
    answer = await request(client, "GET", "api/version", headers)
    check_status(answer, "/api/version")
    body = answer.json("/api/version")
    version = body.get("version") if isinstance(body, dict) else None
    if not isinstance(version, str):
        raise ProbeFailure(Reason.bad_response, "/api/version has no version: not Ollama?")
    return version


async def _tags(client: httpx.AsyncClient, headers: Mapping[str, str]) -> set[str]:
    answer = await request(client, "GET", "api/tags", headers)
    check_status(answer, "/api/tags")
    return _model_names(answer.json("/api/tags"), "/api/tags")


async def _loaded(client: httpx.AsyncClient, headers: Mapping[str, str]) -> frozenset[str] | None:
    answer = await request(client, "GET", "api/ps", headers)
    if answer.status == 404:
        return None  # an Ollama older than /api/ps
    check_status(answer, "/api/ps")
    return frozenset(_model_names(answer.json("/api/ps"), "/api/ps"))


def _model_names(body: Any, what: str) -> set[str]:
    models = body.get("models") if isinstance(body, dict) else None
    if not isinstance(models, list):
        raise ProbeFailure(Reason.bad_response, f"{what} has no `models` list")
    names: set[str] = set()
    for entry in models:
        if isinstance(entry, dict):
            names.update(v for k in ("name", "model") if isinstance(v := entry.get(k), str))
    return names


async def _capabilities(
    client: httpx.AsyncClient, headers: Mapping[str, str], model: str
) -> frozenset[str] | None:
    """The model's capabilities; empty when the server does not report them; None if gone."""
    answer = await request(client, "POST", "api/show", headers, json_body={"model": model})
    if answer.status == 404:
        return None
    check_status(answer, "/api/show")
    body = answer.json("/api/show")
    reported = body.get("capabilities") if isinstance(body, dict) else None
    if not isinstance(reported, list):
        return frozenset()
    return frozenset(c for c in reported if isinstance(c, str))
