"""Config problems as text for people, JSON for programs, annotations for GitHub."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict

from reconciler.errors import Problem

__all__ = ["PROBLEMS_FORMAT_VERSION", "problems_github", "problems_json", "problems_text"]

PROBLEMS_FORMAT_VERSION = 1


def problems_text(problems: Sequence[Problem]) -> str:
    """`file:line:col: path: message` lines, each followed by an indented hint."""
    lines = []
    for p in problems:
        place = f"{p.file}:{p.line}:{p.column}" if p.line else p.file
        where = f" {p.path}:" if p.path else ""
        lines.append(f"{place}:{where} {p.message}")
        if p.hint:
            lines.append(f"    hint: {p.hint}")
    return "\n".join(lines)


def problems_json(problems: Sequence[Problem], files: int) -> str:
    """The stable `validate --format json` document (see the README)."""
    document = {
        "version": PROBLEMS_FORMAT_VERSION,
        "valid": not problems,
        "files": files,
        "errors": [asdict(p) for p in problems],
    }
    return json.dumps(document, indent=2)


def problems_github(problems: Sequence[Problem]) -> str:
    """GitHub Actions workflow commands: one `::error` annotation per problem."""
    lines = []
    for p in problems:
        props = [f"file={_prop(p.file)}"]
        if p.line:
            props += [f"line={p.line}", f"col={p.column}"]
        props.append(f"title={_prop(p.path or p.code)}")
        message = p.message + (f" (hint: {p.hint})" if p.hint else "")
        lines.append(f"::error {','.join(props)}::{_data(message)}")
    return "\n".join(lines)


def _data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(value: str) -> str:
    return _data(value).replace(":", "%3A").replace(",", "%2C")
