"""A third-party provider type, as a plugin package would ship it (see tests/test_plugins.py).

The directory holding this module and `acme_provider-1.0.dist-info/` looks like site-packages
after `pip install acme-provider`: its entry point registers `type: acme` with its driver, which
speaks Acme's small JSON API (tests/fakeprovider.py answers it):

    GET  {base_url}/deployments/{deployment}/models    -> {"models": ["acme-large", ...]}
    POST {base_url}/deployments/{deployment}/generate  <- {"model", "instructions",
         "conversation", "schema", "max_output_tokens"} -> {"output": "<JSON>", "usage": {...}}
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field

from reconciler.adapters.providers.driver import (
    CallRequest,
    HttpCall,
    ProbeContext,
    Reading,
    bearer,
    capped,
)
from reconciler.adapters.providers.failure import CallFailure, http_failure, token_count
from reconciler.adapters.providers.http import ProbeFailure, check_status, provider_text, request
from reconciler.adapters.providers.observation import Observation
from reconciler.core.readiness import Reason, RemedyContext
from reconciler.core.registry import ProviderType
from reconciler.core.spec import ProviderSpec


class AcmeProvider(ProviderSpec):
    """Acme's hosted models: a region and a deployment beside the usual endpoint."""

    model_config = ConfigDict(extra="forbid")
    type_name: ClassVar[str] = "acme"

    type: Literal["acme"] = "acme"
    region: Literal["eu", "us"] = Field("eu", description="Where Acme runs the deployment.")
    deployment: str = Field(min_length=1, description="The deployment to send requests to.")


def _deployment(spec: ProviderSpec) -> str:
    if not isinstance(spec, AcmeProvider):
        raise TypeError(f"the acme driver cannot serve a {spec.type} provider")
    return f"deployments/{spec.deployment}"


class AcmeDriver:
    """`type: acme`: its probe lists the deployment's models; its call asks `generate`."""

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        return bearer(api_key)

    async def probe(self, context: ProbeContext) -> Observation:
        path = f"{_deployment(context.spec)}/models"
        answer = await request(context.client, "GET", path, context.headers)
        check_status(answer, "/models")
        document = answer.json("/models")
        models = document.get("models") if isinstance(document, dict) else None
        if not isinstance(models, list):
            raise ProbeFailure(Reason.bad_response, "/models has no `models` list")
        return Observation(models=frozenset(provider_text(m) for m in models if isinstance(m, str)))

    def build_call(self, call: CallRequest) -> HttpCall:
        system = [m["content"] for m in call.messages if m["role"] == "system"]
        body = {
            **capped(call.params, "max_output_tokens"),
            "model": call.model,
            "instructions": "\n\n".join(system),
            "conversation": [m for m in call.messages if m["role"] != "system"],
            "schema": call.schema,
        }
        return HttpCall(f"{_deployment(call.spec)}/generate", body)

    def read_answer(self, document: Any) -> Reading:
        output = document.get("output") if isinstance(document, dict) else None
        if not isinstance(output, str):
            raise CallFailure("the answer has no output", transient=True)
        usage = document.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        return Reading(output, token_count(usage.get("in")), token_count(usage.get("out")))

    def classify(self, status: int, body: bytes, retry_after: str | None) -> CallFailure | None:
        return http_failure(status, body, retry_after)

    def remedy(self, reason: Reason, context: RemedyContext) -> str | None:
        if reason is Reason.model_missing:
            return (
                f"enable {context.model} on the Acme deployment of {context.provider}, "
                f"or fix routes.{context.task}.model"
            )
        if reason is Reason.bad_response and context.base_url:
            return f"check that {context.base_url} is Acme's API (it ends in /v1)"
        return None


PROVIDER_TYPE = ProviderType("acme", AcmeProvider, "Acme's hosted models.", AcmeDriver())
