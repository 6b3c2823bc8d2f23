"""Planning: desired state (the files) against observed state (the database). Pure, no I/O.

Both sides are reduced to an *essence* first: a JSON-able dict of exactly what the files own
(no ids, no timestamps, defaults filled in), so nothing changes spuriously. `make_plan` returns
data; the store applies it elsewhere.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from typing import Any, TypeGuard

from reconciler.core.desired import DeclaredProvider, DeclaredRoute, DesiredState, dumped
from reconciler.core.plan_model import (
    ALLOW_MASS_DELETE,
    MANAGED,
    OPTIONAL_ROUTE_FIELDS,
    PLAN_FORMAT_VERSION,
    Action,
    Desired,
    Essence,
    FieldChange,
    Kind,
    Observed,
    Op,
    Plan,
    Refusal,
    canonical,
    essence_hash,
)
from reconciler.errors import StateError

# The plan's data types live in `plan_model`; they are re-exported here, where most callers look.
__all__ = [
    "ALLOW_MASS_DELETE",
    "MANAGED",
    "OPTIONAL_ROUTE_FIELDS",
    "PLAN_FORMAT_VERSION",
    "Action",
    "Desired",
    "Essence",
    "FieldChange",
    "Kind",
    "Observed",
    "Op",
    "Plan",
    "Refusal",
    "declared_by_file",
    "desired_items",
    "desired_subset",
    "diff",
    "essence_hash",
    "is_secret_ref",
    "make_plan",
    "nothing_to_do",
    "prepare",
    "recheck_saved",
    "route_essence",
    "same_item",
    "state_digest",
    "without_pure_drift",
]


def route_essence(fields: Mapping[str, Any]) -> Essence:
    """A route's essence: optional fields added after 1.0 only when set.

    Rows applied before a field existed keep their spec hash, so an upgrade shows no drift.
    """
    return {k: v for k, v in fields.items() if not (k in OPTIONAL_ROUTE_FIELDS and v is None)}


def desired_items(state: DesiredState) -> list[Desired]:
    """The essences of everything the files declare."""
    items = [_provider_item(name, provider) for name, provider in state.providers.items()]
    items += [_route_item(task, route) for task, route in state.routes.items()]
    return items


def desired_subset(state: DesiredState, keys: Iterable[tuple[Kind, str]]) -> list[Desired]:
    """The essences of those of `keys` that the files declare; the others are left out."""
    items = []
    for kind, key in keys:
        if kind is Kind.provider and (provider := state.providers.get(key)) is not None:
            items.append(_provider_item(key, provider))
        elif kind is Kind.route and (route := state.routes.get(key)) is not None:
            items.append(_route_item(key, route))
    return items


def same_item(old: DesiredState, new: DesiredState, kind: Kind, key: str) -> bool:
    """Whether both states declare `key` with the same essence, type for type (compared as
    canonical JSON text, so that 1, 1.0 and true differ)."""
    was, now = _declared(old, kind, key), _declared(new, kind, key)
    if was is None or now is None:
        return False
    return was is now or _item(kind, key, was).canonical == _item(kind, key, now).canonical


def _declared(state: DesiredState, kind: Kind, key: str) -> DeclaredProvider | DeclaredRoute | None:
    return state.providers.get(key) if kind is Kind.provider else state.routes.get(key)


def _item(kind: Kind, key: str, declared: DeclaredProvider | DeclaredRoute) -> Desired:
    if isinstance(declared, DeclaredProvider):
        return _provider_item(key, declared)
    return _route_item(key, declared)


def prepare(state: DesiredState) -> None:
    """Work out now each declared item's essence and its canonical text, kept with the item,
    so that a plan later compares ready text (the daemon does this while the files settle)."""
    for name, provider in state.providers.items():
        if "canonical" not in provider.memo:
            _provider_item(name, provider)
    for task, route in state.routes.items():
        if "canonical" not in route.memo:
            _route_item(task, route)


def declared_by_file(
    state: DesiredState, names: Collection[str] | None = None
) -> dict[str, set[tuple[Kind, str]]]:
    """What each file (of `names`, or every file) declares, by file name."""
    if names is not None and state.file_results:  # from the files' own results: no full pass
        return {
            name: {(Kind.provider, p) for p in result.provider_map}
            | {(Kind.route, t) for t in result.route_map}
            for name in names
            if (result := state.file_results.get(name)) is not None
        }
    declared: dict[str, set[tuple[Kind, str]]] = {
        name: set() for name, _ in state.files if names is None or name in names
    }
    for name, provider in state.providers.items():
        if names is None or provider.source.file in names:
            declared.setdefault(provider.source.file, set()).add((Kind.provider, name))
    for task, route in state.routes.items():
        if names is None or route.source.file in names:
            declared.setdefault(route.source.file, set()).add((Kind.route, task))
    return declared


def _provider_item(name: str, provider: DeclaredProvider) -> Desired:
    essence = provider.memo.get("essence")
    if essence is None:
        config = dict(dumped(provider.spec, provider.memo))  # a copy: the dump is shared
        head = {k: config.pop(k) for k in ("type", "enabled", "protect")}
        essence = provider.memo["essence"] = {**head, "config": config}
    return Desired(
        Kind.provider,
        name,
        essence,
        provider.source.file,
        provider.source.line,
        _memo_canonical(provider.memo, essence),
    )


def _route_item(task: str, route: DeclaredRoute) -> Desired:
    essence = route.memo.get("essence")
    if essence is None:
        essence = route.memo["essence"] = route_essence(dumped(route.spec, route.memo))
    return Desired(
        Kind.route,
        task,
        essence,
        route.source.file,
        route.source.line,
        _memo_canonical(route.memo, essence),
    )


def _memo_canonical(memo: dict[str, Any], essence: Essence) -> str:
    text: str | None = memo.get("canonical")
    if text is None:
        text = memo["canonical"] = canonical(essence)
    return text


def state_digest(observed: Iterable[Observed]) -> str:
    """A digest of the observed state; a saved plan is stale when it no longer matches."""
    rows = [
        (item.kind.value, item.key, item.essence, item.managed_by, item.spec_hash)
        for item in sorted(observed, key=lambda o: (o.kind, o.key))
    ]
    # One encoder call over every row: the per-row hash of each essence costs ten times more.
    text = json.dumps(rows, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def make_plan(
    desired: Iterable[Desired],
    observed: Iterable[Observed],
    config_digest: str,
    *,
    allow_mass_delete: bool = False,
    managed: int | None = None,
) -> Plan:
    """Compare desired with observed and return the plan, with every refusal of the guards.

    `managed` is the number of managed rows in the database when `observed` is only a part of
    it (the mass-deletion guard weighs deletions against the whole). Purely computational.
    """
    observed = list(observed)
    wanted = {(d.kind, d.key): d for d in desired}
    have = {(o.kind, o.key): o for o in observed}
    actions: list[Action] = []
    unchanged = 0
    for ident, want in wanted.items():
        current = have.get(ident)
        action = _compare(want, current)
        if action is None:
            unchanged += 1
        else:
            actions.append(action)
    unmanaged = []
    for ident, current in have.items():
        if ident in wanted:
            continue
        if current.managed:
            actions.append(Action(Op.delete, current.kind, current.key, drift=current.drifted))
        else:
            unmanaged.append(ident)
    deleted = {(a.kind, a.key) for a in actions if a.op is Op.delete}
    refusals = _refusals(have, wanted, deleted, allow_mass_delete, managed)
    return Plan(
        actions=tuple(sorted(actions, key=_display_order)),
        unchanged=unchanged,
        unmanaged=tuple(sorted(unmanaged)),
        base_digest=state_digest(observed),
        config_digest=config_digest,
        refusals=tuple(refusals),
    )


def nothing_to_do(state: DesiredState, unmanaged: Iterable[tuple[Kind, str]]) -> Plan:
    """The plan against rows known to be exactly as `state` declares, without reading them:
    everything unchanged, the `unmanaged` rows left alone. Its `base_digest` is empty (the rows
    were not read), so it can be shown but never saved."""
    return Plan(
        actions=(),
        unchanged=len(state.providers) + len(state.routes),
        unmanaged=tuple(sorted(unmanaged)),
        base_digest="",
        config_digest=state.digest,
    )


def _compare(want: Desired, current: Observed | None) -> Action | None:
    if current is None:
        return _action(Op.create, want, ())
    # Most rows are unchanged: compare whole essences in C before walking them field by field.
    # `==` alone says 1 == True == 1.0, so equal essences are also compared as JSON text.
    same = current.essence == want.essence and canonical(current.essence) == (
        want.canonical or canonical(want.essence)
    )
    changes = () if same else tuple(diff(current.essence, want.essence))
    if not current.managed:
        return _action(Op.adopt, want, changes)
    if not changes:
        return None
    return _action(Op.update, want, changes, drift=current.drifted)


def _as_json(value: Any) -> Any:
    """Lists as JSON text, so that [1] and [true] differ; anything else as it is."""
    return json.dumps(value, sort_keys=True) if isinstance(value, list) else value


def _action(op: Op, want: Desired, changes: tuple[FieldChange, ...], drift: bool = False) -> Action:
    return Action(
        op,
        want.kind,
        want.key,
        changes,
        drift=drift,
        essence=want.essence,
        source_file=want.source_file,
        source_line=want.source_line,
    )


def is_secret_ref(value: Any) -> TypeGuard[dict[str, Any]]:
    """True for a stored secret reference, `{"env": NAME}`."""
    return isinstance(value, dict) and value.keys() == {"env"} and isinstance(value["env"], str)


def diff(old: Any, new: Any, prefix: str = "") -> Iterable[FieldChange]:
    """Field-by-field differences; mappings are walked, anything else compared whole.

    A secret reference (`{env: NAME}`) is one value: it is shown and changed as a whole.
    """
    if is_secret_ref(old) or is_secret_ref(new):
        if old != new:
            yield FieldChange(prefix, old, new)
        return
    if isinstance(old, dict) or isinstance(new, dict):
        old = old if isinstance(old, dict) else ({} if old is None else old)
        new = new if isinstance(new, dict) else ({} if new is None else new)
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(old.keys() | new.keys()):
            path = f"{prefix}.{key}" if prefix else key
            yield from diff(old.get(key), new.get(key), path)
    elif old != new or type(old) is not type(new) or _as_json(old) != _as_json(new):
        yield FieldChange(prefix, old, new)


def _refusals(
    have: Mapping[tuple[Kind, str], Observed],
    wanted: Mapping[tuple[Kind, str], Desired],
    deleted: set[tuple[Kind, str]],
    allow_mass_delete: bool,
    managed: int | None = None,
) -> list[Refusal]:
    """The guards, the one place they are written: protected rows, providers still in use by an
    unmanaged route, and mass deletion (unless allowed)."""
    refusals = []
    for kind, key in sorted(deleted):
        if have[(kind, key)].essence.get("protect"):
            refusals.append(
                Refusal(
                    f"{kind} {key!r} is protected and can't be deleted; declare it again with "
                    "`protect: false` and apply, then remove it"
                )
            )
    for (kind, key), current in sorted(have.items()):
        if kind is not Kind.route or (kind, key) in deleted:
            continue
        route = wanted[(kind, key)].essence if (kind, key) in wanted else current.essence
        used = [route.get("provider")]
        used += [f.get("provider") for f in route.get("fallbacks") or () if isinstance(f, dict)]
        for provider in dict.fromkeys(used):
            if (Kind.provider, provider) in deleted:
                refusals.append(
                    Refusal(
                        f"provider {provider!r} can't be deleted: route {key!r} (not managed by "
                        "the files) still uses it; change or remove that route first"
                    )
                )
    if managed is None:
        managed = sum(1 for o in have.values() if o.managed)
    if not allow_mass_delete and (mass := _mass_delete(len(deleted), managed)):
        refusals.append(mass)
    return refusals


def _mass_delete(deletes: int, managed: int) -> Refusal | None:
    """The mass-deletion guard: deleting every managed row, or more than half of them."""
    if not deletes or deletes * 2 <= managed:
        return None
    return Refusal(
        f"the plan deletes {deletes} of {managed} managed rows; a missing or emptied config "
        "directory looks exactly like this. Check the files; if it is intended, run "
        f"`reconciler apply {ALLOW_MASS_DELETE}`",
        override=ALLOW_MASS_DELETE,
    )


_ESSENCE_FIELDS: dict[Kind, dict[str, type]] = {
    Kind.provider: {"type": str, "enabled": bool, "protect": bool, "config": dict},
    Kind.route: {
        "provider": str,
        "model": str,
        "enabled": bool,
        "required": bool,
        "protect": bool,
        "params": dict,
        "fallbacks": list,
    },
}


def recheck_saved(
    plan: Plan, observed: Iterable[Observed], *, allow_mass_delete: bool = False
) -> Plan:
    """A plan read back from a file, checked against the state it starts from. Purely computational.

    Raises `StateError` when an action does not fit that state or carries no well-formed essence
    (the file was edited or damaged). The refusals are computed again: no file can waive them.
    """
    have = {(o.kind, o.key): o for o in observed}
    seen: set[tuple[Kind, str]] = set()
    for action in plan.actions:
        ident = (action.kind, action.key)
        problem = "appears twice" if ident in seen else _unfit(action, have.get(ident))
        seen.add(ident)
        if problem:
            raise StateError(
                f"the saved plan is damaged: its {action.op} of {action.kind} {action.key!r} "
                f"{problem}; run `reconciler plan --out FILE` again"
            )
    wanted = {
        (a.kind, a.key): Desired(a.kind, a.key, a.essence)
        for a in plan.actions
        if a.op is not Op.delete and a.essence is not None
    }
    deleted = {(a.kind, a.key) for a in plan.actions if a.op is Op.delete}
    refusals = _refusals(have, wanted, deleted, allow_mass_delete)
    return replace(plan, refusals=tuple(refusals))


def _unfit(action: Action, current: Observed | None) -> str | None:
    if (action.op is Op.create) != (current is None):
        return "does not fit the database (the row exists or is missing)"
    if current is not None and current.managed == (action.op is Op.adopt):
        return "does not fit the row's managed_by"
    if action.op is Op.delete:
        return None
    fields = _ESSENCE_FIELDS[action.kind]
    essence = action.essence
    if (
        not isinstance(essence, dict)
        or not fields.keys() <= essence.keys()
        or not all(isinstance(essence[k], t) for k, t in fields.items())
    ):
        return "carries no well-formed content"
    return None


def _display_order(action: Action) -> tuple[int, int, str]:
    if action.op is Op.delete:
        return (0, 0 if action.kind is Kind.route else 1, action.key)
    return (1, 0 if action.kind is Kind.provider else 1, action.key)


def without_pure_drift(plan: Plan, observed: Iterable[Observed]) -> Plan:
    """The plan without updates that only undo changes made outside the files.

    A pure drift update puts back exactly what the last apply wrote: the files did not change
    for that row. With `--drift=report` those are shown, never applied.
    """
    written = {(o.kind, o.key): o.spec_hash for o in observed}
    kept = tuple(
        a
        for a in plan.actions
        if not (
            a.drift
            and a.op is Op.update
            and a.essence is not None
            and essence_hash(a.essence) == written.get((a.kind, a.key))
        )
    )
    dropped = len(plan.actions) - len(kept)
    return replace(plan, actions=kept, unchanged=plan.unchanged + dropped)
