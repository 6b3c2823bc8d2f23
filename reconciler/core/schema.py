"""The JSON Schema of the config format, for editors and any JSON Schema validator. Pure."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Union

from pydantic import ConfigDict, Field, TypeAdapter, create_model

from reconciler.core.registry import ProviderRegistry
from reconciler.core.spec import NAME_PATTERN, Name, RouteSpec

SCHEMA_ID = "https://reconciler.dev/schema/v1/reconciler.schema.json"
# `patternProperties` alone leaves a key that does not match unchecked: names are refused here.
_NAMES: dict[str, Any] = {"propertyNames": {"pattern": NAME_PATTERN}}


def config_schema(registry: ProviderRegistry) -> dict[str, Any]:
    """The schema of one config file, with a branch per registered provider type."""
    models = tuple(t.config_model for t in registry)
    provider: Any = Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007
    document = create_model(
        "ReconcilerConfig",
        __config__=ConfigDict(extra="forbid", title="reconciler config file"),
        version=(Literal[1], Field(1, description="The format version.")),
        providers=(
            dict[Name, provider],
            Field(default_factory=dict, description="Providers by name.", json_schema_extra=_NAMES),
        ),
        routes=(
            dict[Name, RouteSpec],
            Field(default_factory=dict, description="Routes by task.", json_schema_extra=_NAMES),
        ),
    )
    schema = TypeAdapter(document).json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def schema_text(registry: ProviderRegistry) -> str:
    """The schema as the committed `reconciler.schema.json` holds it."""
    return json.dumps(config_schema(registry), indent=2, sort_keys=True) + "\n"
