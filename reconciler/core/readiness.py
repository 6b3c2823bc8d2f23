"""Per-task readiness: from routes, providers and probe reports to a verdict with a remedy.

Purely computational, no side effects. The probes (adapters) observe each provider once per
cycle; `verdicts` decides, for every task, whether it can be served now and, if not, why and
what a person should do about it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum


class Status(StrEnum):
    ready = "ready"  # the primary target can serve
    degraded = "degraded"  # the primary cannot, a fallback can
    not_ready = "not_ready"  # nothing can serve the task
    stale = "stale"  # the last verdict is too old, or from an older config generation


class Reason(StrEnum):
    no_route = "no_route"
    route_disabled = "route_disabled"
    provider_missing = "provider_missing"
    provider_disabled = "provider_disabled"
    secret_missing = "secret_missing"
    provider_unreachable = "provider_unreachable"
    timeout = "timeout"
    auth_failed = "auth_failed"
    server_error = "server_error"
    loading = "loading"
    model_missing = "model_missing"
    capability_mismatch = "capability_mismatch"
    bad_response = "bad_response"


SERVABLE = frozenset({Status.ready, Status.degraded})
# Every task of this product is a chat/completion task; Ollama reports this capability.
CHAT_CAPABILITY = "completion"


@dataclass(frozen=True, slots=True)
class RemedyContext:
    """What a remedy may name: the provider, its place, and the task and model asked of it."""

    provider: str
    type: str
    base_url: str
    secret_envs: tuple[str, ...]
    task: str
    model: str
    detail: str


# A provider type's own remedies (its driver's, passed in): None leaves the generic one.
Remedies = Callable[[Reason, RemedyContext], str | None]


@dataclass(frozen=True, slots=True)
class ProviderView:
    """What readiness needs to know of a provider row, and its type's remedies."""

    name: str
    type: str
    enabled: bool
    base_url: str
    secret_envs: tuple[str, ...] = ()
    remedies: Remedies | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class RouteView:
    """What readiness needs to know of a route row."""

    task: str
    provider: str
    model: str
    enabled: bool
    required: bool
    fallbacks: tuple[tuple[str, str], ...] = ()
    # The generation that last wrote this route or a provider it names: a verdict checked
    # against an older one no longer describes it.
    as_of: int = 0

    def names(self) -> set[str]:
        """The providers this route asks: its own and its fallbacks'."""
        return {self.provider, *(provider for provider, _ in self.fallbacks)}


@dataclass(frozen=True, slots=True)
class ProbeReport:
    """What one probe of one provider observed. `reason` is set when the provider failed."""

    provider: str
    checked_at: datetime
    latency_ms: float
    reason: Reason | None = None
    detail: str = ""
    version: str | None = None
    models: frozenset[str] = frozenset()
    # Per model, where the server reports them (Ollama's /api/show); absent means unknown.
    capabilities: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Models loaded in memory now (Ollama's /api/ps); None when the server does not say.
    loaded: frozenset[str] | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass(frozen=True, slots=True)
class Verdict:
    """A task's readiness, as stored and shown."""

    task: str
    status: Status
    reason: Reason | None
    remedy: str
    detail: str
    provider: str
    model: str
    required: bool
    generation: int
    checked_at: datetime | None  # None: never checked
    served_by: str | None = None  # "provider/model" that would serve the task now
    latency_ms: float | None = None
    provider_version: str | None = None
    warm: bool | None = None

    def aged(self, now: datetime, max_age: timedelta, generation: int) -> Verdict:
        """This verdict, marked stale when older than `max_age`, or checked before `generation`
        (the generation that last changed its route or a provider of it)."""
        if self.status is Status.stale or self.checked_at is None:
            return self
        if now - self.checked_at > max_age:
            return replace(self, status=Status.stale, detail=_stale_detail(self, now))
        if self.generation < generation:
            detail = f"checked against config generation {self.generation}, now {generation}"
            return replace(self, status=Status.stale, detail=detail)
        return self


def _stale_detail(verdict: Verdict, now: datetime) -> str:
    assert verdict.checked_at is not None
    age = int((now - verdict.checked_at).total_seconds())
    was = verdict.status.value + (f" ({verdict.reason.value})" if verdict.reason else "")
    return f"last checked {age}s ago ({was}); no check since"


def model_matches(wanted: str, available: Iterable[str]) -> str | None:
    """The available name that serves `wanted`; `llama3` is `llama3:latest` on Ollama."""
    names = set(available)
    if wanted in names:
        return wanted
    if ":" not in wanted and f"{wanted}:latest" in names:
        return f"{wanted}:latest"
    if wanted.endswith(":latest") and wanted.removesuffix(":latest") in names:
        return wanted.removesuffix(":latest")
    return None


@dataclass(frozen=True, slots=True)
class _Check:
    """The outcome for one (provider, model) target."""

    provider: str
    model: str
    reason: Reason | None
    detail: str
    remedy: str
    report: ProbeReport | None = None
    warm: bool | None = None


def check_target(
    task: str,
    provider_name: str,
    model: str,
    providers: Mapping[str, ProviderView],
    reports: Mapping[str, ProbeReport],
) -> _Check:
    """Can `provider_name` serve `model` for `task` now, and if not, why and what to do."""
    provider = providers.get(provider_name)
    if provider is None:
        return _Check(
            provider_name,
            model,
            Reason.provider_missing,
            f"provider {provider_name!r} does not exist",
            f"declare provider {provider_name} or route {task} to a declared provider",
        )
    if not provider.enabled:
        return _Check(
            provider_name,
            model,
            Reason.provider_disabled,
            f"provider {provider_name!r} is disabled",
            f"set `enabled: true` on providers.{provider_name}, or route {task} elsewhere",
        )
    report = reports.get(provider_name)
    if report is None:
        return _Check(
            provider_name,
            model,
            Reason.timeout,
            "no probe result for this provider",
            "run `reconciler status --probe`",
        )
    if report.reason is not None:
        remedy = remedy_for(report.reason, provider, task, model, report.detail)
        return _Check(provider_name, model, report.reason, report.detail, remedy, report)
    return _model_check(task, provider, model, report)


def _model_check(task: str, provider: ProviderView, model: str, report: ProbeReport) -> _Check:
    name = provider.name
    found = model_matches(model, report.models)
    if found is None:
        known = ", ".join(sorted(report.models)[:8]) or "none"
        detail = f"{name} does not serve {model!r} (it has: {known})"
        remedy = remedy_for(Reason.model_missing, provider, task, model, detail)
        return _Check(name, model, Reason.model_missing, detail, remedy, report)
    capabilities = report.capabilities.get(found)
    if capabilities is not None and CHAT_CAPABILITY not in capabilities:
        listed = ", ".join(sorted(capabilities)) or "none"
        detail = f"{model} cannot chat on {name} (capabilities: {listed})"
        remedy = remedy_for(Reason.capability_mismatch, provider, task, model, detail)
        return _Check(name, model, Reason.capability_mismatch, detail, remedy, report)
    warm = None if report.loaded is None else found in report.loaded
    return _Check(name, model, None, "", "", report, warm)


def remedy_for(reason: Reason, provider: ProviderView, task: str, model: str, detail: str) -> str:
    """What a person should do: the provider type's own remedy, else the generic one."""
    context = RemedyContext(
        provider.name, provider.type, provider.base_url, provider.secret_envs, task, model, detail
    )
    own = provider.remedies(reason, context) if provider.remedies is not None else None
    return own or generic_remedy(reason, context)


def generic_remedy(reason: Reason, context: RemedyContext) -> str:
    """The remedy any provider type shares, when its driver names none of its own."""
    name, url, task, model = context.provider, context.base_url, context.task, context.model
    match reason:
        case Reason.secret_missing:
            envs = " and ".join(context.secret_envs) or "the referenced variable"
            return f"export {envs} where reconciler runs"
        case Reason.provider_unreachable:
            return f"start the server at {url}, or fix providers.{name}.endpoint.base_url"
        case Reason.timeout:
            return f"check the load on {url}, or raise providers.{name}.endpoint.probe_timeout_s"
        case Reason.auth_failed:
            envs = " or ".join(context.secret_envs)
            where = f"the key in {envs}" if envs else f"providers.{name}.endpoint.api_key"
            return f"check {where}: the server refused it"
        case Reason.server_error:
            return f"see the logs of the server at {url}"
        case Reason.loading:
            return f"wait: {name} is loading a model"
        case Reason.model_missing:
            return f"serve {model} on {name}, or fix routes.{task}.model"
        case Reason.capability_mismatch:
            return f"route {task} to a chat model; {model} is not one"
        case Reason.bad_response if not url:  # the stored row itself cannot be used
            return (
                f"install the package that provides provider type {context.type!r}, or run "
                "`reconciler apply` to rewrite the row"
            )
        case Reason.bad_response:
            return f"check that {url} is a {context.type} server and the base_url path is right"
        case _:
            return context.detail


def verdict_for(
    route: RouteView,
    providers: Mapping[str, ProviderView],
    reports: Mapping[str, ProbeReport],
    generation: int,
    now: datetime,
) -> Verdict:
    """One task's verdict: ready, degraded (a fallback serves) or not ready."""
    base = Verdict(
        task=route.task,
        status=Status.not_ready,
        reason=None,
        remedy="",
        detail="",
        provider=route.provider,
        model=route.model,
        required=route.required,
        generation=generation,
        checked_at=now,
    )
    if not route.enabled:
        return replace(
            base,
            reason=Reason.route_disabled,
            detail=f"route {route.task} is disabled",
            remedy=f"set `enabled: true` on routes.{route.task}",
        )
    primary = check_target(route.task, route.provider, route.model, providers, reports)
    measured = _measured(base, primary)
    if primary.reason is None:
        return replace(measured, status=Status.ready, served_by=f"{route.provider}/{route.model}")
    for provider, model in route.fallbacks:
        fallback = check_target(route.task, provider, model, providers, reports)
        if fallback.reason is None:
            return replace(
                measured,
                status=Status.degraded,
                reason=primary.reason,
                detail=f"{primary.detail}; serving with fallback {provider}/{model}",
                remedy=primary.remedy,
                served_by=f"{provider}/{model}",
            )
    extra = f" (and {len(route.fallbacks)} fallback(s) unavailable)" if route.fallbacks else ""
    return replace(
        measured, reason=primary.reason, detail=primary.detail + extra, remedy=primary.remedy
    )


def _measured(base: Verdict, check: _Check) -> Verdict:
    report = check.report
    if report is None:
        return base
    return replace(
        base,
        checked_at=report.checked_at,
        latency_ms=report.latency_ms,
        provider_version=report.version,
        warm=check.warm,
    )


def no_route(task: str, generation: int, now: datetime, required: bool = False) -> Verdict:
    """The verdict for a task that has work (or is expected) but no route."""
    return Verdict(
        task=task,
        status=Status.not_ready,
        reason=Reason.no_route,
        remedy=f"add a route for {task} under `routes:` in the config files",
        detail=f"no route for task {task}",
        provider="",
        model="",
        required=required,
        generation=generation,
        checked_at=now,
    )


def verdicts(
    routes: Iterable[RouteView],
    providers: Iterable[ProviderView],
    reports: Mapping[str, ProbeReport],
    generation: int,
    now: datetime,
) -> list[Verdict]:
    """Every task's verdict, sorted by task."""
    by_name = {p.name: p for p in providers}
    return sorted(
        (verdict_for(route, by_name, reports, generation, now) for route in routes),
        key=lambda v: v.task,
    )


def targets_to_probe(
    routes: Iterable[RouteView], providers: Iterable[ProviderView]
) -> dict[str, set[str]]:
    """The enabled providers used by an enabled route, with the models asked of each."""
    enabled = {p.name for p in providers if p.enabled}
    wanted: dict[str, set[str]] = {}
    for route in routes:
        if not route.enabled:
            continue
        for provider, model in ((route.provider, route.model), *route.fallbacks):
            if provider in enabled:
                wanted.setdefault(provider, set()).add(model)
    return wanted


def all_required_servable(found: Iterable[Verdict]) -> bool:
    """True when every required task is ready or degraded: exit 0 of `reconciler status`."""
    return all(v.status in SERVABLE for v in found if v.required)
