"""Making untrusted text safe to log, store and show. Purely computational, no side-effects.

Text that comes from a provider (bodies, headers, model names), a file name or a config value
may hold a secret the provider echoed back, terminal escape sequences, or line breaks that forge
log lines. `untrusted` is the one treatment all of it gets before it is logged, stored or shown:
every known secret value cut out, control characters escaped, the length bounded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"
# A secret shorter than this is not cut out of text: a three-letter value would mangle every
# word it occurs in, and such a value is no secret worth the name.
MIN_SECRET_LENGTH = 4
DEFAULT_LIMIT = 300

# C0 and C1 controls and DEL; the line and paragraph separators; bidirectional overrides and
# isolates, which reorder what a terminal shows (CVE-2021-42574).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_control(text: str) -> str:
    """`text` with every control character written as a visible escape (`\\x1b`, `\\n`)."""
    return _CONTROL.sub(_escape_one, text)


def has_control(text: str) -> bool:
    """True when `text` holds a character that `escape_control` would escape."""
    return _CONTROL.search(text) is not None


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each secret value replaced by `[redacted]`."""
    for value in sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True):
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def bound(text: str, limit: int = DEFAULT_LIMIT) -> str:
    """`text` cut to `limit` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def untrusted(text: str, secrets: Iterable[str] = (), limit: int = DEFAULT_LIMIT) -> str:
    """Untrusted text made safe: secrets cut out, controls escaped, length bounded."""
    return bound(escape_control(scrub(text, secrets)), limit)


def decode_untrusted(data: bytes, secrets: Iterable[str] = (), limit: int = DEFAULT_LIMIT) -> str:
    """`untrusted` for bytes from the wire, decoded leniently; only the head is read."""
    head = data[: limit * 4].decode("utf-8", "replace").strip()
    return untrusted(head, secrets, limit)


def scrub_tree(value: Any, known: Iterable[str]) -> Any:
    """JSON-like `value` with every known secret value cut out of its strings (keys too),
    however deep."""
    if isinstance(value, str):
        return scrub(value, known)
    if isinstance(value, dict):
        return {scrub(k, known): scrub_tree(v, known) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_tree(v, known) for v in value]
    return value
