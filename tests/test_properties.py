"""Properties of loading, exporting and planning, checked on generated inputs (Hypothesis)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reconciler.adapters.export import dump_yaml, export_documents
from reconciler.core.config import ConfigLoader, DesiredState
from reconciler.core.plan import MANAGED, Observed, desired_items, essence_hash, make_plan
from reconciler.core.registry import ProviderRegistry
from reconciler.core.spec import ProviderSpec, RouteSpec
from reconciler.core.yaml_problems import YamlProblems
from reconciler.core.yamldoc import parse_document
from reconciler.errors import ConfigInvalid, Problem
from tests.conftest import ROOT

REGISTRY = ProviderRegistry()
EXAMPLES = {path.name: path.read_bytes() for path in sorted((ROOT / "config").glob("*.yaml"))}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- inputs that are mostly not valid --------------------------------------------------------

YAML_CHARS = ":-?,[]{}#&*!|>'\"%@`~\\. \t\n\r0123456789abcxyzNOnoy\u00e9\u2028\ufeff\x00\x07"
yamlish_text = st.text(alphabet=YAML_CHARS, max_size=200)


@st.composite
def mutated_example(draw: st.DrawFn) -> tuple[str, bytes]:
    """One of the example files with a few bytes deleted, inserted, replaced or lines shuffled."""
    name = draw(st.sampled_from(sorted(EXAMPLES)))
    data = bytearray(EXAMPLES[name])
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["delete", "insert", "replace", "swap-lines", "indent"]))
        if op == "delete":
            del data[at : at + draw(st.integers(1, 12))]
        elif op == "insert":
            data[at:at] = draw(st.binary(max_size=6) | yamlish_text.map(str.encode))
        elif op == "replace" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == "swap-lines":
            lines = bytes(data).split(b"\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\n".join(lines))
        elif op == "indent":
            data[at:at] = b" " * draw(st.integers(1, 3))
    return name, bytes(data)


def assert_located(problems: list[Problem], names: set[str]) -> None:
    assert problems, "an error must carry at least one problem"
    for problem in problems:
        assert problem.file in names, problem
        assert problem.line >= 1, problem
        assert problem.column >= 1, problem
        assert problem.message, problem


def load_or_problems(files: list[tuple[str, bytes]]) -> DesiredState | None:
    """Load `files`; a `ConfigInvalid` is fine when each problem names its place, nothing else."""
    try:
        return ConfigLoader().load(files)
    except ConfigInvalid as exc:
        assert_located(exc.problems, {name for name, _ in files})
        return None


def parse_or_problems(name: str, data: bytes) -> None:
    try:
        parse_document(name, data)
    except YamlProblems as exc:
        assert_located(exc.problems, {name})


@FUZZ
@given(data=st.binary(max_size=300))
@example(data=b"x: " + b"1" * 5000)  # more digits than int() converts
@example(data=b"version: 1\nroutes: {t: {provider: p, model: m, params: {x: 1e999}}}")
@example(data=b"\xef\xbb\xbf\xef\xbb\xbfa: 1")
@example(data=b"[" * 600)
def test_arbitrary_bytes_are_loaded_or_rejected_with_located_problems(data: bytes) -> None:
    parse_or_problems("fuzz.yaml", data)
    load_or_problems([("fuzz.yaml", data), *EXAMPLES.items()])


@FUZZ
@given(text=st.text(max_size=300) | yamlish_text)
@example(text="a: !!python/object/apply:os.system [echo hi]")
@example(text="a: &x [1]\nb: *x")
@example(text="version: 1\n---\nversion: 1\n")
@example(text="version: 1\nproviders:\n\t p: {}\n")
def test_arbitrary_text_is_loaded_or_rejected_with_located_problems(text: str) -> None:
    data = text.encode("utf-8", errors="surrogatepass")
    parse_or_problems("fuzz.yaml", data)
    load_or_problems([("fuzz.yaml", data)])


@FUZZ
@given(mutated=mutated_example())
def test_mutated_example_files_are_loaded_or_rejected_with_located_problems(
    mutated: tuple[str, bytes],
) -> None:
    name, data = mutated
    parse_or_problems(name, data)
    load_or_problems(sorted({**EXAMPLES, name: data}.items()))


# --- valid configs ---------------------------------------------------------------------------

names = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,15}", fullmatch=True)
env_names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,11}", fullmatch=True)
secret_refs = st.builds(lambda env: {"env": env}, env_names)
YAML11_LOOKALIKES = ["no", "on", "yes", "off", "1.10", "010", "0x1F", "22:22", "1e3", ".inf"]
# No string of a valid config holds a C0 control character or DEL. NEL, LS and PS are left out
# too: a plain YAML scalar folds them, and a generated name would change meaning.
CONTROLS = "".join(map(chr, range(0x20))) + "\x7f"
texts = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters=CONTROLS + "\x85\u2028\u2029"),
    min_size=1,
    max_size=30,
)
model_names = st.sampled_from(["llama3.1:8b", "qwen2.5:7b", *YAML11_LOOKALIKES]) | texts
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
    | st.sampled_from(YAML11_LOOKALIKES),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
params = st.dictionaries(
    st.sampled_from(["temperature", "num_ctx", "x.y", "1"]) | texts, json_values, max_size=4
)
timeouts = st.integers(1, 300) | st.floats(0.001, 300)
URLS = [
    "http://127.0.0.1:11434",
    "https://openrouter.ai/api/v1",
    "http://10.0.0.5:8000/v1",
    "http://localhost",
    "http://[::1]:8080",
    "https://llm.example.com/a/b",
]


def optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A mapping holding any subset of `fields`."""
    return st.fixed_dictionaries({}, optional=fields)


endpoints = st.builds(
    lambda required, extra: {**required, **extra},
    st.fixed_dictionaries({"base_url": st.sampled_from(URLS)}),
    optional(
        timeout_s=timeouts,
        connect_timeout_s=timeouts,
        probe_timeout_s=st.floats(0.1, 60),
        headers=st.dictionaries(
            st.from_regex(r"X-[A-Za-z0-9-]{1,10}", fullmatch=True), texts | secret_refs, max_size=3
        )
        | st.just({"Authorization": {"env": "TOKEN"}}),
        api_key=secret_refs,
        verify_tls=st.booleans(),
    ),
)
common = {
    "enabled": st.booleans(),
    "protect": st.booleans(),
    "max_concurrency": st.integers(1, 1024),
}
providers = st.builds(
    lambda head, endpoint, extra: {**head, "endpoint": endpoint, **extra},
    st.fixed_dictionaries({"type": st.just("ollama")}),
    endpoints,
    optional(**common, keep_alive=st.sampled_from(["30s", "5m", "1h", "0", "-1", "1.5h", "250ms"])),
) | st.builds(
    lambda head, endpoint, extra: {**head, "endpoint": endpoint, **extra},
    st.fixed_dictionaries({"type": st.just("openai_compatible")}),
    endpoints,
    optional(**common, health_path=st.sampled_from(["/health", "/v1/models", "/"])),
)


@st.composite
def configs(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    """`{"providers": {...}, "routes": {...}}`, every route naming declared providers."""
    declared = draw(st.dictionaries(names, providers, min_size=1, max_size=4))
    provider_names = st.sampled_from(sorted(declared))
    routes = {}
    for task in draw(st.lists(names, unique=True, max_size=5)):
        route = {"provider": draw(provider_names), "model": draw(model_names)}
        route |= draw(
            optional(enabled=st.booleans(), required=st.booleans(), protect=st.booleans())
        )
        if draw(st.booleans()):
            route["params"] = draw(params)
        tried = {(route["provider"], route["model"])}
        fallbacks = []
        for _ in range(draw(st.integers(0, 3))):
            fallback = {"provider": draw(provider_names), "model": draw(model_names)}
            if (fallback["provider"], fallback["model"]) in tried:
                continue
            tried.add((fallback["provider"], fallback["model"]))
            fallback |= draw(optional(params=params))
            fallbacks.append(fallback)
        if fallbacks or draw(st.booleans()):
            route["fallbacks"] = fallbacks
        routes[task] = route
    return {"providers": declared, "routes": routes}


def as_files(config: dict[str, dict[str, Any]], split: bool) -> list[tuple[str, bytes]]:
    """The config as YAML files; copied first, as PyYAML writes an object seen twice as an alias."""
    config = json.loads(json.dumps(config))
    if not split:
        return [("all.yaml", dump_yaml({"version": 1, **config}).encode())]
    return [
        (f"{section}.yaml", dump_yaml({"version": 1, section: body}).encode())
        for section, body in config.items()
    ]


def specs(state: DesiredState) -> tuple[dict[str, ProviderSpec], dict[str, RouteSpec]]:
    return (
        {name: p.spec for name, p in state.providers.items()},
        {task: r.spec for task, r in state.routes.items()},
    )


def stored(state: DesiredState) -> list[Observed]:
    """What an apply of `state` leaves in the database: each essence as JSON, managed, hashed."""
    rows = []
    for item in desired_items(state):
        essence = json.loads(json.dumps(item.essence, allow_nan=False))
        rows.append(Observed(item.kind, item.key, essence, MANAGED, essence_hash(essence)))
    return rows


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs(), split=st.booleans())
def test_generated_valid_configs_load_export_reload_and_plan_to_nothing(
    config: dict[str, dict[str, Any]], split: bool
) -> None:
    try:
        state = ConfigLoader().load(as_files(config, split))
    except ConfigInvalid as exc:
        pytest.fail("\n".join(f"{p.path}: {p.message} ({p.hint})" for p in exc.problems))
    providers, routes = specs(state)
    assert providers == {
        name: REGISTRY.get(body["type"]).config_model.model_validate(body)  # type: ignore[union-attr]
        for name, body in config["providers"].items()
    }
    assert routes == {
        task: RouteSpec.model_validate(body) for task, body in config["routes"].items()
    }

    observed = stored(state)
    exported = export_documents(observed, REGISTRY)
    reloaded = ConfigLoader().load([(n, dump_yaml(d).encode()) for n, d in exported.items()])
    assert specs(reloaded) == (providers, routes)

    for desired in (state, reloaded):
        plan = make_plan(desired_items(desired), observed, desired.digest)
        assert plan.actions == ()
        assert plan.unchanged == len(observed)
        assert plan.refusals == ()


SECRET = "sk-live-do-not-echo-0123456789"
TYPOS = ["modle", "enabeld", "api_kye", "base_ulr", "timeout"]
# Copied on each draw: the edits below mutate what they put in place.
wrong_values = (json_values | st.sampled_from(["http://[::1", {"env": "1BAD"}])).map(copy.deepcopy)
leaked_secrets = st.sampled_from(
    [SECRET, {"env": SECRET}, {"env": "OK", "value": SECRET}, [SECRET], {SECRET: SECRET}]
).map(copy.deepcopy)


def places(tree: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value below `tree` (keys of mappings, indexes of lists)."""
    if isinstance(tree, dict):
        children = list(tree.items())
    elif isinstance(tree, list):
        children = list(enumerate(tree))
    else:
        children = []
    found = [path] if path else []
    for key, value in children:
        found += places(value, (*path, key))
    return found


@st.composite
def broken_configs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid config with literal secrets, replaced values, dropped keys or unknown keys."""
    config: dict[str, Any] = json.loads(json.dumps({"version": 1, **draw(configs())}))
    for name in draw(st.lists(st.sampled_from(sorted(config["providers"])), max_size=2)):
        endpoint = config["providers"][name]["endpoint"]
        if draw(st.booleans()):
            endpoint["api_key"] = draw(leaked_secrets)
        else:
            header = draw(st.sampled_from(["Authorization", "X-Api-Key"]))
            endpoint["headers"] = {header: draw(leaked_secrets)}
    for _ in range(draw(st.integers(0, 3))):
        paths = places(config)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = config
        for step in path[:-1]:
            parent = parent[step]
        op = draw(st.sampled_from(["replace", "drop", "add"]))
        if op == "replace":
            parent[path[-1]] = draw(wrong_values)
        elif op == "drop" and isinstance(parent, dict):
            del parent[path[-1]]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(texts | st.sampled_from(TYPOS))] = draw(wrong_values)
    return config


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=broken_configs())
def test_broken_configs_are_rejected_with_located_problems_that_never_echo_a_secret(
    config: dict[str, Any],
) -> None:
    data = dump_yaml(config).encode()
    try:
        ConfigLoader().load([("broken.yaml", data)])
    except ConfigInvalid as exc:
        assert_located(exc.problems, {"broken.yaml"})
        for problem in exc.problems:
            assert SECRET not in f"{problem.message} {problem.hint} {problem.path}", problem


# --- YAML 1.1 look-alikes --------------------------------------------------------------------

ROUTE_WITH_MODEL = """\
version: 1
providers:
  p: {{type: ollama, endpoint: {{base_url: "http://127.0.0.1:11434"}}}}
routes:
  t:
    provider: p
    model: {model}
    fallbacks:
      - provider: p
        model: {model}-fallback
"""


def check_kept_or_quote_asked(written: str) -> None:
    data = ROUTE_WITH_MODEL.format(model=written).encode()
    try:
        state = ConfigLoader().load([("routes.yaml", data)])
    except ConfigInvalid as exc:
        problems = [p for p in exc.problems if p.path == "routes.t.model"]
        assert problems, exc.problems
        assert all("quote" in f"{p.message} {p.hint}" for p in problems), problems
        assert (problems[0].line, problems[0].column) == (7, 12)
        return
    route = state.routes["t"].spec
    assert type(route.model) is str
    assert route.model == written
    assert route.fallbacks[0].model == f"{written}-fallback"


@pytest.mark.parametrize("written", YAML11_LOOKALIKES)
def test_a_yaml11_lookalike_model_stays_the_string_written_or_asks_for_quotes(
    written: str,
) -> None:
    check_kept_or_quote_asked(written)


yaml11_scalars = (
    st.sampled_from(
        [
            *("y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON"),
            *("off", "Off", "OFF", "true", "True", "TRUE", "false", "False", "FALSE"),
            *("~", "null", "Null", "NULL", ".inf", "-.inf", "+.inf", ".Inf", ".NaN", ".nan"),
            *("1_000", "0b101", "0o17", "-0", "+12", "1.", ".5", "-1.5e-3", "190:20:30", "0x_1F"),
            *("2001-12-14", "2001-12-14t21:59:43.10-05:00", "=", "<<"),
        ]
    )
    | st.from_regex(r"[-+]?[0-9]{1,3}(:[0-5][0-9]){1,2}", fullmatch=True)
    | st.from_regex(r"[-+]?0[0-7_]{1,4}", fullmatch=True)
    | st.from_regex(r"[-+]?0x[0-9a-fA-F_]{1,4}", fullmatch=True)
    | st.from_regex(r"[-+]?[0-9_]{1,3}\.[0-9_]{0,3}([eE][-+]?[0-9]{1,2})?", fullmatch=True)
)


@settings(max_examples=200, deadline=None)
@given(written=yaml11_scalars)
def test_any_yaml11_number_or_boolean_lookalike_is_never_silently_retyped(written: str) -> None:
    check_kept_or_quote_asked(written)
