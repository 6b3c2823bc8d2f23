"""Secret values out of every text that leaves the process: logs, errors, pages, JSON."""

from __future__ import annotations

from reconciler.adapters import secrets
from reconciler.core.text import scrub


def redact(text: str) -> str:
    """`text` with every secret value this process has resolved or been given cut out."""
    return scrub(text, secrets.known())
