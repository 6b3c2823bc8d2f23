"""Plans as stable, versioned JSON documents (`plan --format json`, `plan --out FILE`). Pure.

A saved plan is data the user could have edited. Reading one back checks its shape field by
field (`plan_from_document`); `content_problems` then holds every row it would write to what
the loader holds the config files to: the same name pattern, the same spec models, the essence
exactly as `plan` writes it (`row_check.row_problems`, one row at a time).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

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
    diff,
)
from reconciler.core.registry import ProviderRegistry
from reconciler.core.row_check import essence_of, row_problems
from reconciler.core.spec import (
    ProviderSpec,
    RouteSpec,
)
from reconciler.core.text import bound
from reconciler.errors import StateError

AGAIN = "make the plan again with `reconciler plan --out FILE`"
PROVIDER_HEAD = ("type", "enabled", "protect")  # beside `config` in a provider's essence
MAX_SOURCE_FILE = 1024  # the width of the `source_file` column
MAX_SOURCE_LINE = 2**31 - 1  # an INTEGER column on every database
_DIGEST = re.compile(r"[0-9a-f]{64}")


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
