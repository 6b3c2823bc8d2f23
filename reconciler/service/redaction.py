"""Secret values out of every text that leaves the process: logs, errors, pages, JSON."""

from __future__ import annotations

from typing import Any

from reconciler.adapters import secrets
from reconciler.core.text import scrub, scrub_tree


def redact(text: str) -> str:
    """`text` with every secret value this process has resolved or been given cut out."""
    return scrub(text, secrets.known())


def redact_tree(value: Any) -> Any:
    """JSON-like `value` with every secret value this process knows cut out, however deep."""
    return scrub_tree(value, secrets.known())
