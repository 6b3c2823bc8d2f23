"""Logging setup: readable text by default, one JSON object per line with --log-format json."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from enum import StrEnum

from reconciler.adapters import secrets
from reconciler.core.text import escape_control, scrub


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class SafeText(logging.Filter):
    """Every record's message with known secret values cut out and control characters escaped.

    A model name or an error a provider sent may hold an escape sequence or a line break; left
    raw, it would colour the terminal or forge a log line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        known = secrets.known()
        message = record.getMessage()
        safe = escape_control(scrub(message, known))
        if safe != message or record.args:
            record.msg, record.args = safe, None
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:  # a traceback may quote a URL or a value that held a secret
            record.exc_text = scrub(record.exc_text, known)
        return True


_TRACEBACKS = logging.Formatter()


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the fields log shippers expect."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            document["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(document)


def configure(log_format: LogFormat, verbose: int) -> None:
    """Send reconciler's logs to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format is LogFormat.json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(SafeText())
    root = logging.getLogger("reconciler")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    root.propagate = False
