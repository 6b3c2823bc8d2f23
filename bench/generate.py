"""A realistic config directory of any size, the same bytes for the same arguments.

    python -m bench.generate DIR --routes 10000 --files 10

writes `DIR/providers.yaml` (a handful of providers of both built-in types) and the routes spread
evenly over `DIR/routes/routes-000.yaml` ... in the style a person writes: block mappings, flow
mappings for params and fallbacks, comments and the editor modeline. The text is formatted here
rather than by `yaml.dump`, which would take longer than loading it.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from pathlib import Path

MODELINE = "# yaml-language-server: $schema={up}reconciler.schema.json\n"
TASK_KINDS = ("scoring", "extraction", "summarization", "classification", "translation", "tagging")


@dataclass(frozen=True)
class Provider:
    name: str
    type: str
    models: tuple[str, ...]
    text: str


PROVIDERS = (
    Provider(
        "local-ollama",
        "ollama",
        ("llama3.1:8b", "qwen2.5:7b", "mistral:7b-instruct", "gemma2:9b"),
        """\
  local-ollama:
    type: ollama
    endpoint:
      base_url: http://127.0.0.1:11434
      timeout_s: 60
      connect_timeout_s: 3
      probe_timeout_s: 2
      headers: {X-Team: news}
    keep_alive: 5m
    max_concurrency: 4
""",
    ),
    Provider(
        "gpu-ollama",
        "ollama",
        ("llama3.1:70b", "qwen2.5:32b", "mixtral:8x7b"),
        """\
  gpu-ollama:
    type: ollama
    endpoint:
      base_url: http://10.0.4.17:11434
      api_key: {env: GPU_OLLAMA_TOKEN}
    keep_alive: 30m
    max_concurrency: 16
""",
    ),
    Provider(
        "vllm",
        "openai_compatible",
        ("meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct"),
        """\
  vllm:
    type: openai_compatible
    endpoint:
      base_url: http://vllm.internal:8000/v1
      api_key: {env: VLLM_API_KEY}
      timeout_s: 120
    health_path: /health
    max_concurrency: 64
""",
    ),
    Provider(
        "openrouter",
        "openai_compatible",
        (
            "meta-llama/llama-3.1-8b-instruct",
            "meta-llama/llama-3.1-70b-instruct",
            "qwen/qwen-2.5-7b-instruct",
            "mistralai/mistral-nemo",
        ),
        """\
  openrouter:
    type: openai_compatible
    endpoint:
      base_url: https://openrouter.ai/api/v1
      api_key: {env: OPENROUTER_API_KEY}
      headers: {HTTP-Referer: "https://news.example.com", X-Title: newsroom}
      timeout_s: 90
    max_concurrency: 8
""",
    ),
    Provider(
        "lmstudio",
        "openai_compatible",
        ("lmstudio-community/phi-3.5-mini",),
        """\
  lmstudio:
    type: openai_compatible
    enabled: false
    endpoint:
      base_url: http://192.168.1.20:1234/v1
      verify_tls: false
""",
    ),
)


def providers_text() -> str:
    """The providers file."""
    body = "".join(p.text for p in PROVIDERS)
    return MODELINE.format(up="../") + f"version: 1\nproviders:\n{body}"


def _params(rng: random.Random) -> str:
    items = [f"temperature: {rng.choice(('0', '0.2', '0.7', '1.0'))}"]
    if rng.random() < 0.6:
        items.append(f"num_ctx: {rng.choice((2048, 4096, 8192, 16384))}")
    if rng.random() < 0.4:
        items.append(f"max_tokens: {rng.choice((64, 256, 512, 1024))}")
    if rng.random() < 0.1:
        items.append('stop: ["\\n\\n", "###"]')
    if rng.random() < 0.05:
        items.append("response_format: {type: json_object}")
    return "{" + ", ".join(items) + "}"


def _route(rng: random.Random, task: str) -> str:
    primary = rng.choice(PROVIDERS[:4])
    model = rng.choice(primary.models)
    lines = [f"  {task}:", f"    provider: {primary.name}", f"    model: {model}"]
    if rng.random() < 0.1:
        lines.append("    required: true")
    if rng.random() < 0.05:
        lines.append("    enabled: false")
    if rng.random() < 0.02:
        lines.append("    protect: true")
    if rng.random() < 0.8:
        lines.append(f"    params: {_params(rng)}")
    used = {(primary.name, model)}
    fallbacks = []
    for _ in range(rng.choice((0, 0, 1, 1, 1, 2))):
        provider = rng.choice(PROVIDERS)
        choice = (provider.name, rng.choice(provider.models))
        if choice not in used:
            used.add(choice)
            fallbacks.append(f"      - {{provider: {choice[0]}, model: {choice[1]}}}")
    if fallbacks:
        lines.append("    fallbacks:")
        lines += fallbacks
    return "\n".join(lines) + "\n"


def routes_texts(routes: int, files: int, seed: int = 0) -> list[str]:
    """`routes` routes spread evenly over `files` file bodies, in order."""
    rng = random.Random(seed)
    texts = []
    per_file, extra = divmod(routes, files)
    start = 0
    for index in range(files):
        count = per_file + (1 if index < extra else 0)
        parts = [
            MODELINE.format(up="../../"),
            f"# routes {start} to {start + count - 1}\n",
            "version: 1\nroutes:\n",
        ]
        for number in range(start, start + count):
            parts.append(_route(rng, f"{TASK_KINDS[number % len(TASK_KINDS)]}-{number:06d}"))
        texts.append("".join(parts))
        start += count
    return texts


def write_config(directory: Path, routes: int, files: int, seed: int = 0) -> list[Path]:
    """Write the providers file and `files` route files under `directory`; return their paths."""
    if routes < files or files < 1:
        raise ValueError("need at least one file and one route per file")
    (directory / "routes").mkdir(parents=True, exist_ok=True)
    written = [directory / "providers.yaml"]
    written[0].write_text(providers_text(), encoding="utf-8")
    for index, text in enumerate(routes_texts(routes, files, seed)):
        path = directory / "routes" / f"routes-{index:03d}.yaml"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.generate", description=__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = write_config(args.directory, args.routes, args.files, args.seed)
    size = sum(p.stat().st_size for p in paths)
    print(f"wrote {args.routes:,} routes in {len(paths)} files ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
