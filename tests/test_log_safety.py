"""Log lines carry no secret value and no raw control character, tracebacks included."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from reconciler import logs
from reconciler.adapters import secrets
from reconciler.settings import LogFormat

SECRET = "sk-logged-91c2e7d0-never-shown"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger("reconciler")
    saved = (root.handlers[:], root.level, root.propagate)
    yield
    root.handlers[:], root.level, root.propagate = saved[0], saved[1], saved[2]


@pytest.mark.parametrize("log_format", [LogFormat.text, LogFormat.json])
def test_a_secret_and_escape_sequences_are_cut_from_messages_and_tracebacks(
    capsys: pytest.CaptureFixture[str], log_format: LogFormat
) -> None:
    secrets.remember([SECRET])
    logs.configure(log_format, 1)
    log = logging.getLogger("reconciler.test")
    try:
        raise ValueError(f"server said: Bearer {SECRET}")
    except ValueError:
        log.exception("model %s\nFORGED line with %s", "evil\x1b[31m", SECRET)
    err = capsys.readouterr().err
    assert SECRET not in err
    assert "\x1b" not in err
    assert "[redacted]" in err
    assert "evil\\x1b[31m\\nFORGED line" in (err if log_format is LogFormat.text else
                                             json.loads(err)["message"])  # fmt: skip
    if log_format is LogFormat.json:
        assert "Bearer [redacted]" in json.loads(err)["exception"]
    else:
        assert "Bearer [redacted]" in err
        assert err.count("\n") > 2  # the traceback keeps its own lines
