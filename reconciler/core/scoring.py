"""Scoring, the pure parts: job input, prompts, output schemas, answer checking, re-asking,
output-token caps, retry delays, and the times and durations the queue commands take.

Purely computational, no I/O.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from reconciler.core import jsonsafe
from reconciler.core.text import bound, escape_control

if TYPE_CHECKING:  # imported where used: most configs declare no output schema
    from jsonschema import Draft202012Validator

DEFAULT_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "rationale": {"type": "string", "maxLength": 500},
    },
    "required": ["score", "rationale"],
    "additionalProperties": False,
}

SCORING_RUBRIC = """\
You are a strict, consistent evaluator. Read the item and rate how well it meets its purpose: \
accurate, relevant, clear and complete. Give a score from 0 (useless or wrong) to 1 (excellent), \
using the whole range: 0.5 is average. Then give a one-line rationale naming the main reason. \
Answer with JSON only, matching the schema you are given."""

GENERIC_PROMPT = """\
You are a careful assistant. Do the task named {task} on the item you are given and answer \
with JSON only, matching the schema you are given."""

MAX_ITEM_CHARS = 200_000
# The output tokens every call may spend unless the route's `params` say otherwise.
DEFAULT_MAX_OUTPUT_TOKENS = 512
# How much of a rejected answer is shown back to the model when it is asked again.
MAX_REASKED_CHARS = 20_000
REASK_PROMPT = """\
That answer was not accepted: {error}. Answer again with JSON only, matching the schema you \
were given."""
# The longest wait a server's Retry-After can impose on a job; a longer one is read as this.
MAX_RETRY_AFTER_S = 300.0


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    role: Literal["system", "user", "assistant"]
    content: Annotated[str, StringConstraints(max_length=MAX_ITEM_CHARS)]


class JobInput(BaseModel):
    """One line of an `enqueue` file: an id and either `text` or chat `messages`."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_ITEM_CHARS)] | None = None
    messages: list[ChatMessage] | None = Field(None, min_length=1, max_length=256)

    @model_validator(mode="after")
    def _one_of(self) -> JobInput:
        if (self.text is None) == (self.messages is None):
            given = "gives both" if self.text is not None else "gives neither"
            raise PydanticCustomError(
                "one_of",
                "give exactly one of `text` or `messages`; this item {given}",
                {"given": given},
            )
        return self

    def payload(self) -> dict[str, Any]:
        """What the queue stores for this item."""
        if self.text is not None:
            return {"text": self.text}
        return {"messages": [m.model_dump() for m in self.messages or []]}


def system_prompt(task: str, prompt: str | None) -> str:
    """The route's prompt, else the built-in rubric for `scoring`, else a generic one."""
    if prompt:
        return prompt
    return SCORING_RUBRIC if task == "scoring" else GENERIC_PROMPT.format(task=task)


def messages_for(payload: dict[str, Any], system: str) -> list[dict[str, str]]:
    """The chat messages sent for a job: the system prompt, then the item."""
    if "messages" in payload:
        given = [dict(m) for m in payload["messages"]]
        if given and given[0]["role"] == "system":
            return given
        return [{"role": "system", "content": system}, *given]
    return [{"role": "system", "content": system}, {"role": "user", "content": payload["text"]}]


class MalformedAnswer(ValueError):
    """The model's answer is not JSON matching the output schema."""


def parse_answer(content: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The answer as a JSON object valid against `schema`; raises `MalformedAnswer`."""
    try:
        answer = jsonsafe.loads(content)
    except jsonsafe.JsonRejected as exc:
        shown = escape_control(bound(content.strip(), 80))
        raise MalformedAnswer(f"the answer: {exc}; it began {shown}") from None
    validator = _validator(json.dumps(schema, sort_keys=True))
    errors = sorted(validator.iter_errors(answer), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.path) or "the answer"
        raise MalformedAnswer(
            f"the answer does not match the output schema at {where}: {first.message}"
        )
    if not isinstance(answer, dict):
        raise MalformedAnswer("the answer is not a JSON object")
    return answer


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> Draft202012Validator:
    # Building a validator compiles the schema; a route's schema is the same for every answer.
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(schema_json))


def backoff_s(
    attempt: int,
    *,
    base_s: float = 1.0,
    cap_s: float = 60.0,
    retry_after_s: float | None = None,
    uniform: Callable[[float, float], float],
) -> float:
    """Capped exponential backoff with full jitter; a server's Retry-After is a floor.

    `uniform(a, b)` draws the jitter (the caller's random source, e.g. `random.uniform`).
    """
    ceiling = min(cap_s, base_s * 2 ** max(attempt - 1, 0))
    delay = uniform(0, ceiling)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
    return delay


@dataclass(frozen=True, slots=True)
class Target:
    """One model a route may ask: the primary or a fallback."""

    provider: str
    model: str
    params: Mapping[str, Any]


def route_targets(route: Mapping[str, Any]) -> list[Target]:
    """The models a route row asks, in order: its primary, then its fallbacks."""
    first = Target(route["provider"], route["model"], route["params"] or {})
    rest = [Target(f["provider"], f["model"], f.get("params") or {}) for f in route["fallbacks"]]
    return [first, *rest]


def reask_messages(messages: list[dict[str, str]], answer: str, error: str) -> list[dict[str, str]]:
    """The conversation asked again: the rejected answer, and what was wrong with it."""
    return [
        *messages,
        {"role": "assistant", "content": bound(answer, MAX_REASKED_CHARS)},
        {"role": "user", "content": REASK_PROMPT.format(error=error)},
    ]


def answer_fields(schema: Mapping[str, Any] | None) -> list[str]:
    """The top-level fields an output schema declares, in its order (the default's if none)."""
    properties = (schema or DEFAULT_OUTPUT_SCHEMA).get("properties")
    return [str(name) for name in properties] if isinstance(properties, dict) else []


def percentile(values: Iterable[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(?:[0-9]{1,9}[smhdw])+")
_PART = re.compile(r"([0-9]{1,9})([smhdw])")
DURATION_HINT = "write a duration such as 30m, 1h, 7d or 1h30m"


def parse_duration(text: str) -> timedelta | None:
    """`30s`, `15m`, `1h`, `7d`, `2w` or a sum such as `1h30m`; None when it is none of these."""
    value = text.strip().lower()
    if not _DURATION.fullmatch(value):
        return None
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(value))
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        return None


def parse_since(text: str, now: datetime) -> datetime | None:
    """A moment: a duration before `now` (`1h`), or an ISO time (UTC unless it has an offset).

    None when `text` is neither.
    """
    duration = parse_duration(text)
    if duration is not None:
        try:
            return now - duration
        except OverflowError:
            return datetime.min.replace(tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
