"""A third-party provider type, as a plugin package would ship it (see tests/test_plugins.py).

The directory holding this module and `acme_provider-1.0.dist-info/` looks like site-packages
after `pip install acme-provider`: its entry point registers `type: acme`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import ConfigDict, Field

from reconciler.core.registry import ProviderType
from reconciler.core.spec import ProviderSpec


class AcmeProvider(ProviderSpec):
    """Acme's hosted models: a region and a deployment beside the usual endpoint."""

    model_config = ConfigDict(extra="forbid")
    type_name: ClassVar[str] = "acme"

    type: Literal["acme"] = "acme"
    region: Literal["eu", "us"] = Field("eu", description="Where Acme runs the deployment.")
    deployment: str = Field(min_length=1, description="The deployment to send requests to.")


PROVIDER_TYPE = ProviderType("acme", AcmeProvider, "Acme's hosted models.")
