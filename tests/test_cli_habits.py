"""Terraform's habits, run as a user runs them: on a real terminal (a pseudo-terminal), piped, or
in CI.

Plans show every refusal apply would make (the mass-delete guard included); colour only on a
terminal; `show PLANFILE`; `apply` asks for `yes` on a terminal and re-checks what it shows;
`export` never overwrites a file without `--force`; `history` marks uncommitted config as dirty.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from reconciler.adapters.db.tables import routes
from reconciler.cli.plans import PROMPT
from tests.builders import EXAMPLE, PROVIDERS, ROUTES
from tests.conftest import ROOT, Result, run_reconciler
from tests.db_inspect import (
    insert_unmanaged_route,
    revision_count,
    rows,
    snapshot,
    sql,
    url_of,
)
from tests.gitrepo import git

Run = Callable[..., Result]
# For what does not depend on the database engine: the terminal, the plan file.
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
ESC = "\x1b["
MASS_DELETE = "deletes 3 of 4 managed rows"
ONLY_OPENROUTER = "version: 1\nproviders:\n  openrouter:" + PROVIDERS.split("  openrouter:")[1]
OVERRIDE = "`reconciler apply --allow-mass-delete`"
# Green, yellow and red action lines; a bold summary (rich's SGR codes).
CREATE, UPDATE, DELETE, BOLD = (
    "\x1b[32m  + create",
    "\x1b[33m  ~ update",
    "\x1b[31m  - delete",
    "\x1b[1m",
)
# Scoring's model changed, summarization removed, extraction added: one of each action.
CHANGED = {
    "routes.yaml": ROUTES.replace("llama3.1:8b", "llama3.2:3b").split("  summarization:")[0]
    + "  extraction:\n    provider: local-ollama\n    model: qwen2.5:7b\n"
}


def terminal_env(**extra: str) -> dict[str, str]:
    """The environment of a colour terminal, without the variables that would decide for it."""
    decided = ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")
    env = {k: v for k, v in os.environ.items() if k not in decided}
    return {**env, "TERM": "xterm-256color", **extra}


def on_terminal(
    *args: str | Path,
    answer: str | None = None,
    meanwhile: Callable[[], None] | None = None,
    stdin_tty: bool = True,
    env: dict[str, str] | None = None,
) -> Result:
    """`python -m reconciler ARGS` with its output (and input) on a pseudo-terminal.

    When the prompt appears, `meanwhile` runs, then `answer` is typed. Output is in `stdout`.
    """
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", *map(str, args)],
        stdin=follower if stdin_tty else subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env=env or terminal_env(),
        cwd=ROOT,
    )
    os.close(follower)
    seen = bytearray()
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if answer is not None and PROMPT.encode() in seen:
                if meanwhile is not None:
                    meanwhile()
                os.write(leader, answer.encode())
                answer = None
            if select.select([leader], [], [], 0.1)[0]:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: the process closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
        else:
            pytest.fail(f"reconciler {args} did not finish: {seen.decode(errors='replace')}")
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    return Result(code, seen.decode().replace("\r\n", "\n"), "")


@pytest.fixture
def url(engine: Engine) -> str:
    return url_of(engine)


@pytest.fixture
def applied(cli: Run, url: str, write_config: Callable[..., Path]) -> Path:
    """The example config directory, applied (2 providers, 2 routes)."""
    config = write_config(EXAMPLE)
    result = cli("--database-url", url, "--config", config, "apply")
    assert result.code == 0, result.output
    return config


# --- plans say everything -------------------------------------------------------------------


def emptied(config: Path) -> None:
    """Leave one provider of the four managed rows: a mass deletion."""
    (config / "routes.yaml").unlink()
    (config / "providers.yaml").write_text(ONLY_OPENROUTER, encoding="utf-8")


def test_plan_shows_the_mass_delete_refusal_that_apply_makes_and_exits_1(
    cli: Run, url: str, engine: Engine, applied: Path, tmp_path: Path
) -> None:
    emptied(applied)
    before = snapshot(engine)
    text = cli("--database-url", url, "--config", applied, "plan")
    assert text.code == 1, text.output
    assert "Refused:" in text.stdout and MASS_DELETE in text.stdout and OVERRIDE in text.stdout
    assert "0 to create, 0 to update, 3 to delete, 1 unchanged." in text.stdout
    detailed = cli("--database-url", url, "--config", applied, "plan", "--detailed-exitcode")
    assert detailed.code == 1 and MASS_DELETE in detailed.stdout
    document = cli("--database-url", url, "--config", applied, "plan", "--format", "json")
    assert document.code == 1
    (refusal,) = json.loads(document.stdout)["refusals"]
    assert MASS_DELETE in refusal and OVERRIDE in refusal

    refused = cli("--database-url", url, "--config", applied, "apply")
    assert refused.code == 1 and refused.stderr == f"error: {refusal}\n"  # the same words
    assert snapshot(engine) == before

    saved = tmp_path / "plan.json"
    made = cli("--database-url", url, "--config", applied, "plan", "--out", saved)
    assert made.code == 1
    assert f"`reconciler apply --allow-mass-delete {saved}`" in made.stdout
    assert cli("--database-url", url, "apply", saved).code == 1
    assert snapshot(engine) == before
    done = cli("--database-url", url, "apply", "--allow-mass-delete", saved)
    assert done.code == 0, done.output
    assert set(rows(engine, routes, "task")) == set()


def test_a_plan_apply_accepts_lists_no_refusals_and_exits_0_or_2(
    cli: Run, url: str, applied: Path, write_config: Callable[..., Path]
) -> None:
    write_config({"routes.yaml": ROUTES.split("  summarization:")[0]})  # 1 of 4: not a mass delete
    document = cli("--database-url", url, "--config", applied, "plan", "--format", "json")
    assert document.code == 0 and json.loads(document.stdout)["refusals"] == []
    detailed = cli("--database-url", url, "--config", applied, "plan", "--detailed-exitcode")
    assert detailed.code == 2 and "Refused" not in detailed.stdout


# --- show -----------------------------------------------------------------------------------


@sqlite_only
def test_show_prints_a_saved_plan_exactly_as_plan_printed_it_without_a_database(
    cli: Run, url: str, applied: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    write_config(CHANGED)
    saved = tmp_path / "plan.json"
    text = cli("--database-url", url, "--config", applied, "plan", "--out", saved)
    document = cli("--database-url", url, "--config", applied, "plan", "--format", "json")
    assert text.code == 0 and document.code == 0
    plan_lines = text.stdout.splitlines()
    assert plan_lines[-1].startswith("Saved the plan to")

    nowhere = "postgresql://nobody@127.0.0.1:1/none"  # show never connects
    shown = run_reconciler("--database-url", nowhere, "show", saved)
    assert shown.code == 0, shown.output
    assert shown.stdout.splitlines() == plan_lines[:-1]
    as_json = run_reconciler("--database-url", nowhere, "show", saved, "--format", "json")
    assert as_json.code == 0 and json.loads(as_json.stdout) == json.loads(document.stdout)

    probe = "import sys\nfrom reconciler.cli import main\ncode = main(sys.argv[1:])\n"
    probe += "print(code, 'sqlalchemy' in sys.modules)"
    loaded = subprocess.run(
        [sys.executable, "-c", probe, "show", saved],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert loaded.stdout.splitlines()[-1] == "0 False", loaded.stderr


@sqlite_only
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: "not json", "is not a saved plan"),
        (lambda d: json.dumps({**json.loads(d), "format_version": 9}), "format version 9"),
        (lambda d: d.replace('3.2:3b"', '3.2:3b\\u0007"'), "is not a valid spec: model"),
        (lambda d: d.replace('"op": "update"', '"op": "upsert"', 1), "is not one of"),
    ],
    ids=["not-json", "wrong-version", "bell-in-model", "unknown-op"],
)
def test_show_refuses_a_damaged_plan_file_as_apply_refuses_it(
    cli: Run,
    url: str,
    engine: Engine,
    applied: Path,
    write_config: Callable[..., Path],
    tmp_path: Path,
    damage: Callable[[str], str],
    message: str,
) -> None:
    write_config(CHANGED)
    saved = tmp_path / "plan.json"
    assert cli("--database-url", url, "--config", applied, "plan", "--out", saved).code == 0
    saved.write_text(damage(saved.read_text()))
    before = snapshot(engine)
    shown = cli("show", saved)
    assert shown.code == 1 and shown.stdout == ""
    assert message in shown.stderr and "Traceback" not in shown.output
    refused = cli("--database-url", url, "apply", saved)
    assert refused.code == 1 and message in refused.stderr
    assert snapshot(engine) == before


def test_show_of_a_missing_file_says_so(cli: Run, tmp_path: Path) -> None:
    result = cli("show", tmp_path / "nope.json")
    assert result.code == 1
    assert (
        result.stderr
        == f"error: cannot read the plan {tmp_path / 'nope.json'}: No such file or directory\n"
    )


# --- colour ---------------------------------------------------------------------------------


@sqlite_only
def test_plan_is_coloured_on_a_terminal_only(
    url: str, applied: Path, write_config: Callable[..., Path]
) -> None:
    write_config(CHANGED)
    args = ("--database-url", url, "--config", applied, "plan")
    coloured = on_terminal(*args)
    assert coloured.code == 0, coloured.stdout
    for code in (CREATE, UPDATE, DELETE, BOLD + "Plan: 1 to create"):
        assert code in coloured.stdout, coloured.stdout
    plain = [
        on_terminal(*args, env=terminal_env(NO_COLOR="1")),
        on_terminal(*args, env=terminal_env(TERM="dumb")),
        on_terminal(*args, "--format", "json"),
        run_reconciler(*args, env=terminal_env()),  # piped
    ]
    for result in plain:
        assert result.code == 0 and "create" in result.stdout
        assert ESC not in result.output
    forced = run_reconciler(*args, env=terminal_env(FORCE_COLOR="1"))
    assert CREATE in forced.stdout  # as rich does: FORCE_COLOR colours a pipe


def test_validate_annotations_for_github_are_never_coloured(
    write_config: Callable[..., Path],
) -> None:
    config = write_config({"routes.yaml": "version: 1\nroutes:\n  a: {provider: p, modle: m}\n"})
    result = on_terminal("validate", config, "--format", "github")
    assert result.code == 1 and "::error file=" in result.stdout
    assert ESC not in result.stdout


# --- apply asks on a terminal ----------------------------------------------------------------


def test_apply_on_a_terminal_shows_the_plan_and_applies_only_after_yes(
    url: str, engine: Engine, applied: Path, write_config: Callable[..., Path]
) -> None:
    write_config(CHANGED)
    result = on_terminal("--database-url", url, "--config", applied, "apply", answer="yes\n")
    assert result.code == 0, result.stdout
    shown, after = result.stdout.split(PROMPT)
    assert "~ update route 'scoring'" in shown and "Plan: 1 to create, 1 to update" in shown
    assert "Apply complete: generation 2." in after and "update route" not in after
    assert rows(engine, routes, "task")["scoring"].model == "llama3.2:3b"


@sqlite_only
@pytest.mark.parametrize("answer", ["no\n", "y\n", "YES\n", "\x04"], ids=["no", "y", "YES", "eof"])
def test_apply_on_a_terminal_writes_nothing_unless_the_answer_is_yes(
    url: str, engine: Engine, applied: Path, write_config: Callable[..., Path], answer: str
) -> None:
    write_config(CHANGED)
    before = snapshot(engine)
    result = on_terminal("--database-url", url, "--config", applied, "apply", answer=answer)
    assert result.code == 1, result.stdout
    assert result.stdout.rstrip().endswith("Apply cancelled.")
    assert snapshot(engine) == before and revision_count(engine) == 1


def test_a_change_between_the_prompt_and_yes_is_refused_as_stale(
    url: str, engine: Engine, applied: Path, write_config: Callable[..., Path]
) -> None:
    write_config(CHANGED)

    def meanwhile() -> None:
        insert_unmanaged_route(engine, "handmade", "local-ollama")

    result = on_terminal(
        "--database-url", url, "--config", applied, "apply", answer="yes\n", meanwhile=meanwhile
    )
    assert result.code == 1, result.stdout
    assert "the database changed after the plan was shown; nothing was applied" in result.stdout
    assert rows(engine, routes, "task")["scoring"].model == "llama3.1:8b"
    assert revision_count(engine) == 1


@sqlite_only
def test_apply_asks_nothing_with_auto_approve_without_a_terminal_or_without_changes(
    url: str, engine: Engine, applied: Path, write_config: Callable[..., Path]
) -> None:
    args = ("--database-url", url, "--config", applied, "apply")
    unchanged = on_terminal(*args)
    assert unchanged.code == 0 and PROMPT not in unchanged.stdout
    assert "Nothing to apply; nothing was written (generation 1)." in unchanged.stdout

    write_config(CHANGED)
    approved = on_terminal(*args, "--auto-approve")
    assert approved.code == 0 and PROMPT not in approved.stdout
    assert "Apply complete: generation 2." in approved.stdout

    write_config(EXAMPLE)
    in_ci = on_terminal(*args, stdin_tty=False)  # standard input is not a terminal
    assert in_ci.code == 0 and PROMPT not in in_ci.stdout
    assert "Apply complete: generation 3." in in_ci.stdout


def test_apply_on_a_terminal_shows_a_refused_plan_and_does_not_ask(
    url: str, engine: Engine, applied: Path
) -> None:
    emptied(applied)
    before = snapshot(engine)
    result = on_terminal("--database-url", url, "--config", applied, "apply")
    assert result.code == 1 and PROMPT not in result.stdout
    assert "Refused:" in result.stdout and f"error: the plan {MASS_DELETE}" in result.stdout
    json_on_terminal = on_terminal(
        "--database-url", url, "--config", applied, "apply", "--format", "json"
    )
    assert json_on_terminal.code == 1
    assert (
        "apply --format json does not ask for `yes`; add --auto-approve" in json_on_terminal.stdout
    )
    assert snapshot(engine) == before


# --- export and history ----------------------------------------------------------------------


def test_export_never_overwrites_existing_files_without_force(
    cli: Run, url: str, engine: Engine, applied: Path, tmp_path: Path
) -> None:
    hand_written = (applied / "providers.yaml").read_bytes()
    outside = tmp_path / "outside.yaml"
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "routes.yaml").symlink_to(outside)  # dangling
    for target, names in [
        (applied, [applied / "providers.yaml", applied / "routes.yaml"]),
        (tmp_path / "links", [tmp_path / "links" / "routes.yaml"]),
    ]:
        before = sorted(target.iterdir())
        result = cli("--database-url", url, "export", "--out", target)
        assert result.code == 1 and result.stdout == ""
        shown = ", ".join(map(str, names))
        verb = "exists" if len(names) == 1 else "exist"
        assert result.stderr == (
            f"error: {shown} already {verb}; nothing was exported: pass --force to overwrite, "
            "or choose another --out directory\n"
        )
        assert sorted(target.iterdir()) == before
    assert (applied / "providers.yaml").read_bytes() == hand_written
    assert not outside.exists()

    forced = cli("--database-url", url, "export", "--out", applied, "--force")
    assert forced.code == 0, forced.output
    assert (applied / "providers.yaml").read_text().startswith("# Exported by `reconciler export`")
    assert cli("validate", applied).code == 0


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_history_marks_a_revision_applied_from_uncommitted_files_as_dirty(
    cli: Run, url: str, engine: Engine, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    outside_git = write_config(EXAMPLE, "plain")
    assert cli("--database-url", url, "--config", outside_git, "apply").code == 0
    config = write_config({"providers.yaml": PROVIDERS, "routes.yaml": ROUTES.replace("8b", "3b")})
    git(config, "init", "-q", "-b", "main")
    git(config, "add", "-A")
    git(config, "commit", "-q", "-m", "one")
    assert cli("--database-url", url, "--config", config, "apply").code == 0  # committed
    write_config({"routes.yaml": ROUTES.replace("8b", "1b")})
    assert cli("--database-url", url, "--config", config, "apply").code == 0  # not committed
    head = subprocess.run(
        ["git", "-C", str(config), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()

    listed = json.loads(cli("--database-url", url, "history", "--format", "json").stdout)
    assert [(r["generation"], r["git_commit"], r["dirty"]) for r in listed] == [
        (3, head, True),
        (2, head, False),
        (1, None, None),
    ]
    lines = cli("--database-url", url, "history").stdout.splitlines()
    assert f"commit {head[:12]}-dirty " in lines[0]
    assert f"commit {head[:12]} " in lines[1] and "commit - " in lines[2]

    # A revision recorded by an older version (`+dirty`) reads the same.
    sql(engine, f"UPDATE reconcile_revisions SET git_commit = '{head}+dirty' WHERE generation = 2")
    listed = json.loads(cli("--database-url", url, "history", "--format", "json").stdout)
    assert (listed[1]["git_commit"], listed[1]["dirty"]) == (head, True)


def test_a_database_url_of_an_engine_reconciler_does_not_support_is_one_clear_error() -> None:
    result = run_reconciler("--database-url", "mysql://root@127.0.0.1/test", "history")
    assert result.code == 1
    assert "unsupported database 'mysql'" in result.stderr
    assert "use sqlite:///FILE or postgresql://" in result.stderr
    assert "Traceback" not in result.output


def test_a_postgresql_url_without_its_driver_says_what_to_install(tmp_path: Path) -> None:
    """An install without the `postgres` extra: psycopg cannot be imported."""
    script = (
        "import sys; sys.modules['psycopg'] = None; sys.argv[0] = 'reconciler'; "
        "from reconciler.__main__ import main; main()"
    )
    url = "postgresql://reconciler:s3cret-pass@127.0.0.1:5432/reconciler"
    for command in (["history"], ["db", "upgrade"], ["--config", str(ROOT / "config"), "plan"]):
        done = subprocess.run(
            [sys.executable, "-c", script, "--database-url", url, *command],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )
        assert done.returncode == 1, (command, done.stderr)
        assert "PostgreSQL needs the psycopg 3 driver, which cannot be imported" in done.stderr
        assert "pip install 'reconciler[postgres]'" in done.stderr
        assert "Traceback" not in done.stderr and "s3cret-pass" not in done.stderr


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_is_asked_only_where_a_repository_can_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config directory with no `.git` in it or above it (mounted from elsewhere) starts no
    git process at each apply; one in a repository, or with GIT_DIR set, does."""
    from reconciler.service import reconcile

    started: list[list[str]] = []
    run = subprocess.run

    def recording(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        started.append(args)
        return run(args, **kwargs)

    monkeypatch.setattr(reconcile.subprocess, "run", recording)
    for name in ("GIT_DIR", "GIT_WORK_TREE"):
        monkeypatch.delenv(name, raising=False)
    plain = tmp_path / "mounted" / "config"
    plain.mkdir(parents=True)
    assert reconcile.git_commit(plain) is None
    assert started == []
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere.git"))
    assert reconcile.git_commit(plain) is None  # git looked, and found none there
    assert len(started) == 1
    monkeypatch.delenv("GIT_DIR")
    repository = tmp_path / "repo"
    (repository / "config").mkdir(parents=True)
    (repository / "config" / "routes.yaml").write_text("routes: {}\n", encoding="utf-8")
    git(repository, "init", "-q", "-b", "main")
    git(repository, "add", "-A")
    git(repository, "commit", "-q", "-m", "one")
    commit = reconcile.git_commit(repository / "config")
    assert commit is not None and len(commit) == 40 and not commit.endswith("-dirty")
