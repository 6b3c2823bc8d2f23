"""Strict, bounded JSON for input nobody vouches for. Purely computational, no side-effects.

Python's `json` accepts NaN, Infinity and -Infinity (none of them JSON), turns `1e999` into
infinity, parses integers of thousands of digits, and nests as deep as the interpreter's stack.
`loads` refuses all of these with a `JsonRejected` that says which: a provider's answer, an
`enqueue` line or a saved plan is then either plain JSON or an error, never a value that fails
later, somewhere else, with a traceback.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 64
MAX_INT = 2**63 - 1  # what a BIGINT column and every JSON consumer can hold


class JsonRejected(ValueError):
    """The text is not JSON within the limits; the message says why, never quoting it."""


def _constant(name: str) -> Any:
    raise JsonRejected(f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRejected(f"a number is too large ({len(text)} characters overflow a double)")
    return value


def _int(text: str) -> int:
    if len(text) > 20:
        raise JsonRejected(f"an integer of {len(text)} digits is out of range")
    value = int(text)
    if not -MAX_INT - 1 <= value <= MAX_INT:
        raise JsonRejected("an integer is out of the 64-bit range")
    return value


def _int_or_none(text: str) -> int | None:
    try:
        return _int(text)
    except JsonRejected:
        return None


def loads(data: str | bytes, *, max_depth: int = MAX_DEPTH, lenient_ints: bool = False) -> Any:
    """The JSON value of `data`; raises `JsonRejected` for anything outside strict bounds.

    With `lenient_ints`, an integer out of the 64-bit range reads as None instead: for an
    envelope whose counters are informative, not the answer itself.
    """
    parse_int = _int_or_none if lenient_ints else _int
    try:
        value = json.loads(data, parse_constant=_constant, parse_float=_float, parse_int=parse_int)
    except RecursionError:
        raise JsonRejected(f"nested more than {max_depth} levels deep") from None
    except JsonRejected:
        raise
    except ValueError as exc:
        raise JsonRejected(_syntax(exc)) from None
    if _openers(data) > max_depth and depth(value) > max_depth:
        raise JsonRejected(f"nested more than {max_depth} levels deep")
    return value


def _openers(data: str | bytes) -> int:
    # Cheap upper bound on the depth: no document nests deeper than it has brackets.
    if isinstance(data, bytes):
        return data.count(b"[") + data.count(b"{")
    return data.count("[") + data.count("{")


def _syntax(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
    return "not valid JSON: not UTF-8 text"


def depth(value: Any) -> int:
    """How deeply `value` nests lists and mappings (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        stack.extend((child, level) for child in children)
    return deepest


def dumps(value: Any) -> str:
    """Compact JSON that refuses NaN and Infinity instead of writing them."""
    return json.dumps(value, allow_nan=False, separators=(",", ":"))
