"""Pydantic's errors in the config's words: "expected a whole number, not text", "must be at
least 1", a hint for each kind of error, and never the value given. Pure.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic_core import ErrorDetails

TYPE_HINTS = {
    "bool_type": "write true or false (yes/no/on/off are text, not booleans)",
    "int_type": "write a whole number such as 10: no quotes, leading zeros, '_' or ':'",
    "float_type": "write a number such as 2.5 or 90: no quotes and no ':' (1:30 is text here)",
    "dict_type": "write a mapping of `key: value` lines indented under this key",
    "list_type": "write a list of `- item` lines under this key",
    "model_type": "write a mapping of `key: value` lines indented under this key",
    "greater_than": "use a positive number, e.g. 30 (timeouts are in seconds)",
    "greater_than_equal": "use a number of at least {ge}",
    "less_than": "use a number less than {lt}",
    "less_than_equal": "use a number of at most {le}",
    "string_too_short": "write a value here, or remove the line to use the default",
    "string_too_long": "shorten it to at most {max_length} characters",
    "too_long": "keep at most {max_length} items",
    "too_short": "give at least {min_length} item(s)",
    "literal_error": "write {expected}",
    "enum": "write {expected}",
}


# What a type error expected, and what a value of each Python type is, in the config's words.
EXPECTED = {
    "bool_type": "true or false",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "string_type": "text",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "none_required": "nothing (null)",
}


_GIVEN: dict[type, str] = {
    bool: "true or false",
    int: "a whole number",
    float: "a decimal number",
    str: "text",
}


_GIVEN_KINDS: dict[type, str] = {dict: "a mapping", list: "a list", type(None): "null"}


BOUNDS = {
    "greater_than": ("gt", "greater than"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "less_than_equal": ("le", "at most"),
}


LENGTHS = {
    "string_too_short": ("min_length", "at least", "character"),
    "string_too_long": ("max_length", "at most", "character"),
    "too_short": ("min_length", "at least", "item"),
    "too_long": ("max_length", "at most", "item"),
}


# Pydantic's sentence openings, for an error type no table above knows (a plugin's field).
_PYDANTIC_OPENING = re.compile(
    r"^(?:Value error|Assertion failed), |^(?:Input|String|List|Dictionary|Value|Tuple|Set|"
    r"Object|Data|Decimal|Number|Timestamp|Date|Datetime|Url|UUID) should (?:be )?"
)


def message_of(error: ErrorDetails, given: str | None = None, empty: bool = False) -> str:
    """What is wrong, in the config's words: "expected a whole number, not text"."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in EXPECTED:
        expected = f"expected {ctx.get('expected_any', EXPECTED[kind])}"
        if empty:
            return f"{expected}, but the value is empty"
        return f"{expected}, not {given}" if given else expected
    if kind in BOUNDS:
        name, words = BOUNDS[kind]
        return f"must be {words} {number(ctx.get(name))}"
    if kind in LENGTHS:
        name, words, unit = LENGTHS[kind]
        count = ctx.get(name)
        if kind == "string_too_short" and count == 1:
            return "must not be empty"
        return f"must have {words} {count} {unit}{'' if count == 1 else 's'}"
    if kind in ("literal_error", "enum"):
        return f"must be {ctx.get('expected')}"
    return reworded(error["msg"])


def error_message(error: ErrorDetails) -> str:
    """One Pydantic error outside the config files (an enqueued item, a setting) in the same
    words: from its type and the kind of value given (taken from `input`), never the value."""
    value = error.get("input")
    return message_of(error, kind_of(value), value is None or value == "")


def reworded(message: str) -> str:
    """A message of Pydantic's own, for an error no table here knows, in the config's words.

    "Value error, X" is X (a validator's own words); "Input should be X" is "must be X";
    "String should match X" is "must match X".
    """
    message = _FIXED.get(message, message)
    found = _PYDANTIC_OPENING.match(message)
    if found is None:
        return message
    rest = message[found.end() :]
    if found.group().endswith(", "):
        return rest
    return f"must be {rest}" if found.group().endswith("be ") else f"must {rest}"


_FIXED = {
    "Field required": "missing required field",
    "Extra inputs are not permitted": "not a field of this format",
}


def number(value: Any) -> Any:
    """A bound as the config would write it: 3600, not 3600.0."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def kind_of(value: Any) -> str | None:
    found = _GIVEN.get(type(value))
    return found or next((w for t, w in _GIVEN_KINDS.items() if isinstance(value, t)), None)
