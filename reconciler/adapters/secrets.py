"""The secret values this process has resolved, so that no text leaving it can carry one.

A secret is resolved at the last moment (a request's headers, the database connection), and
its value is remembered here at that moment. Everything that logs, stores or serves text a
provider sent back, or an error that might quote a URL, cuts these values out first
(`reconciler.core.text.scrub`). Only values are kept, never where they came from.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from reconciler.core.text import MIN_SECRET_LENGTH


class _Known:
    lock = threading.Lock()
    values: frozenset[str] = frozenset()


def remember(values: Iterable[str]) -> None:
    """Add secret values to cut out of every text that leaves the process."""
    fresh = {v for v in values if len(v) >= MIN_SECRET_LENGTH} - _Known.values
    if fresh:
        with _Known.lock:
            _Known.values = _Known.values | fresh


def known() -> frozenset[str]:
    """Every secret value resolved so far."""
    return _Known.values
