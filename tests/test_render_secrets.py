"""A plan and the daemon's change lines never print a literal credential a row holds.

A row written by hand, or changed outside the files, may hold a key where the files hold
`{env: NAME}`; the diff's old value is that key. `plan`, `apply`, the daemon's log, its page and
`/api/v1/status` all print changes through `render`.
"""

from __future__ import annotations

from reconciler.core.field_rules import NOT_SHOWN
from reconciler.core.plan import Action, FieldChange, Kind, Op
from reconciler.render import action_line, plan_lines

LITERAL = "sk-proj-literal-credential"


def drifted() -> Action:
    changes = (
        FieldChange("config.endpoint.api_key", LITERAL, {"env": "OPENAI_API_KEY"}),
        FieldChange("config.endpoint.headers.Authorization", f"Bearer {LITERAL}", {"env": "A"}),
        FieldChange("config.endpoint.headers", {"X-Custom-Token": LITERAL}, {}),
        FieldChange("config.endpoint.base_url", f"https://u:{LITERAL}@h.test/v1", "http://h:1"),
        FieldChange("config.clientSecret", LITERAL, None),
    )
    return Action(Op.update, Kind.provider, "openai", changes, drift=True, essence={})


def test_a_change_line_shows_a_literal_credential_only_as_a_placeholder() -> None:
    line = action_line(drifted(), fields=10, width=200)
    assert LITERAL not in line
    assert f'config.endpoint.api_key "{NOT_SHOWN}" -> {{env: OPENAI_API_KEY}}' in line
    assert f'config.endpoint.headers {{"X-Custom-Token": "{NOT_SHOWN}"}} -> {{}}' in line
    assert "https://h.test/v1 (user info and query not shown)" in line


def test_a_plan_shows_a_literal_credential_only_as_a_placeholder() -> None:
    from reconciler.core.plan import Plan

    plan = Plan((drifted(),), 0, (), "base", "config")
    text = "\n".join(line for line, _ in plan_lines(plan))
    assert LITERAL not in text
    assert text.count(NOT_SHOWN) == 4
