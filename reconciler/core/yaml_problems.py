"""The problems of a file's text before it is a document: its size, its encoding, YAML syntax,
anchors and aliases, and nesting too deep for the parser; each a `Problem` at its line and column.

Purely computational, no I/O. Also the strict loader both passes use, and the limits (MAX_BYTES,
MAX_DEPTH) that `yamldoc` enforces.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import yaml
from yaml.nodes import Node, ScalarNode, SequenceNode

from reconciler.errors import Problem

MAX_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 32
MAX_ANCHOR_PROBLEMS = 10  # an alias bomb holds hundreds of aliases; the first few make the point

STR_TAG = "tag:yaml.org,2002:str"
SEQ_TAG = "tag:yaml.org,2002:seq"
MAP_TAG = "tag:yaml.org,2002:map"

_BaseLoader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
HAVE_LIBYAML: bool = _BaseLoader is not yaml.SafeLoader

CORE_TAG_PREFIX = "tag:yaml.org,2002:"
TOO_DEEP = f"the document nests deeper than {MAX_DEPTH} levels"
TOO_DEEP_HINT = "flatten the structure; no valid config nests this deep"


class StrictLoader(_BaseLoader):  # type: ignore[misc]
    """Resolves every untagged node to plain str/seq/map; typing happens in `plain_scalar`."""

    def resolve(self, kind: type[Node], value: Any, implicit: Any) -> str:
        if kind is ScalarNode:
            return STR_TAG
        if kind is SequenceNode:
            return SEQ_TAG
        return MAP_TAG


class YamlProblems(Exception):
    """The file is not acceptable YAML; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems[0].message if problems else "invalid YAML")
        self.problems = problems


def decode(name: str, data: bytes) -> str:
    if len(data) > MAX_BYTES:
        raise YamlProblems(
            [
                text_problem(
                    name,
                    1,
                    1,
                    "file_too_large",
                    f"the file is larger than the limit of {MAX_BYTES:,} bytes",
                    "split it into several files in the config directory",
                )
            ]
        )
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = line_column(data, exc.start)
        raise YamlProblems(
            [
                text_problem(
                    name,
                    line,
                    column,
                    "encoding",
                    f"the file is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset "
                    f"{exc.start})",
                    "save the file as UTF-8",
                )
            ]
        ) from None


def anchor_problems(name: str, text: str) -> list[Problem]:
    """Every anchor and alias, each at its place (the first MAX_ANCHOR_PROBLEMS of them).

    Only called when the text could hold one; a syntax error ends the scan, and the real parse
    reports it with its place.
    """
    found: list[Problem] = []
    extra = 0
    loader = StrictLoader(text)
    try:
        for event in events(loader):
            anchor = getattr(event, "anchor", None)
            if not anchor:
                continue
            if len(found) == MAX_ANCHOR_PROBLEMS:
                extra += 1
                continue
            mark = event.start_mark
            assert mark is not None
            if isinstance(event, yaml.AliasEvent):
                what, hint = f"alias *{anchor}", f"write the value of &{anchor} out in full here"
            else:
                what, hint = (
                    f"anchor &{anchor}",
                    f"remove &{anchor} and write the value out in full at each place it is used",
                )
            found.append(
                text_problem(
                    name,
                    mark.line + 1,
                    mark.column + 1,
                    "yaml_anchor",
                    f"the YAML {what} is not allowed (anchors and aliases are refused)",
                    hint,
                )
            )
    except (yaml.YAMLError, RecursionError):
        pass
    finally:
        loader.dispose()
    if extra:
        last = found[-1]
        found[-1] = replace(
            last, message=f"{last.message} ({extra} more in this file are not listed)"
        )
    return found


def shown_tag(tag: str | None) -> str:
    """A tag as it is written in the file: `!!python/...`, not `tag:yaml.org,2002:python/...`."""
    tag = tag or ""
    return "!!" + tag.removeprefix(CORE_TAG_PREFIX) if tag.startswith(CORE_TAG_PREFIX) else tag


def line_column(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters, as YAML marks count) of a byte offset."""
    before = data[:offset]
    start = before.rfind(b"\n") + 1
    column = len(before[start:].decode("utf-8", errors="replace")) + 1
    return before.count(b"\n") + 1, column


def events(loader: Any) -> Iterator[yaml.Event]:
    while loader.check_event():
        yield loader.get_event()


def reader_problem(name: str, text: str, exc: yaml.reader.ReaderError) -> Problem:
    """A character YAML refuses; libyaml counts its position in bytes, PyYAML in characters."""
    data = text.encode("utf-8")
    offset = exc.position if HAVE_LIBYAML else len(text[: exc.position].encode("utf-8"))
    line, column = line_column(data, offset)
    code = exc.character if isinstance(exc.character, int) else ord(exc.character)
    return text_problem(
        name,
        line,
        column,
        "yaml_syntax",
        f"invalid YAML: the character U+{code:04X} is not allowed ({exc.reason})",
        "remove it; inside a double-quoted string, write it as an escape such as \\x07",
    )


def syntax_problem(name: str, text: str, exc: yaml.MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = exc.problem or "invalid YAML"
    if "nesting depth" in problem:
        return too_deep(name, text, line, column)
    if "expected a single document" in (exc.context or ""):
        return text_problem(
            name,
            line,
            column,
            "multiple_documents",
            "the file holds more than one YAML document (a second `---`)",
            "put each document in a file of its own",
        )
    context = f" {exc.context}" if exc.context else ""
    start = exc.context_mark
    if exc.context and start and mark and (start.line, start.column) != (mark.line, mark.column):
        context += f" (it starts at line {start.line + 1}, column {start.column + 1})"
    hint = "check the indentation and quoting around this place"
    if "flow" in (exc.context or "") and start:
        hint = (
            f"close the bracket opened at line {start.line + 1}, column {start.column + 1}, "
            "or separate its items with ','"
        )
    if char_at(text, line, column) == "\t":
        hint = "this is a tab character; indent YAML with spaces only"
    return text_problem(
        name, line, column, "yaml_syntax", f"invalid YAML: {problem}{context}", hint
    )


def char_at(text: str, line: int, column: int) -> str:
    lines = text.split("\n", line)
    if len(lines) < line:
        return ""
    row = lines[line - 1]
    return row[column - 1] if 0 < column <= len(row) else ""


def too_deep(name: str, text: str, line: int, column: int) -> Problem:
    """The parser gave up on the nesting (libyaml at 1,000 levels, PyYAML's recursion at ~500).

    Point at the first collection nested deeper than MAX_DEPTH, as the builder would, when the
    events get that far (a deep flow sequence fails before its first one: keep `line:column`).
    """
    depth = 1
    loader = StrictLoader(text)
    try:
        for event in events(loader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH + 1:
                    assert event.start_mark is not None
                    line, column = event.start_mark.line + 1, event.start_mark.column + 1
                    break
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except (yaml.YAMLError, RecursionError):
        pass
    finally:
        loader.dispose()
    return text_problem(name, line, column, "too_deep", TOO_DEEP, TOO_DEEP_HINT)


def text_problem(
    name: str, line: int, column: int, code: str, message: str, hint: str = ""
) -> Problem:
    return Problem(
        file=name, line=line, column=column, path="", code=code, message=message, hint=hint
    )
