"""`--help`, `--version` and `validate` load only what they use: no database, HTTP or daemon stack.

Each runs in a fresh interpreter, as a pre-commit hook or a CI step runs it, and then lists the
heavy packages it imported. Their start-up is measured in `bench/bench_startup.py`.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

HEAVY = ("sqlalchemy", "alembic", "fastapi", "starlette", "uvicorn", "httpx", "httpcore",
         "watchfiles", "prometheus_client", "jsonschema", "psycopg")  # fmt: skip

PROBE = """
import json, sys
from reconciler.cli import main
code = main(sys.argv[1:])
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.stdin.read())))
print("\\n" + json.dumps({"code": code, "heavy": heavy}))
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["--show-completion", "bash"],
        ["validate", str(ROOT / "config")],
        ["schema"],
    ],
    ids=["help", "version", "completion", "validate", "schema"],
)
def test_a_command_without_a_database_imports_no_heavy_stack(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        input=json.dumps(HEAVY),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    result = json.loads(done.stdout.strip().rsplit("\n", 1)[-1])
    assert result["code"] == 0, done.stderr
    assert result["heavy"] == [], f"`reconciler {' '.join(args)}` imported {result['heavy']}"
