"""The typed config format: provider and route specs, validated strictly at the YAML boundary.

Every model is strict (no `"yes"` -> True, no `"10"` -> 10), closed (`extra="forbid"`) and
frozen. Provider types subclass `ProviderSpec`; the registry maps `type:` to the subclass.

Annotations are objects, not strings (no `from __future__ import annotations`): pydantic would
compile every string at each start.
"""

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    field_validator,
)
from pydantic_core import PydanticCustomError

from reconciler.core.field_rules import (
    ENV_NAME_PATTERN,
    HEADER_NAME_HINT,
    HEADER_NAME_PATTERN,
    HEALTH_PATH_PATTERN,
    MULTILINE_FIELDS,
    NAME_HINT,
    NAME_PATTERN,
    NO_CONTROL_PATTERN,
    SECRET_HEADER_PATTERN,
    SECRET_HINT,
    SECRET_LITERAL,
    Name,
    describe_char,
    forbidden_control,
    header_name_defect,
    is_secret_header,
)
from reconciler.core.output_schema import check_output_schema
from reconciler.core.urls import UrlRejected, check_base_url

# The field rules are re-exported: callers import them from here, with the models.
__all__ = [
    "ANTHROPIC_API",
    "BASE_URL_PATTERN",
    "ENV_NAME_PATTERN",
    "HEALTH_PATH_PATTERN",
    "KEEP_ALIVE_HINT",
    "KEEP_ALIVE_MESSAGE",
    "KEEP_ALIVE_PATTERN",
    "MAX_SECONDS",
    "MULTILINE_FIELDS",
    "NAME_HINT",
    "NAME_PATTERN",
    "SECRET_LITERAL",
    "URL_EXAMPLE",
    "AnthropicEndpoint",
    "AnthropicProvider",
    "Endpoint",
    "Fallback",
    "FileHeader",
    "HeaderName",
    "HeaderValue",
    "ModelName",
    "Name",
    "OllamaProvider",
    "OpenAICompatibleProvider",
    "ProviderSpec",
    "RouteSpec",
    "SecretRef",
    "Strict",
    "describe_char",
    "forbidden_control",
    "header_name_defect",
    "is_secret_header",
]

# A base URL as the JSON Schema can check it: http(s), a host, no credentials, query, fragment,
# space or control. The egress policy (`urls.check_base_url`) checks the host itself.
BASE_URL_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://"  # the scheme, in any case
    r"[^/?#@:\s\x00-\x1f\x7f][^/?#@\s\x00-\x1f\x7f]*"  # a host (and port), no user@
    r"(?:/[^?#\s\x00-\x1f\x7f]*)?$"  # a path, no query or fragment
)
_SCHEMA_HINT = (
    "write a JSON Schema object, e.g. {type: object, properties: {score: {type: number}}}"
)
_DURATION = re.compile(r"-1|0|[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h)")
# A whole number of seconds, written as a number or as text: `300` is read as `300s`.
_SECONDS = re.compile(r"-1|[0-9]{1,9}")
MAX_SECONDS = 999_999_999
# What `keep_alive` accepts as text, for the JSON Schema: a duration, or a number of seconds.
KEEP_ALIVE_PATTERN = r"^(?:-1|[0-9]{1,9}|[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h))$"
KEEP_ALIVE_MESSAGE = "keep_alive must be a duration such as 30s, 5m, 1h, 0 or -1"
KEEP_ALIVE_HINT = (
    'write a number and its unit (ms, s, m or h) without a space, such as "5m", "300s" or '
    '"1h"; or a whole number of seconds such as 300; 0 unloads the model at once, -1 keeps '
    "it loaded"
)
URL_EXAMPLE = "http://127.0.0.1:11434"

ModelName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=256),
    Field(json_schema_extra={"pattern": NO_CONTROL_PATTERN}),
]


class Strict(BaseModel):
    """Base of every spec model: strict types, unknown fields refused, immutable.

    Validators are built on first use, so a command pays only for the types its files use.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, defer_build=True)


class SecretRef(Strict):
    """A reference to a secret held elsewhere. Only the reference is ever stored or shown."""

    env: Annotated[str, StringConstraints(pattern=ENV_NAME_PATTERN)] = Field(
        description="Name of the environment variable that holds the secret."
    )

    def __str__(self) -> str:
        return f"{{env: {self.env}}}"


def _header_token(name: str) -> str:
    if (defect := header_name_defect(name)) is not None:
        raise PydanticCustomError(
            "invalid_header_name",
            "invalid header name: {defect} (the name is not shown)",
            {"defect": defect, "hint": HEADER_NAME_HINT},
        )
    return name


def _is_literal(value: Any) -> bool:
    """True for a value written where a credential goes that is not a reference (nor empty)."""
    return value is not None and not isinstance(value, dict | SecretRef)


def _secret_only(value: Any) -> Any:
    if _is_literal(value):
        raise PydanticCustomError("secret_literal", SECRET_LITERAL, {"hint": SECRET_HINT})
    return value


class _Literal:
    """Stands in for a literal written under a secret-bearing header name: never kept."""

    def __repr__(self) -> str:
        return "<a literal credential, not shown>"


_LITERAL = _Literal()


def _not_a_literal(value: Any) -> Any:
    return _secret_only(value) if value is _LITERAL else value


def _headers_schema(schema: dict[str, Any]) -> None:
    """Header names are HTTP tokens; a credential header's value is a `{env: NAME}` reference."""
    reference = next(b for b in schema["additionalProperties"]["anyOf"] if "$ref" in b)
    schema["propertyNames"] = {"pattern": HEADER_NAME_PATTERN}
    schema["patternProperties"] = {SECRET_HEADER_PATTERN: reference}


def _output_schema_schema(schema: dict[str, Any]) -> None:
    """An output schema describes a JSON object: `type: object` (`check_output_schema`)."""
    mapping = next(b for b in schema["anyOf"] if b.get("type") == "object")
    mapping["properties"] = {"type": {"const": "object"}}
    mapping["required"] = ["type"]


HeaderName = Annotated[str, AfterValidator(_header_token)]
HeaderValue = Annotated[str | SecretRef, BeforeValidator(_not_a_literal)]


class Endpoint(Strict):
    """Where and how to reach a provider."""

    base_url: str = Field(
        description="http(s) URL of the server; no credentials, no query.",
        json_schema_extra={"pattern": BASE_URL_PATTERN},
    )
    timeout_s: float = Field(60.0, gt=0, le=3600, description="Deadline for a whole request.")
    connect_timeout_s: float = Field(3.0, gt=0, le=300, description="Deadline to connect.")
    probe_timeout_s: float = Field(2.0, gt=0, le=60, description="Deadline for a readiness probe.")
    headers: dict[HeaderName, HeaderValue] = Field(
        default_factory=dict,
        description="Extra request headers; credentials in them must be `{env: NAME}`.",
        json_schema_extra=_headers_schema,
    )
    api_key: SecretRef | None = Field(None, description="The API key, as `{env: NAME}`.")
    verify_tls: bool = Field(True, description="Verify the server's TLS certificate.")

    @field_validator("base_url")
    @classmethod
    def _url_policy(cls, value: str) -> str:
        if "://" not in value:
            raise PydanticCustomError(
                "url_policy",
                f"not a URL: expected an http:// or https:// URL like {URL_EXAMPLE}",
                {"hint": f"write the scheme, host and port: {URL_EXAMPLE} or https://host"},
            )
        try:
            return check_base_url(value)
        except UrlRejected as exc:
            raise PydanticCustomError(
                "url_policy", "{reason}", {"reason": str(exc), "hint": exc.hint}
            ) from None

    @field_validator("api_key", mode="before")
    @classmethod
    def _api_key_is_reference(cls, value: Any) -> Any:
        return _secret_only(value)

    @field_validator("headers", mode="before")
    @classmethod
    def _secret_headers_are_references(cls, value: Any) -> Any:
        """Each literal under a secret-bearing name is replaced by a marker its check refuses.

        So every header is still checked on its own: its name, and its value or the marker.
        """
        if not isinstance(value, dict):
            return value
        return {
            name: _LITERAL
            if isinstance(name, str) and is_secret_header(name) and _is_literal(header)
            else header
            for name, header in value.items()
        }

    def secret_refs(self) -> list[SecretRef]:
        """Every secret reference of this endpoint."""
        refs = [h for h in self.headers.values() if isinstance(h, SecretRef)]
        return [self.api_key, *refs] if self.api_key else refs


def _type_required(schema: dict[str, Any]) -> None:
    """`type:` has a default per class, but a file must say it: the loader picks the class by it."""
    schema["required"] = ["type", *(f for f in schema.get("required", ()) if f != "type")]


class ProviderSpec(Strict):
    """Fields every provider type has. A type adds its own fields beside `endpoint`."""

    model_config = ConfigDict(json_schema_extra=_type_required)

    type_name: ClassVar[str] = ""

    type: str = Field(description="The provider type, from the provider registry.")
    enabled: bool = Field(True, description="A disabled provider serves no route.")
    protect: bool = Field(False, description="Refuse to delete this provider until unset.")
    endpoint: Endpoint
    max_concurrency: int = Field(4, ge=1, le=1024, description="Requests in flight at most.")


def _keep_alive_schema(schema: dict[str, Any]) -> None:
    """Text in a duration's form, or a whole number of seconds (-1 and up)."""
    del schema["type"]
    schema["anyOf"] = [
        {"type": "string", "pattern": KEEP_ALIVE_PATTERN},
        {"type": "integer", "minimum": -1, "maximum": MAX_SECONDS},
    ]


class OllamaProvider(ProviderSpec):
    """An Ollama server (`ollama serve`)."""

    type_name: ClassVar[str] = "ollama"

    type: Literal["ollama"] = "ollama"
    keep_alive: str = Field(
        "5m",
        description=(
            "How long Ollama keeps a model loaded after a request: a duration (30s, 5m, 1h), "
            "a whole number of seconds (300), 0 (unload at once) or -1 (keep loaded)."
        ),
        json_schema_extra=_keep_alive_schema,
    )

    @field_validator("keep_alive", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        """A whole number of seconds, written as a number or as text, is a duration: 300s."""
        if isinstance(value, int) and not isinstance(value, bool) and -1 <= value <= MAX_SECONDS:
            value = str(value)
        if not isinstance(value, str):
            raise PydanticCustomError("duration", KEEP_ALIVE_MESSAGE, {"hint": KEEP_ALIVE_HINT})
        if _SECONDS.fullmatch(value) and value != "-1":
            return "0" if int(value) == 0 else f"{int(value)}s"
        return value

    @field_validator("keep_alive")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not _DURATION.fullmatch(value):
            raise PydanticCustomError("duration", KEEP_ALIVE_MESSAGE, {"hint": KEEP_ALIVE_HINT})
        return value


class OpenAICompatibleProvider(ProviderSpec):
    """A server speaking OpenAI's API: vLLM, llama.cpp, LM Studio, OpenAI, OpenRouter."""

    type_name: ClassVar[str] = "openai_compatible"

    type: Literal["openai_compatible"] = "openai_compatible"
    health_path: Annotated[str, StringConstraints(pattern=HEALTH_PATH_PATTERN)] | None = Field(
        None,
        description="A health endpoint the server has, e.g. /health on llama.cpp and vLLM.",
    )


ANTHROPIC_API = "https://api.anthropic.com"


class AnthropicEndpoint(Endpoint):
    """Anthropic's endpoint: the public API unless `base_url` says otherwise."""

    base_url: str = Field(
        ANTHROPIC_API,
        validate_default=True,
        description="http(s) URL of the API; requests go to {base_url}/v1/...",
        json_schema_extra={"pattern": BASE_URL_PATTERN},
    )


class AnthropicProvider(ProviderSpec):
    """Anthropic's Messages API; the key is sent as `x-api-key`."""

    type_name: ClassVar[str] = "anthropic"

    type: Literal["anthropic"] = "anthropic"
    endpoint: AnthropicEndpoint = Field(default_factory=AnthropicEndpoint)


class Fallback(Strict):
    """A provider and model to try, in order, when the primary cannot serve."""

    provider: Name
    model: ModelName
    params: dict[str, JsonValue] = Field(default_factory=dict)


class RouteSpec(Strict):
    """A task and the model that serves it."""

    provider: Name = Field(description="The primary provider's name.")
    model: ModelName = Field(description="The model name as the provider knows it.")
    enabled: bool = Field(True, description="A disabled route serves nothing.")
    required: bool = Field(False, description="The service is not ready while this task is not.")
    protect: bool = Field(False, description="Refuse to delete this route until unset.")
    params: dict[str, JsonValue] = Field(
        default_factory=dict, description="Model parameters passed with each request."
    )
    # Not `list`: pydantic reads a factory's signature, and `list`'s is parsed with `tokenize`.
    fallbacks: list[Fallback] = Field(default_factory=lambda: [], max_length=16)
    prompt: Annotated[str, StringConstraints(min_length=1, max_length=20_000)] | None = Field(
        None, description="The system prompt; default: a built-in rubric for `scoring`."
    )
    output_schema: dict[str, JsonValue] | None = Field(
        None,
        description="JSON Schema of the answer; default: a score from 0 to 1 and a rationale.",
        json_schema_extra=_output_schema_schema,
    )

    @field_validator("output_schema")
    @classmethod
    def _usable_schema(cls, value: dict[str, JsonValue] | None) -> dict[str, JsonValue] | None:
        if value is not None and (problem := check_output_schema(value)):
            raise PydanticCustomError(
                "output_schema", "{problem}", {"problem": problem, "hint": _SCHEMA_HINT}
            )
        return value


class FileHeader(Strict):
    """The top level of a file, before providers and routes are validated one by one."""

    version: int = Field(1, ge=1, le=1, description="The format version; only 1 exists.")
    providers: dict[str, Any] = Field(default_factory=dict)
    routes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("version", mode="before")
    @classmethod
    def _known_version(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and value != 1:
            raise PydanticCustomError(
                "unsupported_version",
                "format version {version} is not supported; this reconciler reads version 1",
                {"version": value, "hint": "write `version: 1`"},
            )
        return value
