"""How a call to a model fails, and the reading of a failed answer every driver can share.

    CallFailure(detail, transient, retry_after_s)

Transient: connection errors, timeouts, 5xx, 429 (with the server's Retry-After, at most
MAX_RETRY_AFTER_S) and answers that are not what was asked for; the caller tries the next fallback
and retries later. Any other 4xx is permanent for that target (a model that is not there, a
request the server rejects). Whatever the server said is quoted only after every known secret
value is cut out of it and its control characters are escaped.
"""

from __future__ import annotations

import re
import time
from email.utils import parsedate_to_datetime
from typing import Any

from reconciler.adapters import secrets
from reconciler.core.scoring import MAX_RETRY_AFTER_S
from reconciler.core.text import decode_untrusted

MAX_TOKENS = 2**31 - 1  # a token count past this is not a count
_SECONDS = re.compile(r"[0-9]{1,12}")


class CallFailure(Exception):
    """A failed call; a `transient` one is retried, after `retry_after_s` if the server said."""

    def __init__(self, detail: str, transient: bool, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.transient = transient
        self.retry_after_s = retry_after_s


def http_failure(status: int, body: bytes, retry_after: str | None) -> CallFailure | None:
    """The failure a non-2xx answer means, or None for a 2xx one.

    429 and 5xx (Anthropic's 529 `overloaded_error` too) are worth retrying; others are not.
    """
    if 200 <= status < 300:
        return None
    said = error_text(body)
    wait = parse_retry_after(retry_after)
    if status == 429:
        return CallFailure(f"rate limited (429){said}", True, wait)
    if status >= 500:
        return CallFailure(f"server error {status}{said}", True, wait)
    return CallFailure(f"request refused ({status}){said}", transient=False)


def error_text(body: bytes) -> str:
    """`: what the server said`, made safe to keep and show; empty when it said nothing."""
    text = decode_untrusted(body, secrets.known())
    return f": {text}" if text else ""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date), at most MAX_RETRY_AFTER_S.

    Anything else (`²`, a negative number, a date that does not parse) is no advice at all.
    """
    if not value:
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(0.0, moment.timestamp() - time.time()), MAX_RETRY_AFTER_S)


def token_count(value: Any) -> int | None:
    """A token count, or None for anything that cannot be one."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS:
        return value
    return None


def dig(document: Any, *keys: str | int) -> Any:
    """`document[k1][k2]...`, or None where a step is missing or of the wrong kind."""
    for key in keys:
        if isinstance(key, int):
            ok = isinstance(document, list) and -len(document) <= key < len(document)
        else:
            ok = isinstance(document, dict)
        if not ok:
            return None
        document = document[key] if isinstance(key, int) else document.get(key)
    return document
