"""A route's `output_schema`: checked when the config loads, so a typo fails `validate`."""

from __future__ import annotations

from typing import Any

__all__ = ["check_output_schema"]


def check_output_schema(schema: Any) -> str | None:
    """Why `schema` is not a usable JSON Schema for an answer, or None when it is."""
    if not isinstance(schema, dict):
        return "output_schema must be a mapping (a JSON Schema object)"
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "the top level"
        return f"output_schema is not a valid JSON Schema at {where}: {exc.message}"
    if schema.get("type") != "object":
        return "output_schema must describe a JSON object (`type: object`)"
    return None
