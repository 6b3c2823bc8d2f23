"""Plans as stable, versioned JSON documents (`plan --format json`, `plan --out FILE`). Pure.

A saved plan is data the user could have edited. Reading one back checks its shape field by
field (`plan_from_document`); `content_problems` then holds every row it would write to what
the loader holds the config files to: the same name pattern, the same spec models, the essence
exactly as `plan` writes it. `row_problems` is that check for one row, also used by `export`.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails
from pydantic_core.core_schema import ErrorType

from reconciler.core.config import DeclaredProvider, DeclaredRoute, DesiredState, Source
from reconciler.core.diagnostics import reworded, shown_path
from reconciler.core.plan import (
    PLAN_FORMAT_VERSION,
    Action,
    Essence,
    FieldChange,
    Kind,
    Observed,
    Op,
    Plan,
    Refusal,
    desired_items,
    diff,
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
from reconciler.core.yamldoc import format_path
from reconciler.errors import StateError

AGAIN = "make the plan again with `reconciler plan --out FILE`"
PROVIDER_HEAD = ("type", "enabled", "protect")  # beside `config` in a provider's essence
MAX_SOURCE_FILE = 1024  # the width of the `source_file` column
MAX_SOURCE_LINE = 2**31 - 1  # an INTEGER column on every database
_DIGEST = re.compile(r"[0-9a-f]{64}")
_NAMES = TypeAdapter(Name)
_BUILTIN_ERRORS = frozenset(typing.get_args(ErrorType))


def plan_document(plan: Plan) -> dict[str, Any]:
    """The plan as a JSON-able document. Secrets appear only as `{env: NAME}` references."""
    return {
        "format_version": PLAN_FORMAT_VERSION,
        "base_digest": plan.base_digest,
        "config_digest": plan.config_digest,
        "summary": summary_counts(plan),
        "actions": [_action(a) for a in plan.actions],
        "unmanaged": [{"kind": str(k), "key": key} for k, key in plan.unmanaged],
        "refusals": [str(r) for r in plan.refusals],
    }


def summary_counts(plan: Plan) -> dict[str, int]:
    return {
        "create": plan.count(Op.create),
        "update": plan.count(Op.update),
        "delete": plan.count(Op.delete),
        "adopt": plan.count(Op.adopt),
        "unchanged": plan.unchanged,
    }


def _action(action: Action) -> dict[str, Any]:
    return {
        "op": str(action.op),
        "kind": str(action.kind),
        "key": action.key,
        "drift": action.drift,
        "changes": [{"path": c.path, "old": c.old, "new": c.new} for c in action.changes],
        "essence": action.essence,
        "source": {"file": action.source_file, "line": action.source_line},
    }


# --- reading a saved plan back ----------------------------------------------------------------


def plan_from_document(document: Any) -> Plan:
    """Read a saved plan back; raise `StateError` naming the first field out of shape."""
    if not isinstance(document, dict) or "format_version" not in document:
        raise StateError("the file is not a saved reconciler plan (no format_version)")
    version = document["format_version"]
    if version != PLAN_FORMAT_VERSION or not _is(version, int):
        shown = f"format version {version}" if _is(version, int) else "an unknown format version"
        raise StateError(
            f"the saved plan has {shown}; this version reads {PLAN_FORMAT_VERSION}. "
            "Make the plan again with this version"
        )
    summary = _field(document, "summary", dict, "")
    unchanged = _field(summary, "unchanged", int, "summary")
    if unchanged < 0:
        raise _damaged("summary.unchanged is negative")
    return Plan(
        actions=tuple(
            _read_action(a, f"actions[{i}]")
            for i, a in enumerate(_field(document, "actions", list, ""))
        ),
        unchanged=unchanged,
        unmanaged=tuple(
            _read_unmanaged(u, f"unmanaged[{i}]")
            for i, u in enumerate(_field(document, "unmanaged", list, ""))
        ),
        base_digest=_digest(document, "base_digest", allow_empty=False),
        config_digest=_digest(document, "config_digest", allow_empty=True),
        refusals=tuple(
            Refusal(_as(r, str, f"refusals[{i}]"))
            for i, r in enumerate(_field(document, "refusals", list, ""))
        ),
    )


_WORDS: dict[type, str] = {
    str: "text",
    bool: "true or false",
    int: "a whole number",
    dict: "a mapping",
    list: "a list",
}


def _damaged(what: str) -> StateError:
    return StateError(f"the saved plan is damaged: {what}; {AGAIN}")


def _is(value: Any, want: type) -> bool:
    if want is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, want)


def _as(value: Any, want: type, place: str) -> Any:
    if not _is(value, want):
        raise _damaged(f"{place} is not {_WORDS[want]}")
    return value


def _field(node: dict[str, Any], name: str, want: type, where: str, nullable: bool = False) -> Any:
    place = f"{where}.{name}" if where else name
    if name not in node:
        raise _damaged(f"{place} is missing")
    value = node[name]
    return None if value is None and nullable else _as(value, want, place)


def _choice(node: dict[str, Any], name: str, choices: type[StrEnum], where: str) -> Any:
    value = _field(node, name, str, where)
    allowed = [member.value for member in choices]
    if value not in allowed:
        raise _damaged(f"{where}.{name} is not one of {', '.join(allowed)}")
    return choices(value)


def _digest(document: dict[str, Any], name: str, allow_empty: bool) -> str:
    value: str = _field(document, name, str, "")
    if not (_DIGEST.fullmatch(value) or (allow_empty and not value)):
        raise _damaged(f"{name} is not a SHA-256 digest")
    return value


def _read_action(raw: Any, where: str) -> Action:
    body = _as(raw, dict, where)
    source = _field(body, "source", dict, where)
    source_file = _field(source, "file", str, f"{where}.source", nullable=True)
    if source_file is not None and len(source_file) > MAX_SOURCE_FILE:
        raise _damaged(f"{where}.source.file is longer than {MAX_SOURCE_FILE} characters")
    source_line = _field(source, "line", int, f"{where}.source", nullable=True)
    if source_line is not None and not 0 <= source_line <= MAX_SOURCE_LINE:
        raise _damaged(f"{where}.source.line is out of range")
    return Action(
        op=_choice(body, "op", Op, where),
        kind=_choice(body, "kind", Kind, where),
        key=_field(body, "key", str, where),
        changes=tuple(
            _read_change(c, f"{where}.changes[{i}]")
            for i, c in enumerate(_field(body, "changes", list, where))
        ),
        drift=_field(body, "drift", bool, where),
        essence=_field(body, "essence", dict, where, nullable=True),
        source_file=source_file,
        source_line=source_line,
    )


def _read_change(raw: Any, where: str) -> FieldChange:
    body = _as(raw, dict, where)
    for name in ("old", "new"):
        if name not in body:
            raise _damaged(f"{where}.{name} is missing")
    return FieldChange(_field(body, "path", str, where), body["old"], body["new"])


def _read_unmanaged(raw: Any, where: str) -> tuple[Kind, str]:
    body = _as(raw, dict, where)
    return _choice(body, "kind", Kind, where), _field(body, "key", str, where)


# --- what a saved plan would write ------------------------------------------------------------


def content_problems(plan: Plan, registry: ProviderRegistry) -> list[str]:
    """Every reason a row the plan would write is not what the config files could declare.

    Purely computational: names by the loader's pattern, contents through the same spec models,
    and each essence exactly as `plan` makes it from its spec. No message holds a value.
    """
    problems: list[str] = []
    for action in plan.actions:
        if action.op is Op.delete:
            continue
        what = f"the saved plan's {action.kind} {shown_key(action.key)}"
        if action.essence is None:
            problems.append(f"{what} has no content to write")
            continue
        spec, found = row_problems(action.kind, action.key, action.essence, registry)
        problems += [f"{what} {p}" for p in found]
        if spec is not None and (fields := _unlike_plan(action, spec)):
            problems.append(f"{what} is not written as `reconciler plan` writes it ({fields})")
    return problems


def _unlike_plan(action: Action, spec: ProviderSpec | RouteSpec) -> str:
    """The fields where the action's essence is not the one `plan` makes of its spec."""
    differ = [c.path for c in diff(action.essence, essence_of(action.key, spec))]
    return ", ".join(differ[:5]) + (", ..." if len(differ) > 5 else "")


def reference_problems(plan: Plan, observed: Iterable[Observed]) -> list[str]:
    """Routes the plan writes that name a provider missing once it is applied, or try one
    provider and model twice: the loader's cross-checks, on the state after the plan."""
    providers = {o.key for o in observed if o.kind is Kind.provider}
    for action in plan.actions:
        if action.kind is Kind.provider and action.op is Op.delete:
            providers.discard(action.key)
        elif action.kind is Kind.provider:
            providers.add(action.key)
    problems = []
    for action in plan.actions:
        if action.kind is Kind.route and action.op is not Op.delete and action.essence:
            what = f"the saved plan's route {shown_key(action.key)}"
            problems += [f"{what} {p}" for p in route_references(action.essence, providers)]
    return problems


def route_references(essence: Essence, providers: set[str]) -> list[str]:
    """Why a valid route's essence could not be declared beside exactly `providers`."""
    targets = [("as its provider", essence["provider"], essence["model"])]
    fallbacks = essence["fallbacks"]
    targets += [(f"at fallbacks[{i}]", f["provider"], f["model"]) for i, f in enumerate(fallbacks)]
    problems = []
    seen: set[tuple[str, str]] = set()
    for place, provider, model in targets:
        if provider not in providers:
            problems.append(f"uses provider {provider!r} {place}, which does not exist")
        if (provider, model) in seen:
            problems.append(
                f"tries provider {provider!r} with model {shown_key(model)} again {place}"
            )
        seen.add((provider, model))
    return problems


def shown_key(key: str) -> str:
    """A name or key as shown in a message: quoted, escaped by `repr`, bounded."""
    return bound(repr(key), 80)


# --- one row, as the loader would see it ------------------------------------------------------


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


_TYPES = {
    "bool_type": "true or false",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "string_type": "text",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "none_required": "empty (null)",
}
_BOUNDS = {
    "greater_than": ("gt", "greater than"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "less_than_equal": ("le", "at most"),
}
_LENGTHS = {
    "string_too_short": ("min_length", "at least", "character"),
    "string_too_long": ("max_length", "at most", "character"),
    "too_short": ("min_length", "at least", "item"),
    "too_long": ("max_length", "at most", "item"),
}


def _describe(error: ErrorDetails, cut: bool) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "missing":
        return "a required field is missing"
    if kind == "extra_forbidden":
        if cut:  # a key written inside a credential: never shown
            return "a credential must be a reference, not a literal value (the value is not shown)"
        return "not a field of this format"
    if kind in _TYPES:
        return f"must be {_TYPES[kind]}"
    if kind in _BOUNDS:
        name, words = _BOUNDS[kind]
        return f"must be {words} {ctx.get(name)}"
    if kind in _LENGTHS:
        name, words, unit = _LENGTHS[kind]
        return f"must have {words} {ctx.get(name)} {unit}(s)"
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
