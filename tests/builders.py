"""The YAML text of configs that tests write, and the items they enqueue: one builder of each.

Providers: `provider_file` (one Ollama provider `local`), `PROVIDERS` (an Ollama and an
OpenAI-compatible provider with their usual fields). Routes on `local`: `routes_file` (`scoring`
and `extraction`), `numbered_routes` (`scoring`, `task-00001`..., and the rows they make:
`numbered_route_rows`), `task_routes` (`TWENTY_TASKS`, with params); `local_ollama_routes` (any
tasks on `local-ollama`), `ROUTES`. A whole config: `EXAMPLE` (providers and routes as two
files), `ONE_ROUTE_CONFIG` (`scoring` on `local`, in one file), `scoring_config` (two providers,
four routes, in one file), `many_routes` (one provider, 300 routes), `BEFORE_CONFIG` then
`AFTER_CONFIG` (every kind of write: create, adopt, update, delete). Queue: `items`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# --- providers ----------------------------------------------------------------------------------


def provider_file(url: str, *, probe_timeout_s: float = 1, key_env: str | None = None) -> str:
    """One Ollama provider `local` at `url`, with an API key from `key_env` if given."""
    key = f", api_key: {{env: {key_env}}}" if key_env else ""
    return f"""\
version: 1
providers:
  local:
    type: ollama
    endpoint: {{base_url: "{url}", probe_timeout_s: {probe_timeout_s}{key}}}
"""


PROVIDERS = """\
version: 1
providers:
  local-ollama:
    type: ollama
    enabled: true
    endpoint:
      base_url: http://127.0.0.1:11434
      timeout_s: 60
      headers: {X-Team: news}
    keep_alive: 5m
  openrouter:
    type: openai_compatible
    endpoint:
      base_url: https://openrouter.ai/api/v1
      api_key: {env: OPENROUTER_API_KEY}
"""

# --- routes -------------------------------------------------------------------------------------


def routes_file(model: str = "llama3.1:8b", extra: str = "") -> str:
    """`scoring` (required) and `extraction` on provider `local`, then `extra` as written."""
    return f"""\
version: 1
routes:
  scoring:
    provider: local
    model: {model}
    required: true
  extraction:
    provider: local
    model: {model}
{extra}"""


def numbered_routes(model: str = "llama3.1:8b", count: int = 2) -> str:
    """`scoring` (required) and `count - 1` more routes `task-00001`..., all on provider `local`."""
    lines = ["version: 1", "routes:", "  scoring:", "    provider: local", f"    model: {model}"]
    lines.append("    required: true")
    lines += [f"  task-{i:05d}: {{provider: local, model: {model}}}" for i in range(1, count)]
    return "\n".join(lines) + "\n"


def numbered_route_rows(model: str, count: int) -> list[tuple[str, str, str]]:
    """The (task, provider, model) rows, sorted, once `numbered_routes(model, count)` is applied."""
    tasks = ["scoring", *(f"task-{i:05d}" for i in range(1, count))]
    return sorted((task, "local", model) for task in tasks)


TWENTY_TASKS = tuple(f"task-{i:02d}" for i in range(20))  # a truncated file visibly loses routes


def task_routes(model: str, tasks: tuple[str, ...] = TWENTY_TASKS) -> str:
    """`tasks` on provider `local`, each with `model` and params, under a schema comment."""
    lines = ["# yaml-language-server: $schema=../reconciler.schema.json", "version: 1", "routes:"]
    for task in tasks:
        lines += [
            f"  {task}:",
            "    provider: local",
            f"    model: {model}",
            "    params: {temperature: 0, num_ctx: 8192}",
        ]
    return "\n".join(lines) + "\n"


def local_ollama_routes(models: Mapping[str, str], extra: Mapping[str, str] | None = None) -> str:
    """A routes file: each task on local-ollama with its model, plus optional extra lines."""
    lines = ["version: 1", "routes:" if models else "routes: {}"]
    for task, model in models.items():
        lines += [f"  {task}:", "    provider: local-ollama", f'    model: "{model}"']
        lines += [f"    {line}" for line in (extra or {}).get(task, "").splitlines()]
    return "\n".join(lines) + "\n"


ROUTES = """\
version: 1
routes:
  scoring:
    provider: local-ollama
    model: llama3.1:8b
    required: true
    params: {temperature: 0, num_ctx: 8192}
    fallbacks:
      - {provider: openrouter, model: meta-llama/llama-3.1-8b-instruct}
  summarization:
    provider: local-ollama
    model: qwen2.5:7b
    enabled: false
"""

# --- whole configs ------------------------------------------------------------------------------

ONE_ROUTE_CONFIG = """\
version: 1
providers:
  local:
    type: ollama
    endpoint: {base_url: "http://127.0.0.1:9"}
routes:
  scoring:
    provider: local
    model: llama3.1:8b
"""

EXAMPLE = {"providers.yaml": PROVIDERS, "routes.yaml": ROUTES}

LABEL_PROMPT = "Label the message as spam or ham. Answer with JSON."
LABEL_SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["spam", "ham"]}},
    "required": ["label"],
    "additionalProperties": False,
}


def scoring_config(local: str, cloud: str, triage_model: str = "llama3.1:8b") -> str:
    """Four routes: with a fallback, alone, and two with their own prompt and output schema."""
    label = f"prompt: {json.dumps(LABEL_PROMPT)}\n    output_schema: {json.dumps(LABEL_SCHEMA)}"
    return f"""\
version: 1
providers:
  local:
    type: ollama
    endpoint: {{base_url: "{local}", probe_timeout_s: 1, timeout_s: 10}}
    max_concurrency: 4
  cloud:
    type: openai_compatible
    endpoint: {{base_url: "{cloud}", probe_timeout_s: 1, timeout_s: 10}}
routes:
  scoring:
    provider: local
    model: llama3.1:8b
    required: true
    fallbacks:
      - {{provider: cloud, model: gpt-4o-mini}}
  triage:
    provider: local
    model: {triage_model}
  labelling:
    provider: local
    model: llama3.1:8b
    {label}
  extraction:
    provider: cloud
    model: gpt-4o-mini
    {label}
"""


# --- many routes, and every kind of write -------------------------------------------------------


def _provider_entry(name: str, kind: str, url: str) -> str:
    return f"  {name}:\n    type: {kind}\n    endpoint:\n      base_url: {url}\n"


def _route_entry(task: str, provider: str, model: str) -> str:
    return f"  {task}:\n    provider: {provider}\n    model: {model}\n"


def many_routes(model: str, count: int = 300) -> dict[str, str]:
    """One provider and `count` routes whose models all carry `model`."""
    body = "".join(_route_entry(f"task-{i:03d}", "local", f"{model}-{i}") for i in range(count))
    provider = _provider_entry("local", "ollama", "http://127.0.0.1:11434")
    return {"routes.yaml": "version: 1\nproviders:\n" + provider + "routes:\n" + body}


BEFORE_CONFIG = {
    "providers.yaml": "version: 1\nproviders:\n"
    + _provider_entry("keep", "ollama", "http://127.0.0.1:11434")
    + _provider_entry("old", "ollama", "http://127.0.0.1:11435")
    + _provider_entry("stable", "openai_compatible", "http://127.0.0.1:8000/v1"),
    "routes.yaml": "version: 1\nroutes:\n"
    + _route_entry("t-keep", "keep", "m1")
    + _route_entry("t-old", "old", "m1")
    + "".join(_route_entry(f"t-stable-{i}", "stable", "m1") for i in range(4)),
}
# Every kind of write: create, adopt, update and delete, of providers and of routes.
AFTER_CONFIG = {
    "providers.yaml": "version: 1\nproviders:\n"
    + _provider_entry("keep", "ollama", "http://127.0.0.1:11436")
    + _provider_entry("new", "ollama", "http://127.0.0.1:11437")
    + _provider_entry("stable", "openai_compatible", "http://127.0.0.1:8000/v1")
    + _provider_entry("legacy", "ollama", "http://127.0.0.1:11438"),
    "routes.yaml": "version: 1\nroutes:\n"
    + _route_entry("t-keep", "keep", "m2")
    + _route_entry("t-new", "new", "m1")
    + _route_entry("t-legacy", "legacy", "m3")
    + "".join(_route_entry(f"t-stable-{i}", "stable", "m1") for i in range(4)),
}


# --- queue items --------------------------------------------------------------------------------


def items(count: int, prefix: str = "item") -> list[dict[str, Any]]:
    """`count` items to enqueue: ids `prefix-00`, `prefix-01`, ..., each with a text."""
    return [{"id": f"{prefix}-{i:02d}", "text": f"{prefix} number {i}"} for i in range(count)]
