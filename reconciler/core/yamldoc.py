"""Strict, safe YAML: one document of plain values, with the position of every node kept.

Purely computational, no I/O: the caller hands in the bytes of a file and its display name.

The rules (DESIGN section 1):
- libyaml's C parser when present; tags other than the plain str/seq/map never construct anything;
- plain scalars follow YAML 1.2's core schema, not 1.1's: `no`, `on`, `010`, `22:22` stay text;
- anchors and aliases, merge keys (`<<`), duplicate keys, non-string keys, nesting deeper than
  MAX_DEPTH, several documents, empty documents, more than MAX_BYTES, non-UTF-8 bytes and control
  characters are problems.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.errors import Problem

MAX_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 32
MAX_ANCHOR_PROBLEMS = 10  # an alias bomb holds hundreds of aliases; the first few make the point

STR_TAG = "tag:yaml.org,2002:str"
SEQ_TAG = "tag:yaml.org,2002:seq"
MAP_TAG = "tag:yaml.org,2002:map"

_BaseLoader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
HAVE_LIBYAML: bool = _BaseLoader is not yaml.SafeLoader

_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\Z")
_FLOAT = re.compile(
    r"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\Z|[-+]?[0-9]+[eE][-+]?[0-9]+\Z"
)
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})
_NULL = frozenset({"null", "Null", "NULL", "~"})
_NUMERIC_START = frozenset("0123456789+-.")
_MAX_INT_CHARS = 4300  # sys.get_int_max_str_digits()'s default
_CORE_TAG_PREFIX = "tag:yaml.org,2002:"
MERGE_KEY = "<<"
_TOO_DEEP = f"the document nests deeper than {MAX_DEPTH} levels"
_TOO_DEEP_HINT = "flatten the structure; no valid config nests this deep"


class _StrictLoader(_BaseLoader):  # type: ignore[misc]
    """Resolves every untagged node to plain str/seq/map; typing happens in `plain_scalar`."""

    def resolve(self, kind: type[Node], value: Any, implicit: Any) -> str:
        if kind is ScalarNode:
            return STR_TAG
        if kind is SequenceNode:
            return SEQ_TAG
        return MAP_TAG


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """A parsed file: its plain value tree and the node tree that knows every position."""

    name: str
    value: Any
    root: Node


class YamlProblems(Exception):
    """The file is not acceptable YAML; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems[0].message if problems else "invalid YAML")
        self.problems = problems


def plain_scalar(text: str) -> Any:
    """Type a plain (unquoted) scalar by YAML 1.2's core schema; anything else stays text."""
    if not text:
        return None
    if text[0] in _NUMERIC_START:
        # A number Python cannot hold as written (more digits than int() converts, a float that
        # overflows to inf) stays the text the user wrote rather than crash or change meaning.
        if _INT.match(text):
            return int(text) if len(text) <= _MAX_INT_CHARS else text
        if _FLOAT.match(text):
            number = float(text)
            return number if math.isfinite(number) else text
        return text
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if text in _NULL:
        return None
    return text


def parse_document(name: str, data: bytes) -> YamlDocument:
    """Parse one file's bytes into a `YamlDocument`, or raise `YamlProblems`."""
    text = _decode(name, data)
    # Composing is safe with aliases (they share nodes; only building values expands them), so
    # the rest of the file is still checked and every problem is reported in one run.
    problems = _anchor_problems(name, text) if ("&" in text or "*" in text) else []
    loader = _StrictLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        syntax = _syntax_problem(name, text, exc)  # an undefined alias: said once, not twice
        kept = [p for p in problems if (p.line, p.column) != (syntax.line, syntax.column)]
        raise YamlProblems([*kept, syntax]) from None
    except yaml.reader.ReaderError as exc:
        raise YamlProblems([_reader_problem(name, text, exc)]) from None
    except yaml.YAMLError as exc:
        raise YamlProblems([_problem(name, 1, 1, "yaml_syntax", str(exc))]) from None
    except RecursionError:
        raise YamlProblems([_too_deep(name, text, 1, 1)]) from None
    finally:
        loader.dispose()
    if root is None:
        raise YamlProblems(
            [
                _problem(
                    name,
                    1,
                    1,
                    "empty_document",
                    "the file holds no document (it is empty or only comments)",
                    "add `version: 1` with `providers:` and/or `routes:`, or delete the file",
                )
            ]
        )
    value = _Builder(name, problems).build(root)
    if problems:
        raise YamlProblems(problems)
    return YamlDocument(name=name, value=value, root=root)


def locate(root: Node, path: tuple[str | int, ...]) -> tuple[Node, Node | None]:
    """Follow `path` through the node tree.

    Returns (anchor, value): `value` is the node at `path` when every step exists, else None;
    `anchor` is the best node to point at: the key node of the last step that was found (or the
    value node itself when the whole path resolved).
    """
    anchor: Node = root
    node: Node = root
    for step in path:
        found = _child(node, step)
        if found is None:
            return anchor, None
        key_node, node = found
        anchor = key_node
    return node, node


def key_node(root: Node, path: tuple[str | int, ...]) -> Node | None:
    """The key node of the last step of `path`, when it is a mapping key that exists."""
    if not path:
        return None
    _, parent = locate(root, path[:-1])
    if parent is None:
        return None
    found = _child(parent, path[-1])
    return found[0] if found else None


def _child(node: Node, step: str | int) -> tuple[Node, Node] | None:
    if isinstance(node, MappingNode):
        for k, v in node.value:
            if isinstance(k, ScalarNode) and k.value == step:
                return k, v
        return None
    if isinstance(node, SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
        item: Node = node.value[step]
        return item, item
    return None


def node_path(root: Node, target: Node) -> tuple[str | int, ...]:
    """The document path of `target` (used only when reporting a problem).

    Nodes shared through an alias are visited once, so a cyclic or exponential graph ends.
    """
    stack: list[tuple[Node, tuple[str | int, ...]]] = [(root, ())]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if node is target:
            return path
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            children = []
            for k, v in node.value:
                if k is target:
                    return (*path, k.value) if isinstance(k, ScalarNode) else path
                children.append((v, (*path, k.value if isinstance(k, ScalarNode) else "?")))
            stack.extend(reversed(children))
        elif isinstance(node, SequenceNode):
            stack.extend((item, (*path, i)) for i, item in reversed(list(enumerate(node.value))))
    return ()


def format_path(path: tuple[str | int, ...]) -> str:
    """`('routes', 'scoring', 'fallbacks', 0, 'model')` -> `routes.scoring.fallbacks[0].model`."""
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        elif step and all(c.isalnum() or c in "-_" for c in step):
            out += f".{step}" if out else step
        else:
            out += f"[{step!r}]"
    return out


class _Builder:
    """Turns a node tree into plain Python values, collecting structural problems."""

    def __init__(self, name: str, problems: list[Problem]) -> None:
        self.name = name
        self.problems = problems
        self.root: Node | None = None
        self._built: set[int] = set()

    def build(self, root: Node) -> Any:
        self.root = root
        return self._value(root, 0)

    def _value(self, node: Node, depth: int) -> Any:
        if isinstance(node, ScalarNode):
            if node.tag != STR_TAG:
                return self._bad_tag(node)
            return node.value if node.style else plain_scalar(node.value)
        if id(node) in self._built:
            return None  # a second use through an alias, already reported by the anchor scan
        self._built.add(id(node))
        if depth >= MAX_DEPTH:
            self._add(node, "too_deep", _TOO_DEEP, _TOO_DEEP_HINT)
            return None
        if isinstance(node, SequenceNode):
            if node.tag != SEQ_TAG:
                return self._bad_tag(node)
            return [self._value(item, depth + 1) for item in node.value]
        if isinstance(node, MappingNode):
            if node.tag != MAP_TAG:
                return self._bad_tag(node)
            return self._mapping(node, depth)
        return self._bad_tag(node)  # pragma: no cover - PyYAML has no other node kinds

    def _mapping(self, node: MappingNode, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        seen: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag != STR_TAG:
                self._add(
                    key_node,
                    "bad_key",
                    "a mapping key must be a plain string",
                    "write the key as text, e.g. `name:`",
                )
                continue
            key = key_node.value
            if key == MERGE_KEY and not key_node.style:
                self._add(
                    key_node,
                    "yaml_merge_key",
                    "YAML merge keys (<<) are not allowed",
                    "write the fields out in full in each mapping",
                )
                continue
            if key in seen:
                first = seen[key].start_mark
                self._add(
                    key_node,
                    "duplicate_key",
                    f"duplicate key {key!r}; it is also at line {first.line + 1}, "
                    f"column {first.column + 1}",
                    "keep one of the two; YAML would otherwise silently drop the first",
                )
                continue
            seen[key] = key_node
            result[key] = self._value(value_node, depth + 1)
        return result

    def _bad_tag(self, node: Node) -> None:
        self._add(
            node,
            "yaml_tag",
            f"the YAML tag {_shown_tag(node.tag)!r} is not allowed",
            "remove the tag; values are plain strings, numbers, booleans, lists and mappings",
        )

    def _add(self, node: Node, code: str, message: str, hint: str) -> None:
        """Record a problem at `node`, with its document path."""
        mark = node.start_mark
        assert self.root is not None
        self.problems.append(
            Problem(
                file=self.name,
                line=mark.line + 1,
                column=mark.column + 1,
                path=format_path(node_path(self.root, node)),
                code=code,
                message=message,
                hint=hint,
            )
        )


def _decode(name: str, data: bytes) -> str:
    if len(data) > MAX_BYTES:
        raise YamlProblems(
            [
                _problem(
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
        line, column = _line_column(data, exc.start)
        raise YamlProblems(
            [
                _problem(
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


def _anchor_problems(name: str, text: str) -> list[Problem]:
    """Every anchor and alias, each at its place (the first MAX_ANCHOR_PROBLEMS of them).

    Only called when the text could hold one; a syntax error ends the scan, and the real parse
    reports it with its place.
    """
    found: list[Problem] = []
    extra = 0
    loader = _StrictLoader(text)
    try:
        for event in _events(loader):
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
                _problem(
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


def _shown_tag(tag: str | None) -> str:
    """A tag as it is written in the file: `!!python/...`, not `tag:yaml.org,2002:python/...`."""
    tag = tag or ""
    return "!!" + tag.removeprefix(_CORE_TAG_PREFIX) if tag.startswith(_CORE_TAG_PREFIX) else tag


def _line_column(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters, as YAML marks count) of a byte offset."""
    before = data[:offset]
    start = before.rfind(b"\n") + 1
    column = len(before[start:].decode("utf-8", errors="replace")) + 1
    return before.count(b"\n") + 1, column


def _events(loader: Any) -> Iterator[yaml.Event]:
    while loader.check_event():
        yield loader.get_event()


def _reader_problem(name: str, text: str, exc: yaml.reader.ReaderError) -> Problem:
    """A character YAML refuses; libyaml counts its position in bytes, PyYAML in characters."""
    data = text.encode("utf-8")
    offset = exc.position if HAVE_LIBYAML else len(text[: exc.position].encode("utf-8"))
    line, column = _line_column(data, offset)
    code = exc.character if isinstance(exc.character, int) else ord(exc.character)
    return _problem(
        name,
        line,
        column,
        "yaml_syntax",
        f"invalid YAML: the character U+{code:04X} is not allowed ({exc.reason})",
        "remove it; inside a double-quoted string, write it as an escape such as \\x07",
    )


def _syntax_problem(name: str, text: str, exc: yaml.MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = exc.problem or "invalid YAML"
    if "nesting depth" in problem:
        return _too_deep(name, text, line, column)
    if "expected a single document" in (exc.context or ""):
        return _problem(
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
    if _char_at(text, line, column) == "\t":
        hint = "this is a tab character; indent YAML with spaces only"
    return _problem(name, line, column, "yaml_syntax", f"invalid YAML: {problem}{context}", hint)


def _char_at(text: str, line: int, column: int) -> str:
    lines = text.split("\n", line)
    if len(lines) < line:
        return ""
    row = lines[line - 1]
    return row[column - 1] if 0 < column <= len(row) else ""


def _too_deep(name: str, text: str, line: int, column: int) -> Problem:
    """The parser gave up on the nesting (libyaml at 1,000 levels, PyYAML's recursion at ~500).

    Point at the first collection nested deeper than MAX_DEPTH, as the builder would, when the
    events get that far (a deep flow sequence fails before its first one: keep `line:column`).
    """
    depth = 1
    loader = _StrictLoader(text)
    try:
        for event in _events(loader):
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
    return _problem(name, line, column, "too_deep", _TOO_DEEP, _TOO_DEEP_HINT)


def _problem(name: str, line: int, column: int, code: str, message: str, hint: str = "") -> Problem:
    return Problem(
        file=name, line=line, column=column, path="", code=code, message=message, hint=hint
    )
