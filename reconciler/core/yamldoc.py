"""Strict, safe YAML: one document of plain values, with the position of every node kept.

Purely computational, no I/O: the caller hands in the bytes of a file and its display name.

The rules (DESIGN section 1):
- libyaml's C parser when present; tags other than the plain str/seq/map never construct anything;
- plain scalars follow YAML 1.2's core schema, not 1.1's: `no`, `on`, `010`, `22:22` stay text;
- anchors and aliases, merge keys (`<<`), duplicate keys, non-string keys, nesting deeper than
  MAX_DEPTH, several documents, empty documents, more than MAX_BYTES, non-UTF-8 bytes and control
  characters in the text are problems;
- a string holding a control character (from an escape, a tab, a line break) is listed in
  `YamlDocument.controls` with its path; the loader judges it by the field it is in.
"""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.core.nodeindex import NodeIndex
from reconciler.core.yaml_problems import (
    MAP_TAG,
    MAX_DEPTH,
    SEQ_TAG,
    STR_TAG,
    TOO_DEEP,
    TOO_DEEP_HINT,
    StrictLoader,
    YamlProblems,
    anchor_problems,
    decode,
    reader_problem,
    shown_tag,
    syntax_problem,
    text_problem,
    too_deep,
)
from reconciler.errors import Problem

_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\Z")
_FLOAT = re.compile(
    r"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\Z|[-+]?[0-9]+[eE][-+]?[0-9]+\Z"
)
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})
_NULL = frozenset({"null", "Null", "NULL", "~"})
_NUMERIC_START = frozenset("0123456789+-.")
_MAX_INT_CHARS = 4300  # sys.get_int_max_str_digits()'s default
MERGE_KEY = "<<"
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_PLAIN_STEP = re.compile(r"[\w-]+")  # letters, digits (str.isalnum), '_' and '-'


# Plain classes rather than dataclasses: making a dataclass costs about a millisecond at each start.
class ControlText(NamedTuple):
    """A string of the document (a key or a value) that holds a control character."""

    path: tuple[str | int, ...]
    node: ScalarNode
    is_key: bool


class YamlDocument:
    """A parsed file: its plain value tree and the node tree that knows every position.

    `controls` lists every string holding a C0 control character or DEL (written as an escape,
    a tab, or a line break); which of them are problems depends on the field (see `spec`).
    """

    __slots__ = ("controls", "index", "name", "root", "value")

    def __init__(
        self, name: str, value: Any, root: Node, controls: tuple[ControlText, ...] = ()
    ) -> None:
        self.name = name
        self.value = value
        self.root = root
        self.index = NodeIndex(root)
        self.controls = controls


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
    text = decode(name, data)
    # Composing is safe with aliases (they share nodes; only building values expands them), so
    # the rest of the file is still checked and every problem is reported in one run.
    problems = anchor_problems(name, text) if ("&" in text or "*" in text) else []
    loader = StrictLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        syntax = syntax_problem(name, text, exc)  # an undefined alias: said once, not twice
        kept = [p for p in problems if (p.line, p.column) != (syntax.line, syntax.column)]
        raise YamlProblems([*kept, syntax]) from None
    except yaml.reader.ReaderError as exc:
        raise YamlProblems([reader_problem(name, text, exc)]) from None
    except yaml.YAMLError as exc:
        raise YamlProblems([text_problem(name, 1, 1, "yaml_syntax", str(exc))]) from None
    except RecursionError:
        raise YamlProblems([too_deep(name, text, 1, 1)]) from None
    finally:
        loader.dispose()
    if root is None:
        raise YamlProblems(
            [
                text_problem(
                    name,
                    1,
                    1,
                    "empty_document",
                    "the file holds no document (it is empty or only comments)",
                    "add `version: 1` with `providers:` and/or `routes:`, or delete the file",
                )
            ]
        )
    builder = _Builder(name, problems)
    value = builder.build(root)
    if problems:
        raise YamlProblems(problems)
    return YamlDocument(name=name, value=value, root=root, controls=tuple(builder.controls))


def format_path(path: tuple[str | int, ...]) -> str:
    """`('routes', 'scoring', 'fallbacks', 0, 'model')` -> `routes.scoring.fallbacks[0].model`."""
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        elif _PLAIN_STEP.fullmatch(step):
            out += f".{step}" if out else step
        else:
            out += f"[{step!r}]"
    return out


class _Builder:
    """Turns a node tree into plain Python values, collecting structural problems."""

    def __init__(self, name: str, problems: list[Problem]) -> None:
        self.name = name
        self.problems = problems
        self.controls: list[ControlText] = []
        self._built: set[int] = set()
        self._path: list[str | int] = []  # the path of the node being built

    def build(self, root: Node) -> Any:
        return self._value(root, 0)

    def _value(self, node: Node, depth: int) -> Any:
        if isinstance(node, ScalarNode):
            if node.tag != STR_TAG:
                return self._bad_tag(node)
            text: str = node.value
            if not text.isprintable() and _CONTROL.search(text):
                self.controls.append(ControlText(tuple(self._path), node, is_key=False))
            return text if node.style else plain_scalar(text)
        if id(node) in self._built:
            return None  # a second use through an alias, already reported by the anchor scan
        self._built.add(id(node))
        if depth >= MAX_DEPTH:
            self._add(node, "too_deep", TOO_DEEP, TOO_DEEP_HINT)
            return None
        if isinstance(node, SequenceNode):
            if node.tag != SEQ_TAG:
                return self._bad_tag(node)
            return self._sequence(node, depth)
        if isinstance(node, MappingNode):
            if node.tag != MAP_TAG:
                return self._bad_tag(node)
            return self._mapping(node, depth)
        return self._bad_tag(node)  # pragma: no cover - PyYAML has no other node kinds

    def _sequence(self, node: SequenceNode, depth: int) -> list[Any]:
        items = []
        path = self._path
        for index, item in enumerate(node.value):
            path.append(index)
            items.append(self._value(item, depth + 1))
            path.pop()
        return items

    def _mapping(self, node: MappingNode, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        seen: dict[str, Node] = {}
        path = self._path
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag != STR_TAG:
                self._add(
                    key_node,
                    "bad_key",
                    "a mapping key must be a plain string",
                    "write the key as text, e.g. `name:`",
                    key_node.value if isinstance(key_node, ScalarNode) else None,
                )
                continue
            key: str = key_node.value
            merge = key == MERGE_KEY and not key_node.style
            if merge or key in seen:
                self._bad_key(key_node, None if merge else seen[key])
                continue
            seen[key] = key_node
            path.append(key)
            if not key.isprintable() and _CONTROL.search(key):
                self.controls.append(ControlText(tuple(path), key_node, is_key=True))
            result[key] = self._value(value_node, depth + 1)
            path.pop()
        return result

    def _bad_key(self, key_node: ScalarNode, first: Node | None) -> None:
        """A merge key (`<<`), or a key written twice (`first` is where it was first)."""
        key = key_node.value
        if first is None:
            self._add(
                key_node,
                "yaml_merge_key",
                "YAML merge keys (<<) are not allowed",
                "write the fields out in full in each mapping",
                key,
            )
            return
        mark = first.start_mark
        self._add(
            key_node,
            "duplicate_key",
            f"duplicate key {key!r}; it is also at line {mark.line + 1}, column {mark.column + 1}",
            "keep one of the two; YAML would otherwise silently drop the first",
            key,
        )

    def _bad_tag(self, node: Node) -> None:
        self._add(
            node,
            "yaml_tag",
            f"the YAML tag {shown_tag(node.tag)!r} is not allowed",
            "remove the tag; values are plain strings, numbers, booleans, lists and mappings",
        )

    def _add(self, node: Node, code: str, message: str, hint: str, key: str | None = None) -> None:
        """Record a problem at `node` (the node being built, or its `key` in the current one)."""
        mark = node.start_mark
        path = (*self._path, key) if key is not None else tuple(self._path)
        self.problems.append(
            Problem(
                file=self.name,
                line=mark.line + 1,
                column=mark.column + 1,
                path=format_path(path),
                code=code,
                message=message,
                hint=hint,
            )
        )
