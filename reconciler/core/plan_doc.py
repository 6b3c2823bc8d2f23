"""Plans as stable, versioned JSON documents (`plan --format json`, `plan --out FILE`). Pure."""

from __future__ import annotations

from typing import Any

from reconciler.core.plan import PLAN_FORMAT_VERSION, Action, FieldChange, Kind, Op, Plan
from reconciler.errors import StateError


def plan_document(plan: Plan) -> dict[str, Any]:
    """The plan as a JSON-able document. Secrets appear only as `{env: NAME}` references."""
    return {
        "format_version": PLAN_FORMAT_VERSION,
        "base_digest": plan.base_digest,
        "config_digest": plan.config_digest,
        "summary": summary_counts(plan),
        "actions": [_action(a) for a in plan.actions],
        "unmanaged": [{"kind": str(k), "key": key} for k, key in plan.unmanaged],
        "refusals": list(plan.refusals),
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


def plan_from_document(document: Any) -> Plan:
    """Read a saved plan back; raise `StateError` when it is not one this version wrote."""
    if not isinstance(document, dict) or "format_version" not in document:
        raise StateError("the file is not a saved reconciler plan (no format_version)")
    if document["format_version"] != PLAN_FORMAT_VERSION:
        raise StateError(
            f"the saved plan has format version {document['format_version']!r}; this version "
            f"reads {PLAN_FORMAT_VERSION}. Make the plan again with this version"
        )
    try:
        actions = tuple(
            Action(
                op=Op(a["op"]),
                kind=Kind(a["kind"]),
                key=a["key"],
                changes=tuple(FieldChange(c["path"], c["old"], c["new"]) for c in a["changes"]),
                drift=bool(a["drift"]),
                essence=a["essence"],
                source_file=a["source"]["file"],
                source_line=a["source"]["line"],
            )
            for a in document["actions"]
        )
        return Plan(
            actions=actions,
            unchanged=int(document["summary"]["unchanged"]),
            unmanaged=tuple((Kind(u["kind"]), u["key"]) for u in document["unmanaged"]),
            base_digest=str(document["base_digest"]),
            config_digest=str(document["config_digest"]),
            refusals=tuple(document["refusals"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StateError(f"the saved plan is damaged ({type(exc).__name__}: {exc})") from None
