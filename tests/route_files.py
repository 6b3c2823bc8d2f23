"""A config directory of route files and a stand-in for the daemon's reconcile worker, shared
by the tests of planning from what changed (`AppliedView`) and from the database's record."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, select, update

from reconciler.adapters.db.tables import routes
from reconciler.core.config import ConfigLoader
from reconciler.service import reconcile

PROVIDERS = """\
version: 1
providers:
  local:
    type: ollama
    endpoint: {base_url: "http://127.0.0.1:11434"}
  spare:
    type: ollama
    endpoint: {base_url: "http://127.0.0.1:11435"}
"""

Files = dict[str, dict[str, str]]  # file name -> task -> model


def route_file(tasks: dict[str, str], protect: frozenset[str] = frozenset()) -> str:
    lines = ["version: 1", "routes:" if tasks else "routes: {}"]
    for task, model in tasks.items():
        lines += [f"  {task}:", "    provider: local", f"    model: {model}"]
        if task in protect:
            lines.append("    protect: true")
    return "\n".join(lines) + "\n"


def write_files(directory: Path, files: Files, protect: frozenset[str] = frozenset()) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("routes-*.yaml"):
        if old.name not in files:
            old.unlink()
    (directory / "providers.yaml").write_text(PROVIDERS, encoding="utf-8")
    for name, tasks in files.items():
        (directory / name).write_text(route_file(tasks, protect), encoding="utf-8")


def some_files(count: int = 4, per_file: int = 3) -> Files:
    return {
        f"routes-{f}.yaml": {f"task-{f}-{r}": f"model-{f}-{r}" for r in range(per_file)}
        for f in range(count)
    }


class Daemon:
    """What the reconcile worker keeps between cycles: a warm loader and an applied view."""

    def __init__(self, engine: Engine, directory: Path) -> None:
        self.engine = engine
        self.directory = directory
        self.loader = ConfigLoader()
        self.view = reconcile.AppliedView()

    def cycle(self, *, resync: bool = False, leave_drift: bool = False) -> reconcile.ApplyResult:
        if resync:
            self.view.forget()
        state = reconcile.load_config([self.directory], self.loader)
        return reconcile.apply(
            self.engine, state, lock_timeout=5, view=self.view, leave_drift=leave_drift
        )


def left_over(engine: Engine, directory: Path) -> list[str]:
    """What a full plan of the files, by a fresh loader, would still change."""
    state = reconcile.load_config([directory], ConfigLoader())
    the_plan = reconcile.plan(engine, state)
    return [f"{a.op} {a.kind} {a.key}" for a in the_plan.actions]


def hand_edit(engine: Engine, task: str, model: str, *, stamp: bool) -> None:
    values: dict[str, object] = {"model": model}
    if stamp:
        values["updated_at"] = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(update(routes).where(routes.c.task == task).values(**values))


def model_of(engine: Engine, task: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(routes.c.model).where(routes.c.task == task)).scalar()
