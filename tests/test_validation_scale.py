"""Reporting N problems costs work linear in N, and every one of them is still located.

No wall clock here: the work is counted. Python lines executed while loading count every loop a
quadratic implementation would run (a walk from the root per problem, a re-scan of a mapping,
a comparison with every candidate name); four times the problems must cost about four times the
lines, not sixteen.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest

from bench.bench_invalid import KINDS, files_for
from reconciler.core import yamldoc
from reconciler.core.config import ConfigLoader
from reconciler.core.nodeindex import NodeIndex
from reconciler.core.suggest import MAX_COMPARED, MAX_LISTED, Suggester
from reconciler.errors import ConfigInvalid, Problem

# Linear work gives 4.0 (a little less, for the fixed costs); the quadratic code this replaced
# gave 7 to 15 at these sizes.
MAX_RATIO = 5.0


def problems_of(files: list[tuple[str, bytes]]) -> list[Problem]:
    with pytest.raises(ConfigInvalid) as raised:
        ConfigLoader().load(files)
    return raised.value.problems


def lines_executed(files: list[tuple[str, bytes]]) -> tuple[int, int]:
    """(Python lines run while loading `files`, problems reported)."""
    count = 0

    def line(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        count += 1
        return line

    def call(frame: FrameType, event: str, arg: Any) -> Any:
        return line

    previous = sys.gettrace()
    sys.settrace(call)
    try:
        ConfigLoader().load(files)
    except ConfigInvalid as exc:
        found = len(exc.problems)
    else:
        found = 0
    finally:
        sys.settrace(previous)
    return count, found


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_four_times_the_problems_cost_about_four_times_the_work(kind: str) -> None:
    small, small_found = lines_executed(files_for(kind, 300))
    large, large_found = lines_executed(files_for(kind, 1200))

    assert (small_found, large_found) == (300, 1200)
    assert large / small < MAX_RATIO, f"{kind}: {small} lines for 300, {large} for 1200"


@pytest.fixture
def indexes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[NodeIndex]]:
    """Every `NodeIndex` made while the test runs."""
    made: list[NodeIndex] = []

    class Recorded(NodeIndex):
        def __init__(self, root: Any) -> None:
            super().__init__(root)
            made.append(self)

    monkeypatch.setattr(yamldoc, "NodeIndex", Recorded)
    yield made


def index_work(indexes: list[NodeIndex], kind: str, problems: int) -> int:
    indexes.clear()
    assert len(problems_of(files_for(kind, problems))) == problems
    return sum(index.entries_indexed + index.steps for index in indexes)


@pytest.mark.parametrize("kind", ["value", "unknown", "undeclared", "secret"])
def test_locating_problems_reads_each_mapping_entry_once(
    indexes: list[NodeIndex], kind: str
) -> None:
    small = index_work(indexes, kind, 1000)
    large = index_work(indexes, kind, 4000)

    assert small > 1000
    assert large / small < 4.4, f"{kind}: {small} entries and steps for 1,000, {large} for 4,000"


# Per kind: where its one problem is, from the line of the entry's key: (lines below the key,
# column, the path below the entry, code). `None`: the key written on that line.
PLACES: dict[str, tuple[int, int, str | None, str]] = {
    "value": (3, 15, ".required", "bool_type"),
    "unknown": (3, 5, None, "unknown_field"),
    "missing": (0, 3, ".model", "missing_field"),
    "undeclared": (1, 15, ".provider", "unknown_provider"),
    "duplicate": (3, 5, ".model", "duplicate_key"),
    "name": (0, 3, "", "invalid_name"),
    "control": (2, 12, ".model", "control_character"),
    "secret": (4, 32, ".endpoint.headers.authorization", "secret_literal"),
}


def wanted_places(kind: str, files: list[tuple[str, bytes]]) -> set[tuple[str, int, int, str, str]]:
    """Where each entry's problem must be reported, read from the text of the files."""
    section = "providers" if kind == "secret" else "routes"
    below, column, suffix, code = PLACES[kind]
    wanted = set()
    for name, data in files:
        lines = data.decode().splitlines()
        for number, text in enumerate(lines, start=1):
            key = text[2:-1]
            if not text.startswith("  ") or not text.endswith(":") or key[0] == " ":
                continue  # not the key of an entry under the section
            if key == "local-ollama":
                continue  # the one valid provider, declared in the first file
            entry = f"{section}.{key}" if " " not in key else f"{section}[{key!r}]"
            written = lines[number + below - 1].split(":")[0].strip()
            after = suffix if suffix is not None else f".{written}"
            wanted.add((name, number + below, column, entry + after, code))
    return wanted


@pytest.mark.parametrize("kind", sorted(PLACES))
def test_each_of_4000_problems_is_reported_at_its_file_line_column_and_path(kind: str) -> None:
    files = files_for(kind, 4000)
    wanted = wanted_places(kind, files)

    found = {(p.file, p.line, p.column, p.path, p.code) for p in problems_of(files)}

    assert len(wanted) == 4000
    assert found == wanted


def test_a_suggestion_among_20000_names_compares_a_bounded_number_of_them() -> None:
    names = [f"team-{i:05d}-ollama" for i in range(20_000)] + ["shared-gpu"]
    suggestion = Suggester(names)

    assert suggestion("shared-gpus") == "did you mean 'shared-gpu'?"
    assert suggestion("team-01234-olama") == "did you mean 'team-01234-ollama'?"
    assert suggestion("teem-01234-ollama") == "did you mean 'team-01234-ollama'?"
    words = [f"cpu-{i}" for i in range(1000)]
    for word in words + words:
        suggestion(word)
    assert suggestion.compared <= (len(words) + 3) * MAX_COMPARED


def test_when_no_name_is_close_the_hint_lists_a_few_valid_names_not_all() -> None:
    hint = Suggester(f"gpu-{i:05d}" for i in range(20_000))("completely-different")

    assert hint.startswith("valid names: gpu-00000, gpu-00001")
    assert hint.count("gpu-") == MAX_LISTED
    assert hint.endswith(f"({20_000 - MAX_LISTED} more)")
