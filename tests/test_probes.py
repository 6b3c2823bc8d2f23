"""Probes against real HTTP servers on 127.0.0.1, through the code path production uses."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

from reconciler.adapters.providers.egress import StaticResolver, using_resolver
from reconciler.adapters.providers.probe import Prober, Target, probe_once
from reconciler.core.readiness import ProbeReport, Reason
from reconciler.core.spec import OllamaProvider, OpenAICompatibleProvider, ProviderSpec
from tests.fakeprovider import INFERENCE_PATHS, OPENAI, FakeModel, FakeServer

SECRET = "sk-planted-7f3a9c1e-never-shown"
LLAMA = FakeModel("llama3.1:8b", loaded=True)


def spec(
    base_url: str, kind: str = "ollama", probe_timeout_s: float = 1.0, **extra: Any
) -> ProviderSpec:
    endpoint = {
        "base_url": base_url,
        "probe_timeout_s": probe_timeout_s,
        **extra.pop("endpoint", {}),
    }
    model = OllamaProvider if kind == "ollama" else OpenAICompatibleProvider
    return model.model_validate({"type": model.type_name, "endpoint": endpoint, **extra})


def probe(*targets: Target, env: dict[str, str] | None = None) -> dict[str, ProbeReport]:
    return asyncio.run(probe_once(targets, env=env or {}))


def target(name: str, provider: ProviderSpec, *models: str) -> Target:
    return Target(name, provider, frozenset(models or ("llama3.1:8b",)))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_an_ollama_probe_reads_version_models_capabilities_and_what_is_loaded(
    fake: FakeServer,
) -> None:
    url = fake.add("local", models=[LLAMA, FakeModel("nomic-embed-text:latest", ("embedding",))])
    report = probe(target("local", spec(url), "llama3.1:8b", "nomic-embed-text"))["local"]
    assert report.ok, report.detail
    assert report.version == "0.6.2"
    assert report.models == {"llama3.1:8b", "nomic-embed-text:latest"}
    assert report.capabilities == {
        "llama3.1:8b": {"completion"},
        "nomic-embed-text:latest": {"embedding"},
    }
    assert report.loaded == {"llama3.1:8b"}


def test_probes_never_run_inference(fake: FakeServer) -> None:
    ollama = fake.add("local", models=[LLAMA])
    openai = fake.add("cloud", kind=OPENAI, models=[FakeModel("gpt-4o-mini")])
    probe(
        target("local", spec(ollama)),
        target("cloud", spec(openai, "openai_compatible", health_path="/health"), "gpt-4o-mini"),
    )
    assert set(fake.paths("local")) == {"/api/version", "/api/tags", "/api/ps", "/api/show"}
    assert fake.paths("cloud") == ["/health", "/v1/models"]
    assert not INFERENCE_PATHS & {r.path for r in fake.requests}


def test_an_older_ollama_without_capabilities_or_ps_is_still_ready(fake: FakeServer) -> None:
    url = fake.add("old", models=[LLAMA], report_capabilities=False, has_ps=False)
    report = probe(target("old", spec(url)))["old"]
    assert report.ok
    assert report.capabilities == {}
    assert report.loaded is None


def test_the_api_key_is_read_from_the_environment_and_sent_as_a_bearer_token(
    fake: FakeServer,
) -> None:
    url = fake.add("cloud", kind=OPENAI, models=[FakeModel("m")], api_key=SECRET)
    provider = spec(url, "openai_compatible", endpoint={"api_key": {"env": "CLOUD_KEY"}})
    report = probe(target("cloud", provider, "m"), env={"CLOUD_KEY": SECRET})["cloud"]
    assert report.ok
    assert fake.requests[-1].headers["authorization"] == f"Bearer {SECRET}"


def failure(
    fake: FakeServer, kind: str = "ollama", env: dict[str, str] | None = None, **behaviour: Any
) -> ProbeReport:
    url = fake.add("p", kind=OPENAI if kind != "ollama" else "ollama", models=[LLAMA], **behaviour)
    extra = {"endpoint": {"api_key": {"env": "CLOUD_KEY"}}} if "api_key" in behaviour else {}
    return probe(target("p", spec(url, kind, **extra)), env=env)["p"]


@pytest.mark.parametrize(
    ("kind", "behaviour", "env", "reason", "detail"),
    [
        ("openai_compatible", {"api_key": SECRET}, {}, Reason.secret_missing, "CLOUD_KEY not set"),
        (
            "openai_compatible",
            {"api_key": SECRET},
            {"CLOUD_KEY": "wrong"},
            Reason.auth_failed,
            "401",
        ),
        ("ollama", {"status": 500}, None, Reason.server_error, "answered 500"),
        ("openai_compatible", {"loading": True}, None, Reason.loading, "loading model"),
        ("ollama", {"not_json": True}, None, Reason.bad_response, ": not valid JSON"),
        (
            "ollama",
            {"huge": True},
            None,
            Reason.bad_response,
            "sent more than 4096 KiB; stopped reading",
        ),
        ("ollama", {"hang": True}, None, Reason.timeout, "1 s probe deadline"),
        ("ollama", {"trickle": True}, None, Reason.timeout, "1 s probe deadline"),
        ("ollama", {"delay_s": 3.0}, None, Reason.timeout, "1 s probe deadline"),
        (
            "ollama",
            {"redirect_to": "http://127.0.0.1:9/"},
            None,
            Reason.bad_response,
            "not followed",
        ),
        ("ollama", {"status": 404}, None, Reason.bad_response, "answered 404"),
    ],
    ids=[
        "secret-missing",
        "auth-failed",
        "server-error",
        "loading",
        "not-json",
        "ten-megabytes",
        "never-answers",
        "trickle",
        "slow",
        "redirect",
        "not-an-ollama",
    ],
)
def test_each_failure_maps_to_its_reason(
    fake: FakeServer,
    kind: str,
    behaviour: dict[str, Any],
    env: dict[str, str] | None,
    reason: Reason,
    detail: str,
) -> None:
    report = failure(fake, kind, env, **behaviour)
    assert report.reason is reason, report.detail
    assert detail in report.detail
    assert SECRET not in report.detail


def test_a_refused_connection_and_a_failed_dns_lookup_are_unreachable() -> None:
    with using_resolver(StaticResolver({})):  # no name resolves; the machine's DNS is not asked
        reports = probe(
            target("refused", spec(f"http://127.0.0.1:{closed_port()}")),
            target("dns", spec("http://no-such-host.invalid:11434")),
        )
    assert reports["refused"].reason is Reason.provider_unreachable
    assert "refused" in reports["refused"].detail
    assert reports["dns"].reason is Reason.provider_unreachable
    assert reports["dns"].detail == "DNS lookup of no-such-host.invalid failed"


def test_one_dead_provider_never_delays_the_others(fake: FakeServer) -> None:
    healthy = [fake.add(f"ok{i}", models=[LLAMA]) for i in range(20)]
    hanging = [fake.add(f"dead{i}", hang=True) for i in range(5)]
    targets = [target(f"ok{i}", spec(url)) for i, url in enumerate(healthy)]
    # The dead ones' deadline is far beyond what a healthy probe takes even on a loaded machine
    # (the suite runs 4 wide on 2 cores), so "not delayed" cannot be mistaken for "slow".
    deadline = 3.0
    targets += [
        target(f"dead{i}", spec(url, probe_timeout_s=deadline)) for i, url in enumerate(hanging)
    ]
    started = time.perf_counter()
    reports = probe(*targets)
    elapsed = time.perf_counter() - started
    assert all(reports[f"ok{i}"].ok for i in range(20))
    assert all(reports[f"dead{i}"].reason is Reason.timeout for i in range(5))
    assert max(reports[f"ok{i}"].latency_ms for i in range(20)) < deadline * 1000 * 0.8
    assert elapsed < deadline + 1.0, f"a round took {elapsed:.2f} s with a {deadline} s deadline"


def test_a_prober_keeps_one_client_per_provider_across_rounds(fake: FakeServer) -> None:
    url = fake.add("local", models=[LLAMA])

    async def two_rounds() -> tuple[object, object]:
        prober = Prober(env={})
        try:
            await prober.probe_all([target("local", spec(url))])
            first = prober._clients["local"][1]
            await prober.probe_all([target("local", spec(url))])
            return first, prober._clients["local"][1]
        finally:
            await prober.aclose()

    first, second = asyncio.run(two_rounds())
    assert first is second


def test_a_steady_prober_reads_only_tags_and_ps_and_relearns_after_a_failure(
    fake: FakeServer,
) -> None:
    url = fake.add("local", models=[LLAMA])
    provider = target("local", spec(url))

    async def rounds() -> list[ProbeReport]:
        prober = Prober(env={})
        try:
            found = [(await prober.probe_all([provider]))["local"] for _ in range(2)]
            fake.behaviours["local"].status = 500
            found.append((await prober.probe_all([provider]))["local"])
            fake.behaviours["local"].status = None
            found.append((await prober.probe_all([provider]))["local"])
            return found
        finally:
            await prober.aclose()

    first, second, broken, healed = asyncio.run(rounds())
    assert first.ok and second.ok and healed.ok
    assert broken.reason is Reason.server_error
    assert second.version == "0.6.2"
    assert second.capabilities == {"llama3.1:8b": {"completion"}}
    paths = fake.paths("local")
    assert paths.count("/api/show") == 2  # first round and after the failure, not the second
    assert paths.count("/api/version") == 2  # the same: the broken round failed on /api/tags


def test_a_server_that_compresses_its_answers_is_understood(fake: FakeServer) -> None:
    url = fake.add("cdn", kind=OPENAI, models=[FakeModel("gpt-4o-mini")], gzip=True)
    report = probe(target("cdn", spec(url, "openai_compatible"), "gpt-4o-mini"))["cdn"]
    assert report.ok, report.detail
    assert report.models == {"gpt-4o-mini"}


def test_a_key_that_cannot_be_a_header_is_reported_by_name_never_raised(fake: FakeServer) -> None:
    url = fake.add("cloud", kind=OPENAI, models=[FakeModel("m")], api_key="x")
    provider = spec(url, "openai_compatible", endpoint={"api_key": {"env": "CLOUD_KEY"}})
    for bad in ("sk-caf\u00e9", "sk-a\r\nX-Injected: 1"):
        report = probe(target("cloud", provider, "m"), env={"CLOUD_KEY": bad})["cloud"]
        assert report.reason is Reason.secret_missing
        assert "CLOUD_KEY holds characters an HTTP header cannot carry" in report.detail
        assert bad not in report.detail
    assert fake.paths("cloud") == []
