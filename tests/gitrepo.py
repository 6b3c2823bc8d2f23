"""Run git in a test's directory, isolated from the user's and the system's git configuration."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def git(directory: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_CONFIG_GLOBAL"] = os.devnull
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=directory,
        env=env,
        check=True,
        capture_output=True,
        timeout=30,
    )
