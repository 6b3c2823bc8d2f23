"""The verdict function: routes, providers and probe reports in; status, reason and remedy out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reconciler.adapters.providers.ollama import OllamaDriver
from reconciler.core.readiness import (
    ProbeReport,
    ProviderView,
    Reason,
    RouteView,
    Status,
    all_required_servable,
    model_matches,
    no_route,
    targets_to_probe,
    verdicts,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
LOCAL = ProviderView(
    "local", "ollama", True, "http://127.0.0.1:11434", remedies=OllamaDriver().remedy
)
CLOUD = ProviderView("cloud", "openai_compatible", True, "https://api.example.com/v1", ("KEY",))


def healthy(name: str, *models: str, **fields: object) -> ProbeReport:
    return ProbeReport(name, NOW, 12.5, models=frozenset(models), version="0.6.2", **fields)  # type: ignore[arg-type]


def failed(name: str, reason: Reason, detail: str = "it failed") -> ProbeReport:
    return ProbeReport(name, NOW, 2000.0, reason=reason, detail=detail)


def route(**fields: object) -> RouteView:
    values: dict[str, object] = {
        "task": "scoring",
        "provider": "local",
        "model": "llama3.1:8b",
        "enabled": True,
        "required": True,
        "fallbacks": (("cloud", "gpt-4o-mini"),),
    }
    return RouteView(**(values | fields))  # type: ignore[arg-type]


def test_a_route_whose_model_the_provider_has_is_ready() -> None:
    [verdict] = verdicts(
        [route()], [LOCAL, CLOUD], {"local": healthy("local", "llama3.1:8b")}, 7, NOW
    )
    assert verdict.status is Status.ready
    assert verdict.reason is None
    assert verdict.served_by == "local/llama3.1:8b"
    assert (verdict.generation, verdict.provider_version, verdict.latency_ms) == (7, "0.6.2", 12.5)


def test_a_model_without_a_tag_matches_its_latest_tag_and_back() -> None:
    assert model_matches("qwen2.5", ["qwen2.5:latest"]) == "qwen2.5:latest"
    assert model_matches("qwen2.5:latest", ["qwen2.5"]) == "qwen2.5"
    assert model_matches("qwen2.5:7b", ["qwen2.5:latest"]) is None


def test_primary_down_and_a_fallback_ready_is_degraded_with_the_primary_reason() -> None:
    reports = {
        "local": failed("local", Reason.provider_unreachable, "connection refused"),
        "cloud": healthy("cloud", "gpt-4o-mini"),
    }
    [verdict] = verdicts([route()], [LOCAL, CLOUD], reports, 1, NOW)
    assert verdict.status is Status.degraded
    assert verdict.reason is Reason.provider_unreachable
    assert verdict.served_by == "cloud/gpt-4o-mini"
    assert "serving with fallback cloud/gpt-4o-mini" in verdict.detail
    assert "start the server at http://127.0.0.1:11434" in verdict.remedy


def test_nothing_to_serve_is_not_ready_and_says_the_fallbacks_failed_too() -> None:
    reports = {
        "local": healthy("local", "other:1b"),
        "cloud": failed("cloud", Reason.auth_failed, "/models answered 401"),
    }
    [verdict] = verdicts([route()], [LOCAL, CLOUD], reports, 1, NOW)
    assert verdict.status is Status.not_ready
    assert verdict.reason is Reason.model_missing
    assert verdict.remedy == "ollama pull llama3.1:8b on local, or fix routes.scoring.model"
    assert "(and 1 fallback(s) unavailable)" in verdict.detail
    assert "it has: other:1b" in verdict.detail


@pytest.mark.parametrize(
    ("reason", "remedy"),
    [
        (Reason.secret_missing, "export KEY where reconciler runs"),
        (Reason.provider_unreachable, "start the server at https://api.example.com/v1"),
        (Reason.timeout, "raise providers.cloud.endpoint.probe_timeout_s"),
        (Reason.auth_failed, "check the key in KEY: the server refused it"),
        (Reason.server_error, "see the logs of the server at https://api.example.com/v1"),
        (Reason.loading, "wait: cloud is loading a model"),
        (Reason.bad_response, "is a openai_compatible server"),
    ],
)
def test_every_provider_failure_has_a_remedy_a_person_can_act_on(
    reason: Reason, remedy: str
) -> None:
    only_cloud = route(provider="cloud", model="gpt-4o-mini", fallbacks=())
    [verdict] = verdicts([only_cloud], [LOCAL, CLOUD], {"cloud": failed("cloud", reason)}, 1, NOW)
    assert (verdict.status, verdict.reason) == (Status.not_ready, reason)
    assert remedy in verdict.remedy


def test_an_embedding_model_routed_to_a_chat_task_is_a_capability_mismatch() -> None:
    report = healthy(
        "local",
        "nomic-embed-text:latest",
        capabilities={"nomic-embed-text:latest": frozenset({"embedding"})},
    )
    embedding = route(model="nomic-embed-text", fallbacks=())
    [verdict] = verdicts([embedding], [LOCAL], {"local": report}, 1, NOW)
    assert verdict.reason is Reason.capability_mismatch
    assert "capabilities: embedding" in verdict.detail
    assert "route scoring to a chat model" in verdict.remedy


def test_unknown_capabilities_do_not_block_a_model() -> None:
    [verdict] = verdicts(
        [route(fallbacks=())], [LOCAL], {"local": healthy("local", "llama3.1:8b")}, 1, NOW
    )
    assert verdict.status is Status.ready


def test_warm_or_cold_comes_from_the_loaded_models() -> None:
    warm = healthy("local", "llama3.1:8b", loaded=frozenset({"llama3.1:8b"}))
    cold = healthy("local", "llama3.1:8b", loaded=frozenset())
    assert verdicts([route()], [LOCAL], {"local": warm}, 1, NOW)[0].warm is True
    assert verdicts([route()], [LOCAL], {"local": cold}, 1, NOW)[0].warm is False


def test_a_disabled_route_or_provider_and_a_missing_provider_are_named() -> None:
    disabled_provider = ProviderView("local", "ollama", False, "http://127.0.0.1:11434")
    found = verdicts(
        [
            route(task="a", enabled=False),
            route(task="b", fallbacks=()),
            route(task="c", provider="gone", fallbacks=()),
        ],
        [disabled_provider],
        {},
        1,
        NOW,
    )
    assert [(v.task, v.reason) for v in found] == [
        ("a", Reason.route_disabled),
        ("b", Reason.provider_disabled),
        ("c", Reason.provider_missing),
    ]
    assert found[0].remedy == "set `enabled: true` on routes.a"
    assert "set `enabled: true` on providers.local" in found[1].remedy
    assert "declare provider gone" in found[2].remedy


def test_a_task_without_a_route_is_not_ready_with_no_route() -> None:
    verdict = no_route("tagging", 3, NOW, required=True)
    assert (verdict.status, verdict.reason) == (Status.not_ready, Reason.no_route)
    assert "add a route for tagging" in verdict.remedy
    assert not all_required_servable([verdict])


def test_a_verdict_goes_stale_when_old_or_from_an_older_generation() -> None:
    [verdict] = verdicts([route()], [LOCAL], {"local": healthy("local", "llama3.1:8b")}, 4, NOW)
    assert verdict.aged(NOW + timedelta(seconds=30), timedelta(seconds=90), 4) is verdict
    old = verdict.aged(NOW + timedelta(seconds=91), timedelta(seconds=90), 4)
    assert old.status is Status.stale
    assert old.detail == "last checked 91s ago (ready); no check since"
    behind = verdict.aged(NOW, timedelta(seconds=90), 5)
    assert behind.status is Status.stale
    assert "generation 4, now 5" in behind.detail
    assert not all_required_servable([old])


def test_only_required_tasks_decide_overall_readiness() -> None:
    reports = {"local": failed("local", Reason.timeout)}
    found = verdicts([route(required=False, fallbacks=())], [LOCAL], reports, 1, NOW)
    assert found[0].status is Status.not_ready
    assert all_required_servable(found)


def test_each_provider_in_use_is_probed_once_with_every_model_asked_of_it() -> None:
    routes = [
        route(task="a"),
        route(task="b", model="qwen2.5:7b", fallbacks=(("cloud", "gpt-4o-mini"),)),
        route(task="c", provider="cloud", model="unused", enabled=False),
    ]
    wanted = targets_to_probe(routes, [LOCAL, CLOUD])
    assert wanted == {"local": {"llama3.1:8b", "qwen2.5:7b"}, "cloud": {"gpt-4o-mini"}}
