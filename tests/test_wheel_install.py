"""The product as a user installs it: a wheel, installed (not editable) in a fresh virtualenv,
run from a directory that is not the checkout. It migrates its database from the migrations it
ships, applies a config and runs the daemon once, on SQLite and PostgreSQL.

The wheel is built by pip from the checkout, as `pip install .` builds it. The fresh venv
takes reconciler's dependencies from this test run's environment through a path entry (so the
test needs no download of them), never its reconciler: that comes from the wheel alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.timeout(300)

NOT_SHIPPED = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "tests",
               "bench", "*.db")  # fmt: skip


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with reconciler installed from a freshly built wheel; its bin directory."""
    base = tmp_path_factory.mktemp("wheel")
    # From a copy of the tree: setuptools builds in `build/` beside the sources, and two test
    # workers building in the checkout at once would pull it from under each other.
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SHIPPED))
    # Built as `pip install .` builds it, from this environment's setuptools: no download.
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "-w", base / "dist", source, cwd=base)  # fmt: skip
    wheels = list((base / "dist").glob("reconciler-*.whl"))
    assert len(wheels) == 1, wheels
    venv = base / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=base)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    # Dependencies from this environment; a plain path entry runs none of its .pth hooks, so
    # the checkout's editable reconciler stays out of the fresh venv.
    (purelib / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install",
         "--quiet", "--no-deps", "--no-index", wheels[0], cwd=base)  # fmt: skip
    return venv / "bin"


def test_the_wheel_ships_its_migrations_and_is_used_instead_of_the_checkout(
    installed: Path, tmp_path: Path
) -> None:
    where = _run(installed / "python", "-c", "import reconciler; print(reconciler.__file__)",
                 cwd=tmp_path)  # fmt: skip
    assert str(installed.parent) in where, where
    assert str(ROOT) not in where
    shipped = _run(
        installed / "python",
        "-c",
        "from reconciler.adapters.db import migrate; print(migrate.migrations_dir())",
        cwd=tmp_path,
    )
    assert str(installed.parent) in shipped


CONFIG = """\
version: 1
providers:
  local:
    type: ollama
    endpoint: {base_url: "http://127.0.0.1:9", probe_timeout_s: 1}
routes:
  scoring: {provider: local, model: llama3.1:8b}
"""


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_an_installed_copy_migrates_applies_and_runs_from_another_directory(
    installed: Path, tmp_path: Path, engine: str, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'state.db'}"
        if engine == "sqlite"
        else str(request.getfixturevalue("postgres_url"))
    )
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "llm.yaml").write_text(CONFIG, encoding="utf-8")
    env = {"RECONCILER_DATABASE_URL": url, "RECONCILER_CONFIG_DIR": "config"}
    reconciler = installed / "reconciler"
    upgraded = _run(reconciler, "db", "upgrade", cwd=tmp_path, env=env)
    assert "schema upgraded (empty) ->" in upgraded
    applied = _run(reconciler, "apply", cwd=tmp_path, env=env)
    assert "1 to create" in applied or "2 to create" in applied, applied
    ran = _run(reconciler, "run", "--once", "--http", "off", cwd=tmp_path, env=env)
    assert "Traceback" not in ran
    assert "Plan: 0 to create, 0 to update, 0 to delete" in _run(reconciler, "plan", cwd=tmp_path,
                                                                   env=env)  # fmt: skip
