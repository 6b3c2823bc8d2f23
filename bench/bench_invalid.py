"""Validate files holding N problems, one per entry, against raw libyaml parsing of the same bytes.

Reporting a problem must cost about as much as accepting the entry would: the time to reject a
file grows with the number of problems in it, linearly. Per case (`invalid/KIND/N`: N entries,
each with one problem of KIND, in files of at most 20,000 entries):
- floor: `yaml.load(data, Loader=yaml.CSafeLoader)` of every file's bytes, the collector
  running as usual, and again with it paused (the loader pauses it while parsing);
- load: `ConfigLoader().load(files)`, which must raise `ConfigInvalid` with exactly N problems.

Ratios are load time / floor time. The ratio of two sizes of the same kind says whether the cost
per problem stays flat (linear) or grows with the count (quadratic).
"""

from __future__ import annotations

from collections.abc import Callable

import yaml

from bench.harness import Options, Report, measure, progress, rate, seconds
from reconciler.core.config import ConfigLoader
from reconciler.errors import ConfigInvalid

NAME = "invalid"
TITLE = "Report N problems (ConfigLoader) vs raw libyaml yaml.load of the same bytes"

FULL_SIZES = (1_000, 5_000, 20_000, 100_000)
QUICK_SIZES = (1_000, 5_000)
QUICK_BUDGET_S = 1.0
PER_FILE = 20_000

HEAD = """\
version: 1
providers:
  local-ollama:
    type: ollama
    endpoint:
      base_url: http://127.0.0.1:11434
"""
_TYPOS = ("requried", "requird", "reqiured", "enabeld", "protcet", "fallback", "parms")


def _route(i: int, body: str) -> str:
    return f"  task-{i:06d}:\n    provider: local-ollama\n{body}"


# Each kind: (section, entry i -> text holding exactly one problem).
KINDS: dict[str, tuple[str, Callable[[int], str]]] = {
    "value": ("routes", lambda i: _route(i, '    model: m\n    required: "yes"\n')),
    "unknown": ("routes", lambda i: _route(i, f"    model: m\n    {_TYPOS[i % 7]}: true\n")),
    "missing": ("routes", lambda i: _route(i, "    enabled: true\n")),
    "undeclared": ("routes", lambda i: f"  task-{i:06d}:\n    provider: gone-{i}\n    model: m\n"),
    "duplicate": ("routes", lambda i: _route(i, "    model: m\n    model: n\n")),
    "name": ("routes", lambda i: f"  Task {i}:\n    provider: local-ollama\n    model: m\n"),
    "control": ("routes", lambda i: _route(i, '    model: "llama\\0"\n')),
    "secret": (
        "providers",
        lambda i: (
            f"  p-{i:06d}:\n    type: ollama\n    endpoint:\n"
            "      base_url: http://127.0.0.1:11434\n"
            "      headers: {authorization: Bearer literal}\n"
        ),
    ),
}

HEADERS = (
    "case",
    "files",
    "MB",
    "floor s",
    "floor gc-off s",
    "load s",
    "problems/s",
    "x floor",
    "x floor gc-off",
    "runs",
)


def files_for(kind: str, problems: int) -> list[tuple[str, bytes]]:
    """`problems` entries of `kind` spread over files of at most PER_FILE entries."""
    section, entry = KINDS[kind]
    out = []
    for start in range(0, problems, PER_FILE):
        head = HEAD if start == 0 else "version: 1\n"  # the one valid provider, declared once
        if section == "routes" or start:
            head += f"{section}:\n"
        body = "".join(entry(i) for i in range(start, min(start + PER_FILE, problems)))
        out.append((f"{kind}-{start // PER_FILE:03d}.yaml", (head + body).encode()))
    return out


def run(options: Options) -> Report:
    sizes = QUICK_SIZES if options.quick else FULL_SIZES
    if options.quick:
        options = Options(options.quick, options.filters, options.repeats, QUICK_BUDGET_S)
    report = Report(
        title=TITLE + "  (case: invalid/KIND/PROBLEMS; medians)",
        headers=HEADERS,
        notes=[
            "floor: yaml.load(data, Loader=yaml.CSafeLoader) of the same bytes; gc-off: with "
            "the garbage collector paused.",
            "load: ConfigLoader().load(files) raising ConfigInvalid with every problem; "
            "x floor: load time / floor time.",
            "runs: timed runs of floor / floor gc-off / load (fewer when a run is long).",
        ],
    )
    for kind in KINDS:
        for size in sizes:
            name = f"{NAME}/{kind}/{size}"
            if options.selected(name):
                progress(f"{name} ...")
                report.rows.append(_run_case(name, kind, size, options))
    return report


def _run_case(name: str, kind: str, problems: int, options: Options) -> list[str]:
    sources = files_for(kind, problems)
    size = sum(len(data) for _, data in sources)

    def floor() -> list[object]:
        return [yaml.load(data, Loader=yaml.CSafeLoader) for _, data in sources]

    def load() -> int:
        try:
            ConfigLoader().load(sources)
        except ConfigInvalid as exc:
            found = len(exc.problems)
        else:
            found = 0
        if found != problems:  # a sanity check, not a timing assertion
            raise AssertionError(f"{name}: {found} problems reported, {problems} planted")
        return found

    floor_gc = measure(floor, options)
    floor_paused = measure(floor, options, pause_gc=True)
    fresh = measure(load, options, pause_gc=True)  # as every caller of the loader does
    return [
        name,
        str(len(sources)),
        f"{size / 1e6:.1f}",
        seconds(floor_gc.median),
        seconds(floor_paused.median),
        seconds(fresh.median),
        rate(problems, fresh.median),
        f"{fresh.median / floor_gc.median:.2f}",
        f"{fresh.median / floor_paused.median:.2f}",
        "/".join(str(t.runs) for t in (floor_gc, floor_paused, fresh)),
    ]
