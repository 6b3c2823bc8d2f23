"""A loader kept across loads (the daemon's) gives exactly what a fresh one gives, whatever the
sequence of edits; and after a clean load it cross-checks only the changed files' routes."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.core.config import ConfigLoader, DesiredState
from reconciler.errors import ConfigInvalid, Problem

PROVIDERS = ("alpha", "beta", "gamma")
TASKS = ("t0", "t1", "t2", "t3", "t4", "t5")


def providers_file(names: list[str]) -> bytes:
    lines = ["version: 1", "providers:" if names else "providers: {}"]
    for name in names:
        lines += [f"  {name}:", "    type: ollama", "    endpoint:"]
        lines += ["      base_url: http://127.0.0.1:11434"]
    return ("\n".join(lines) + "\n").encode()


def routes_file(routes: list[tuple[str, str, str | None]]) -> bytes:
    lines = ["version: 1", "routes:" if routes else "routes: {}"]
    for task, provider, fallback in routes:
        lines += [f"  {task}:", f"    provider: {provider}", "    model: llama3.1:8b"]
        if fallback is not None:
            lines += ["    fallbacks:", f"      - {{provider: {fallback}, model: llama3.1:8b}}"]
    return ("\n".join(lines) + "\n").encode()


provider_refs = st.sampled_from([*PROVIDERS, "delta"])  # delta is never declared
route_entries = st.lists(
    st.tuples(st.sampled_from(TASKS), provider_refs, st.none() | provider_refs),
    max_size=4,
    unique_by=lambda r: r[0],
)
file_contents = st.one_of(
    st.lists(st.sampled_from(PROVIDERS), unique=True, max_size=3).map(providers_file),
    route_entries.map(routes_file),
    st.just(b"version: 1\nroutes: [\n"),  # not YAML
)
# Each edit: a file name (a few of them, so that files appear, change, move and go) and its
# content, or None to delete it.
edits = st.lists(
    st.tuples(st.sampled_from(["a.yaml", "b.yaml", "c.yaml", "d.yaml"]), st.none() | file_contents),
    min_size=1,
    max_size=12,
)


def outcome(loader: ConfigLoader, files: list[tuple[str, bytes]]) -> object:
    """What a load gives, in comparable form: the state's items with their sources, or the
    problems."""
    try:
        state = loader.load(files)
    except ConfigInvalid as exc:
        return sorted(exc.problems, key=_problem_key)
    return _comparable(state)


def _problem_key(problem: Problem) -> tuple[str, int, int, str, str]:
    return (problem.file, problem.line, problem.column, problem.code, problem.message)


def _comparable(state: DesiredState) -> object:
    providers = [(n, p.spec, p.source) for n, p in state.providers.items()]
    routes = [(t, r.spec, r.source) for t, r in state.routes.items()]
    return (providers, routes, state.files, state.digest)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.lists(file_contents, min_size=1, max_size=3),
    sequence=edits,
)
def test_a_kept_loader_always_agrees_with_a_fresh_one(
    start: list[bytes], sequence: list[tuple[str, bytes | None]]
) -> None:
    files = {f"{name}.yaml": data for name, data in zip("abc", start, strict=False)}
    files["p.yaml"] = providers_file(list(PROVIDERS))
    kept = ConfigLoader()
    assert outcome(kept, sorted(files.items())) == outcome(ConfigLoader(), sorted(files.items()))
    for name, data in sequence:
        if data is None:
            files.pop(name, None)
        else:
            files[name] = data
        current = sorted(files.items())
        assert outcome(kept, current) == outcome(ConfigLoader(), current)


def test_after_a_clean_load_only_the_changed_files_routes_are_checked() -> None:
    files = {
        "p.yaml": providers_file(list(PROVIDERS)),
        "a.yaml": routes_file([("t0", "alpha", "beta"), ("t1", "gamma", None)]),
        "b.yaml": routes_file([("t2", "gamma", None), ("t3", "alpha", None)]),
    }
    loader = ConfigLoader()
    loader.load(sorted(files.items()))
    assert loader.checked_routes == 4
    files["b.yaml"] = routes_file(
        [("t2", "beta", None), ("t3", "alpha", None), ("t4", "beta", None)]
    )
    loader.load(sorted(files.items()))
    assert loader.checked_routes == 4 + 3  # b.yaml's routes only

    # A provider gone: every route is checked again, and the one that used it is a problem.
    files["p.yaml"] = providers_file(["alpha", "beta"])
    try:
        loader.load(sorted(files.items()))
    except ConfigInvalid as exc:
        assert [p.message for p in exc.problems] == ["provider 'gamma' is not declared"]
    else:
        raise AssertionError("a route that names a removed provider must be a problem")
    assert loader.checked_routes == 4 + 3 + 5

    # After a load with problems, the next load checks everything again.
    files["p.yaml"] = providers_file(list(PROVIDERS))
    loader.load(sorted(files.items()))
    assert loader.checked_routes == 4 + 3 + 5 + 5
