"""The egress policy: refused when the files load, and again at the transport seam.

The corpus under tests/fixtures/egress/ holds spellings of forbidden destinations (Unicode dots,
numeric forms, IPv6 forms carrying an IPv4 address, metadata names) and allowed ones. Every
forbidden URL is refused by `validate`; then the same URLs, forced past validation, are refused
again by the transport before any connection is made, as are names that resolve to a forbidden
address, through an injected resolver (the machine's DNS is never asked).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.adapters.providers.egress import StaticResolver, using_resolver
from reconciler.adapters.providers.http import ProbeFailure, make_client, request
from reconciler.core.readiness import Reason
from reconciler.core.spec import Endpoint
from reconciler.core.urls import UrlRejected, check_base_url
from tests.conftest import FIXTURES, Result
from tests.fakeprovider import FakeModel, FakeServer

pytestmark = pytest.mark.timeout(60)


def corpus(kind: str) -> list[str]:
    lines = (FIXTURES / "egress" / f"{kind}.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


FORBIDDEN = corpus("forbidden")
ALLOWED = corpus("allowed")


def test_the_corpus_holds_at_least_sixty_forbidden_spellings() -> None:
    assert len(FORBIDDEN) >= 60
    assert len(set(FORBIDDEN)) == len(FORBIDDEN)


@pytest.mark.parametrize("url", FORBIDDEN)
def test_a_forbidden_destination_is_refused_in_every_spelling(url: str) -> None:
    with pytest.raises(UrlRejected) as refused:
        check_base_url(url)
    assert url not in str(refused.value)
    assert refused.value.hint


@pytest.mark.parametrize("url", ALLOWED)
def test_loopback_private_public_and_international_names_are_allowed(url: str) -> None:
    assert check_base_url(url) == url.rstrip("/")


def test_validate_reports_every_forbidden_endpoint_at_its_line(
    cli: Callable[..., Result], write_config: Callable[..., Path]
) -> None:
    providers = "".join(
        f"  p{i}:\n    type: ollama\n    endpoint: {{base_url: {json.dumps(url)}}}\n"
        for i, url in enumerate(FORBIDDEN)
    )
    directory = write_config({"providers.yaml": f"version: 1\nproviders:\n{providers}"})
    result = cli("validate", directory, "--format", "json")
    assert result.code == 1
    problems = json.loads(result.stdout)["errors"]
    by_path = {p["path"]: p for p in problems}
    for i in range(len(FORBIDDEN)):
        problem = by_path[f"providers.p{i}.endpoint.base_url"]
        assert problem["line"] == 5 + 3 * i, problem
        assert problem["code"] == "url_policy", problem
    assert "Traceback" not in result.output


def test_the_unicode_dotted_metadata_address_is_refused_by_validate(
    cli: Callable[..., Result], write_config: Callable[..., Path]
) -> None:
    directory = write_config(
        {
            "p.yaml": "version: 1\nproviders:\n  cloud:\n    type: ollama\n"
            '    endpoint: {base_url: "http://169。254。169。254/"}\n'
        }
    )
    result = cli("validate", directory)
    assert result.code == 1
    assert "link-local" in result.output
    assert "p.yaml:5" in result.output


# --- the transport seam ----------------------------------------------------------------------


def unchecked_endpoint(url: str) -> Endpoint:
    """An endpoint built without validation, as a bug or an edited database row could."""
    return Endpoint.model_construct(base_url=url.rstrip("/"))


def fetch(url: str, resolver: Any = None, path: str = "api/version") -> Any:
    async def go() -> Any:
        client = make_client(unchecked_endpoint(url), max_connections=2, resolver=resolver)
        try:
            async with asyncio.timeout(5):
                return await request(client, "GET", path, {})
        finally:
            await client.aclose()

    return asyncio.run(go())


def _parses(url: str) -> bool:
    try:
        httpx.URL(url)
    except httpx.InvalidURL:
        return False
    return True


@pytest.mark.parametrize("url", [u for u in FORBIDDEN if _parses(u)])
def test_the_transport_refuses_a_forbidden_destination_before_connecting(url: str) -> None:
    resolver = StaticResolver({})  # numeric forms never need it; names are not found
    with pytest.raises(ProbeFailure) as failed:
        fetch(url, resolver)
    assert failed.value.reason is Reason.provider_unreachable
    assert failed.value.detail.startswith("refused to connect"), failed.value.detail
    assert resolver.asked == []
    # the autouse network guard fails the test if anything was sent off loopback


def test_a_name_that_resolves_to_a_metadata_address_is_refused_when_connecting() -> None:
    resolver = StaticResolver({"models.corp.test": ["127.0.0.1", "169.254.169.254"]})
    with pytest.raises(ProbeFailure) as failed:
        fetch("http://models.corp.test:11434", resolver)
    assert failed.value.reason is Reason.provider_unreachable
    assert "models.corp.test resolves to 169.254.169.254" in failed.value.detail
    assert resolver.asked == ["models.corp.test"]


class Rebinding(StaticResolver):
    """Resolves to the fake server first, to the metadata address from then on."""

    def __init__(self, first: str) -> None:
        super().__init__()
        self.first = first

    async def resolve(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        return [self.first] if len(self.asked) == 1 else ["169.254.169.254"]


def test_a_name_that_rebinds_to_a_metadata_address_is_refused_on_the_next_connection(
    fake: FakeServer,
) -> None:
    port = int(fake.add("local", models=[FakeModel("llama3.1:8b")]).rsplit(":", 1)[1])
    resolver = Rebinding("127.0.0.1")

    async def twice() -> tuple[int, ProbeFailure]:
        endpoint = unchecked_endpoint(f"http://rebind.test:{port}")
        first = make_client(endpoint, max_connections=2, resolver=resolver)
        second = make_client(endpoint, max_connections=2, resolver=resolver)
        try:
            answer = await request(first, "GET", "api/version", {})
            try:
                await request(second, "GET", "api/version", {})
            except ProbeFailure as exc:
                return answer.status, exc
            raise AssertionError("the second connection was not refused")
        finally:
            await first.aclose()
            await second.aclose()

    status, refused = asyncio.run(twice())
    assert status == 200
    assert "rebind.test resolves to 169.254.169.254" in refused.detail


def test_new_clients_use_the_injected_resolver_and_never_the_machines_dns() -> None:
    resolver = StaticResolver({})
    with using_resolver(resolver), pytest.raises(ProbeFailure) as failed:
        fetch("http://ollama.corp.test:11434")
    assert resolver.asked == ["ollama.corp.test"]
    assert failed.value.detail == "DNS lookup of ollama.corp.test failed"


def test_redirects_are_never_followed(fake: FakeServer) -> None:
    url = fake.add("moved", redirect_to="http://169.254.169.254/latest/meta-data")
    answer = fetch(url)
    assert answer.status == 302
    assert fake.paths("moved") == ["/api/version"]
