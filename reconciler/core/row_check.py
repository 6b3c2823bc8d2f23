"""One database row, as the loader would see it: the spec it holds, validated exactly as a
declaration in a config file is, with every reason it cannot be one. Pure. Used to check the rows
a saved plan would write (`plan_doc.content_problems`) and the rows `export` writes out.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails
from pydantic_core.core_schema import ErrorType

from reconciler.core.desired import DeclaredProvider, DeclaredRoute, DesiredState, Source
from reconciler.core.diagnostics import shown_path
from reconciler.core.plan import (
    Essence,
    Kind,
    desired_items,
)
from reconciler.core.registry import ProviderRegistry
from reconciler.core.spec import (
    ENV_NAME_PATTERN,
    HEALTH_PATH_PATTERN,
    MULTILINE_FIELDS,
    NAME_HINT,
    SECRET_LITERAL,
    Name,
    ProviderSpec,
    RouteSpec,
    describe_char,
    forbidden_control,
)
from reconciler.core.text import bound
from reconciler.core.wording import BOUNDS, EXPECTED, LENGTHS, message_of, reworded
from reconciler.core.yamldoc import format_path

_NAMES = TypeAdapter(Name)
_BUILTIN_ERRORS = frozenset(typing.get_args(ErrorType))


def row_problems(
    kind: Kind, key: str, essence: Any, registry: ProviderRegistry
) -> tuple[ProviderSpec | RouteSpec | None, list[str]]:
    """The spec of one row, validated exactly as the loader validates a declaration, or None
    with every reason it cannot be one, each to follow the row's name in a sentence ("has an
    invalid name: ...", "is not a valid spec: ..."). Messages hold places, never values."""
    problems = []
    try:
        _NAMES.validate_python(key)
    except ValidationError:
        problems.append(f"has an invalid name: {NAME_HINT}")
    spec = None
    if not isinstance(essence, dict):
        problems.append("is not a valid spec: its content is not a mapping")
        return None, problems
    found: list[str] = []
    model, body = _model_and_body(kind, essence, registry, found)
    if model is not None:
        by_place: dict[str, list[str]] = {}
        try:
            spec = model.model_validate(body)
        except ValidationError as exc:
            by_place = _spec_problems(exc, body)
        for place, texts in _control_problems(body).items():
            # As the loader: a control character is the one problem at its place, unless the
            # string there is a literal credential, the graver mistake.
            if SECRET_LITERAL not in by_place.get(place, ()):
                by_place[place] = texts
        found += [f"{place}: {', or '.join(texts)}" for place, texts in by_place.items()]
    problems += [f"is not a valid spec: {p}" for p in found]
    return (None if problems else spec), problems


def _model_and_body(
    kind: Kind, essence: dict[str, Any], registry: ProviderRegistry, problems: list[str]
) -> tuple[type[ProviderSpec] | type[RouteSpec] | None, dict[str, Any]]:
    if kind is Kind.route:
        return RouteSpec, essence
    config = essence.get("config")
    if not isinstance(config, dict):
        problems.append("config: must be a mapping")
        return None, {}
    head = {k: v for k, v in essence.items() if k != "config"}
    problems += [f"config: repeats the field {k!r}" for k in sorted(head.keys() & config.keys())]
    type_name = essence.get("type")
    provider_type = registry.get(type_name) if isinstance(type_name, str) else None
    if provider_type is None:
        what = "is missing" if type_name is None else f"{bound(repr(type_name), 40)} is not"
        problems.append(
            f"type: {what} a registered provider type (registered: {', '.join(registry.names())})"
        )
        return None, {}
    return provider_type.config_model, {**config, **head}


def essence_of(key: str, spec: ProviderSpec | RouteSpec) -> Essence:
    """The essence `plan` makes of `spec`, by the planner's own code."""
    nowhere = Source("", 0, 0)
    if isinstance(spec, RouteSpec):
        state = DesiredState({}, {key: DeclaredRoute(key, spec, nowhere)}, ())
    else:
        state = DesiredState({key: DeclaredProvider(key, spec, nowhere)}, {}, ())
    (item,) = desired_items(state)
    return item.essence


def _spec_problems(exc: ValidationError, body: dict[str, Any]) -> dict[str, list[str]]:
    """What is wrong at each place, in reconciler's words; union members' messages merged."""
    by_place: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False, include_input=False, include_context=True):
        loc = _data_loc(body, error["loc"], error["type"])
        shown = shown_path(loc)
        text = _describe(error, cut=shown != loc)
        texts = by_place.setdefault(_place(shown), [])
        if text not in texts:
            texts.append(text)
    return by_place


def _place(path: tuple[str | int, ...]) -> str:
    return format_path(path) or "(top level)"


def _control_problems(body: dict[str, Any]) -> dict[str, list[str]]:
    """The loader's rule for control characters: none in any key or value, except tabs and
    line feeds in the text of MULTILINE_FIELDS. Sorted by place; the text is never shown."""
    found: dict[str, list[str]] = {}
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), body)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            _control_in(value, path, "value", _field_of(path) in MULTILINE_FIELDS, found)
        elif isinstance(value, dict):
            for key, child in value.items():
                _control_in(key, (*path, key), "key", False, found)
                stack.append(((*path, key), child))
        elif isinstance(value, list):
            stack.extend(((*path, i), child) for i, child in enumerate(value))
    return dict(sorted(found.items()))


def _control_in(
    text: str, path: tuple[str | int, ...], what: str, multiline: bool, found: dict[str, list[str]]
) -> None:
    at = forbidden_control(text, multiline)
    if at is not None:
        place = _place(shown_path(path))
        found.setdefault(place, []).append(
            f"the {what} holds {describe_char(text[at])} at character {at + 1}"
        )


def _field_of(path: tuple[str | int, ...]) -> str | int | None:
    """The spec field a place in a row's content is under: `prompt`, `fallbacks[0].params`."""
    if len(path) > 2 and path[0] == "fallbacks":
        return path[2]
    return path[0] if path else None


def _data_loc(body: Any, loc: tuple[int | str, ...], kind: str) -> tuple[str | int, ...]:
    """`loc` without the steps that name no place in the data (union members, validators)."""
    path: list[str | int] = []
    current = body
    for i, step in enumerate(loc):
        if _has(current, step):
            current = current[step]
        elif not (i == len(loc) - 1 and kind == "missing"):
            continue
        path.append(step)
    return tuple(path)


def _has(value: Any, step: str | int) -> bool:
    if isinstance(value, dict):
        return step in value
    return isinstance(value, list) and isinstance(step, int) and 0 <= step < len(value)


def _describe(error: ErrorDetails, cut: bool) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "missing":
        return "a required field is missing"
    if kind == "extra_forbidden":
        if cut:  # a key written inside a credential: never shown
            return "a credential must be a reference, not a literal value (the value is not shown)"
        return "not a field of this format"
    if kind in EXPECTED:
        return f"must be {EXPECTED[kind]}"
    if kind in BOUNDS or kind in LENGTHS:
        return message_of(error)  # a limit, in the same words as `validate` says it
    if kind == "string_pattern_mismatch":
        if ctx.get("pattern") == ENV_NAME_PATTERN:
            return "not a valid environment variable name (the value is not shown)"
        if ctx.get("pattern") == HEALTH_PATH_PATTERN:
            return "not a URL path: it starts with '/' and has no '?' or '#'"
        return f"not a valid name: {NAME_HINT}"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}"
    if kind not in _BUILTIN_ERRORS or kind == "value_error":  # the spec's (or a plugin's) words
        return reworded(error["msg"])
    return f"not a valid value here ({reworded(error['msg'])})"
