"""The YAML text of configs that tests write, and the items they enqueue: one builder of each.

Providers: `provider_file` (one Ollama provider `local`), `PROVIDERS` (an Ollama and an
OpenAI-compatible provider with their usual fields). Routes: `routes_file` (`scoring` and
`extraction` on `local`), `local_ollama_routes` (any tasks on `local-ollama`), `ROUTES`. A whole
config: `EXAMPLE` (providers and routes as two files), `scoring_config` (two providers, four routes,
in one file). Queue: `items`.
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


# --- queue items --------------------------------------------------------------------------------


def items(count: int, prefix: str = "item") -> list[dict[str, Any]]:
    """`count` items to enqueue: ids `prefix-00`, `prefix-01`, ..., each with a text."""
    return [{"id": f"{prefix}-{i:02d}", "text": f"{prefix} number {i}"} for i in range(count)]
