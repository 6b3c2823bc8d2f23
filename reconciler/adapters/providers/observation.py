"""What a successful probe observed, before it becomes a `ProbeReport`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Observation:
    version: str | None = None
    models: frozenset[str] = frozenset()
    capabilities: Mapping[str, frozenset[str]] = field(default_factory=dict)
    loaded: frozenset[str] | None = None
