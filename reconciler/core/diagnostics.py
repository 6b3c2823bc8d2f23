"""Turning Pydantic's validation errors into located, secret-free `Problem`s. Pure.

Locating a problem costs the length of its path (see `nodeindex`), and suggesting a name a
bounded comparison (see `suggest`): reporting N problems is linear in N.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from yaml.nodes import Node, ScalarNode

from reconciler.core.spec import (
    ENV_NAME_PATTERN,
    HEALTH_PATH_PATTERN,
    MULTILINE_FIELDS,
    NAME_HINT,
    NAME_PATTERN,
    describe_char,
    forbidden_control,
    header_name_defect,
)
from reconciler.core.yaml_problems import STR_TAG
from reconciler.core.yamldoc import ControlText, YamlDocument, format_path
from reconciler.errors import Problem

Loc = tuple[str | int, ...]

# Values at these places are never echoed, not even in a hint.
_SECRET_PLACES = frozenset({"api_key", "headers"})
# What a `pattern` error means, for the patterns a user meets: (message, hint).
_PATTERNS = {
    NAME_PATTERN: ("not a valid name", NAME_HINT),
    ENV_NAME_PATTERN: (
        "not a valid environment variable name (the value is not shown)",
        "write {env: NAME} with NAME made of letters, digits and '_', not starting with a digit",
    ),
    HEALTH_PATH_PATTERN: (
        "not a URL path",
        "write a path that starts with '/' and has no '?' or '#', e.g. /health",
    ),
}
_CONTROL_HINT = (
    "remove it (in double quotes, an escape such as \\0 or \\x00 writes one); only the "
    "text of prompt, params and output_schema may hold tabs and line breaks"
)
_CONTROL_TEXT_HINT = "remove it; this text may hold tabs and line breaks, no other control"


def problem_at(
    doc: YamlDocument, path: Loc, code: str, message: str, hint: str = "", at_key: bool = False
) -> Problem:
    """A `Problem` located at the node for `path` (its key with `at_key`), or its nearest parent."""
    index = doc.index
    anchor, node = index.locate(path)
    target = (index.key_node(path) if at_key else None) or node or anchor
    if _is_empty(target):  # an empty value has no token of its own: point at its key
        target = index.key_node(path) or target
    return _problem_at_node(doc, target, path, code, message, hint)


def _problem_at_node(
    doc: YamlDocument, target: Node, path: Loc, code: str, message: str, hint: str
) -> Problem:
    mark = target.start_mark
    return Problem(
        file=doc.name,
        line=mark.line + 1,
        column=mark.column + 1,
        path=format_path(shown_path(path)),
        code=code,
        message=message,
        hint=hint,
    )


def shown_path(path: Loc) -> Loc:
    """`path`, cut before a step that may be a secret: a key written inside a credential.

    `api_key: {sk-...}` is a mapping whose key is the secret; so is a "header" named
    `Bearer sk-...`. The only key a reference has is `env`; a header name is an HTTP token.
    """
    for i in range(1, len(path) - 1):
        step, after = path[i], path[i + 1]
        if path[i - 1] != "endpoint":
            continue
        if step == "api_key" and after != "env":
            return path[: i + 1]
        if step == "headers":
            if not (isinstance(after, str) and header_name_defect(after) is None):
                return path[: i + 1]
            if len(path) > i + 2 and path[i + 2] != "env":
                return path[: i + 2]
    return path


def _is_empty(node: Node | None) -> bool:
    """An empty value (`key:` and nothing after it), not a written `null` or `""`."""
    return (
        isinstance(node, ScalarNode) and node.tag == STR_TAG and not node.value and not node.style
    )


def validation_problems(
    doc: YamlDocument, prefix: Loc, exc: ValidationError, model: Any
) -> Iterator[Problem]:
    """One `Problem` per error of `exc`, raised validating the value at `prefix` as `model`.

    Inputs are never put in a message: a value may be a secret.
    """
    base = _value_at(doc.value, prefix)
    located = []
    for error in exc.errors(include_url=False, include_input=False, include_context=True):
        path, at_key, branch = _data_path(base, error["loc"], error["type"])
        located.append(_Located(path, at_key, branch, error))
    for item in _one_per_entry(base, _one_per_union(located)):
        yield _from_error(doc, prefix, item.path, item.at_key, item.error, model)


class _Located(NamedTuple):
    """A Pydantic error mapped onto the document; `branch` is where a union was tried, if any."""

    path: Loc
    at_key: bool
    branch: Loc | None
    error: ErrorDetails


def _one_per_union(located: list[_Located]) -> list[_Located]:
    """Pydantic reports a failed union once per member; the user made one mistake.

    When some member got further into the value than the others (a mapping given where `str |
    SecretRef` is expected), only its errors are kept; when every member failed on the value
    itself (a number given there), their messages are merged into one problem.
    """
    groups: dict[Loc, list[_Located]] = {}
    for item in located:
        if item.branch is not None:
            groups.setdefault(item.branch, []).append(item)
    out: list[_Located] = []
    done: set[Loc] = set()
    for item in located:
        if item.branch is None:
            out.append(item)
            continue
        if item.branch in done:
            continue
        done.add(item.branch)
        group = groups[item.branch]
        deeper = [g for g in group if g.path != item.branch]
        if deeper:
            out.extend(deeper)
        elif len(group) > 1:
            out.append(_merged(group))
        else:
            out.append(item)
    return out


def _one_per_entry(base: Any, located: list[_Located]) -> list[_Located]:
    """A key with an empty value (`{Bearer sk-...}`, `Authorization:Bearer x`) is one mistake.

    The whole entry was written as its key; the value's problem says so, the key's is dropped.
    """
    valued = {item.path for item in located if not item.at_key}
    return [
        item
        for item in located
        if not (item.at_key and item.path in valued and _value_at(base, item.path) is None)
    ]


def _merged(group: list[_Located]) -> _Located:
    """Every member's expectation in one error: "expected text or a mapping"."""
    from reconciler.core.wording import EXPECTED, message_of  # a valid file needs no wording

    first = group[0]
    if all(g.error["type"] in EXPECTED for g in group):
        expected = " or ".join(dict.fromkeys(EXPECTED[g.error["type"]] for g in group))
        ctx = {**first.error.get("ctx", {}), "expected_any": expected}
        error: ErrorDetails = {**first.error, "ctx": ctx}
    else:
        texts = dict.fromkeys(message_of(g.error) for g in group)
        error = {**first.error, "type": "union", "msg": ", or ".join(texts)}
    return _Located(first.path, first.at_key, first.branch, error)


def _from_error(
    doc: YamlDocument, prefix: Loc, path: Loc, at_key: bool, error: ErrorDetails, model: Any
) -> Problem:
    from reconciler.core.suggest import suggest
    from reconciler.core.wording import EXPECTED, message_of

    kind = error["type"]
    full = (*prefix, *path)
    field = str(path[-1]) if path else ""
    if kind == "missing":
        return problem_at(
            doc,
            full,
            "missing_field",
            f"missing required field {field!r}",
            f"add `{field}:` here",
        )
    if kind == "extra_forbidden":
        fields = _fields_at(model, path[:-1])
        if any(step in _SECRET_PLACES for step in path[:-1]):
            # `api_key: {sk-...}` is a literal key written as a mapping key: never echo it.
            problem = problem_at(
                doc,
                full,
                "secret_literal",
                "a credential must be a reference, not a literal value (the value is not shown)",
                "write {env: NAME} and export NAME where reconciler runs",
                at_key=True,
            )
            return replace(problem, path=format_path(full[:-1]))
        return problem_at(
            doc,
            full,
            "unknown_field",
            f"unknown field {field!r}",
            suggest(field, fields),
            at_key=True,
        )
    ctx = error.get("ctx") or {}
    if at_key:  # a key with a constraint of its own, such as a header name
        if "hint" in ctx:
            return problem_at(doc, full, kind, message_of(error), str(ctx["hint"]), at_key=True)
        return problem_at(
            doc, full, "invalid_name", f"invalid key: {message_of(error)}", at_key=True
        )
    empty = _is_empty(doc.index.locate(full)[1])
    message = message_of(error, _given(doc.value, full), empty)
    hint = str(ctx["hint"]) if "hint" in ctx else _hint(doc, full, error)
    if kind == "string_pattern_mismatch" and str(ctx.get("pattern")) in _PATTERNS:
        message, hint = _PATTERNS[str(ctx["pattern"])]
    if empty and kind not in EXPECTED:
        message += " (the value is empty)"
    return problem_at(doc, full, kind, message, hint)


def _given(value: Any, path: Loc) -> str | None:
    """What kind of value is at `path` ("text", "a list"), never the value itself."""
    from reconciler.core.wording import kind_of

    try:
        value = _value_at(value, path)
    except (KeyError, IndexError, TypeError):
        return None
    return kind_of(value)


def _hint(doc: YamlDocument, path: Loc, error: ErrorDetails) -> str:
    from reconciler.core.wording import TYPE_HINTS, number

    kind = error["type"]
    if kind == "string_type":
        _, node = doc.index.locate(path)
        secret = any(step in _SECRET_PLACES for step in path)
        if isinstance(node, ScalarNode) and not node.style and node.value and not secret:
            return f'quote it to keep it as text: "{node.value}"'
        return (
            "write it as text, or as {env: NAME} for a credential" if secret else "write it as text"
        )
    ctx = {key: number(value) for key, value in (error.get("ctx") or {}).items()}
    try:
        return TYPE_HINTS.get(kind, "").format(**ctx)
    except (KeyError, IndexError, ValueError):
        return ""


def _value_at(value: Any, path: Loc) -> Any:
    for step in path:
        value = value[step]
    return value


def _data_path(base: Any, loc: tuple[int | str, ...], kind: str) -> tuple[Loc, bool, Loc | None]:
    """Map Pydantic's `loc` onto the document, dropping union-member and validator names.

    Returns the path, whether the error is about a mapping key, and the path at which the first
    name was dropped (where a union tried its members), if any.
    """
    path: list[str | int] = []
    at_key = False
    branch: Loc | None = None
    current = base
    for i, step in enumerate(loc):
        if step == "[key]":
            at_key = True
            continue
        if _has(current, step):
            current = current[step]
        elif i == len(loc) - 1 and kind == "missing":
            pass
        else:
            if branch is None:
                branch = tuple(path)
            continue
        path.append(step)
    return tuple(path), at_key, branch


def _has(value: Any, step: str | int) -> bool:
    if isinstance(value, dict):
        return step in value
    return isinstance(value, list) and isinstance(step, int) and 0 <= step < len(value)


def _fields_at(model: Any, path: Loc) -> list[str]:
    """The field names of the model found at `path` below `model` (for suggestions)."""
    current = model
    for step in path:
        current = _step_type(current, step)
        if current is None:
            return []
    current = _unwrap_model(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _step_type(annotation: Any, step: str | int) -> Any:
    annotation = _unwrap_model(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(str(step))
        return field.annotation if field else None
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (list, tuple) and args:
        return args[0]
    if origin is dict and len(args) == 2:
        return args[1]
    return None


def _unwrap_model(annotation: Any) -> Any:
    """`X | None`, `Annotated[X, ...]` -> X, preferring a model member of a union."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap_model(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        members = [_unwrap_model(a) for a in typing.get_args(annotation) if a is not type(None)]
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        return models[0] if models else (members[0] if members else None)
    return annotation


def control_problems(doc: YamlDocument) -> list[Problem]:
    """One problem per string of `doc` holding a control character its field does not allow."""
    problems = []
    for text in doc.controls:
        multiline = not text.is_key and _field_of(text.path) in MULTILINE_FIELDS
        at = forbidden_control(text.node.value, multiline)
        if at is not None:
            problems.append(_control_problem(doc, text, at, multiline))
    return problems


def _field_of(path: Loc) -> str | int | None:
    """The spec field a path is under: `routes.t.prompt`, `routes.t.fallbacks[0].params`."""
    if len(path) > 4 and path[2] == "fallbacks":
        return path[4]
    return path[2] if len(path) > 2 else None


def _control_problem(doc: YamlDocument, text: ControlText, at: int, multiline: bool) -> Problem:
    what = "key" if text.is_key else "value"
    char = describe_char(text.node.value[at])
    return _problem_at_node(
        doc,
        text.node,
        text.path,
        "control_character",
        f"the {what} holds {char} at character {at + 1}",
        _CONTROL_TEXT_HINT if multiline else _CONTROL_HINT,
    )
