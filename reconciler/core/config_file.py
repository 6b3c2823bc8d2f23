"""One config file -> `FileResult`: parse it, check its header and sections, validate each
provider and route, and collect every problem with its place. Purely computational.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from yaml.nodes import MappingNode, ScalarNode

from reconciler.core.desired import DeclaredProvider, DeclaredRoute, FileResult, Source
from reconciler.core.diagnostics import control_problems, problem_at, validation_problems
from reconciler.core.registry import ProviderRegistry
from reconciler.core.spec import NAME_HINT, FileHeader, Name, ProviderSpec, RouteSpec
from reconciler.core.yaml_problems import YamlProblems
from reconciler.core.yamldoc import YamlDocument, parse_document
from reconciler.errors import Problem

_NAMES = TypeAdapter(Name)
_SECTIONS = ("providers", "routes")
_Spec = TypeVar("_Spec", bound=BaseModel)


def validate_file(name: str, data: bytes, digest: str, registry: ProviderRegistry) -> FileResult:
    """Parse and validate one file on its own (no cross-file checks)."""
    try:
        doc = parse_document(name, data)
    except YamlProblems as exc:
        return FileResult(name, digest, (), (), tuple(exc.problems))
    if not isinstance(doc.value, dict):
        problem = problem_at(
            doc,
            (),
            "not_a_mapping",
            "the top level of a config file must be a mapping",
            "start the file with `version: 1`, then `providers:` and/or `routes:`",
        )
        return FileResult(name, digest, (), (), (problem,))
    problems: list[Problem] = []
    raw_providers, raw_routes, known_version = _sections(doc, problems)
    names = frozenset(raw_providers)
    if not known_version:
        return FileResult(name, digest, (), (), tuple(problems), names)
    providers = _providers(doc, raw_providers, registry, problems)
    routes = _routes(doc, raw_routes, problems)
    if doc.controls:
        problems = _one_per_place(problems, control_problems(doc))
    return FileResult(name, digest, tuple(providers), tuple(routes), tuple(problems), names)


def _one_per_place(problems: list[Problem], controls: list[Problem]) -> list[Problem]:
    """A control character is the cause of what else its string fails (a name pattern, a URL).

    Where it is, it is the one problem reported; unless the string is a literal credential,
    which is the graver mistake and stays the one reported.
    """
    secret = {(p.line, p.column) for p in problems if p.code == "secret_literal"}
    controls = [c for c in controls if (c.line, c.column) not in secret]
    taken = {(c.line, c.column) for c in controls}
    return [p for p in problems if (p.line, p.column) not in taken] + controls


def _sections(
    doc: YamlDocument, problems: list[Problem]
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """The `providers` and `routes` mappings of a file whose top level is a mapping.

    A problem in the header (an unknown top-level key, a section that is not a mapping) does not
    stop the other sections from being checked: every problem is reported in one run. A wrong
    `version` does: the rest of the file is in a format this code does not know. Either way the
    provider names are kept, so routes elsewhere that name them are not reported as well.
    """
    try:
        header = FileHeader.model_validate(doc.value)
    except ValidationError as exc:
        problems.extend(validation_problems(doc, (), exc, FileHeader))
        providers, routes = (
            value if isinstance(value := doc.value.get(section), dict) else {}
            for section in _SECTIONS
        )
        errors = exc.errors(include_url=False, include_input=False)
        known_version = all(error["loc"][:1] != ("version",) for error in errors)
        return providers, routes, known_version
    return header.providers, header.routes, True


def _providers(
    doc: YamlDocument, raw: dict[str, Any], registry: ProviderRegistry, problems: list[Problem]
) -> list[DeclaredProvider]:
    marks = _entry_marks(doc, "providers")
    declared = []
    for name, body in raw.items():
        path = ("providers", name)
        if not _valid_name(doc, path, "provider", problems):
            continue
        model = _provider_model(doc, path, body, registry, problems)
        if model is None:
            continue
        spec = _validated(doc, path, body, model, problems)
        if spec is not None:
            declared.append(DeclaredProvider(name, spec, marks[name]))
    return declared


def _validated(
    doc: YamlDocument,
    path: tuple[str, ...],
    body: Any,
    model: type[_Spec],
    problems: list[Problem],
) -> _Spec | None:
    """`body` as `model`; None, with its problems added, when it is not one."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems.extend(validation_problems(doc, path, exc, model))
        return None


def _provider_model(
    doc: YamlDocument,
    path: tuple[str, str],
    body: Any,
    registry: ProviderRegistry,
    problems: list[Problem],
) -> type[ProviderSpec] | None:
    types = registry.names()
    if not isinstance(body, dict):
        problems.append(
            problem_at(
                doc,
                path,
                "model_type",
                "a provider must be a mapping with `type:` and `endpoint:`",
                f"for example `type: {types[0]}` and `endpoint: {{base_url: http://...}}`",
            )
        )
        return None
    type_name = body.get("type")
    if type_name is None:
        problems.append(
            problem_at(
                doc,
                (*path, "type"),
                "missing_field",
                "missing required field 'type'",
                "add `type:` with one of: " + ", ".join(types),
            )
        )
        return None
    provider_type = registry.get(type_name) if isinstance(type_name, str) else None
    if provider_type is None:
        from reconciler.core.suggest import suggest  # a valid file needs no suggestion

        problems.append(
            problem_at(
                doc,
                (*path, "type"),
                "unknown_type",
                f"unknown provider type {str(type_name)!r}",
                suggest(str(type_name), types) + " (registered: " + ", ".join(types) + ")",
            )
        )
        return None
    return provider_type.config_model


def _routes(doc: YamlDocument, raw: dict[str, Any], problems: list[Problem]) -> list[DeclaredRoute]:
    """Each route on its own, so one bad route hides neither the others nor their problems."""
    marks = _entry_marks(doc, "routes")
    declared = []
    for task, body in raw.items():
        path = ("routes", task)
        if not _valid_name(doc, path, "task", problems):
            continue
        if not isinstance(body, dict):
            problems.append(
                problem_at(
                    doc,
                    path,
                    "model_type",
                    "a route must be a mapping with `provider:` and `model:`",
                    "for example `provider: local-ollama` and `model: llama3.1:8b`",
                )
            )
            continue
        route = _validated(doc, path, body, RouteSpec, problems)
        if route is not None:
            declared.append(DeclaredRoute(task, route, marks[task]))
    return declared


def _valid_name(doc: YamlDocument, path: tuple[str, str], kind: str, out: list[Problem]) -> bool:
    try:
        _NAMES.validate_python(path[1])
    except ValidationError:
        out.append(
            problem_at(
                doc,
                path,
                "invalid_name",
                f"invalid {kind} name {path[1]!r}",
                NAME_HINT,
                at_key=True,
            )
        )
        return False
    return True


def _entry_marks(doc: YamlDocument, section: str) -> dict[str, Source]:
    """The place of each entry's key under a top-level section, from the node tree."""
    assert isinstance(doc.root, MappingNode)
    for key, value in doc.root.value:
        if isinstance(key, ScalarNode) and key.value == section and isinstance(value, MappingNode):
            return {
                k.value: Source(doc.name, k.start_mark.line + 1, k.start_mark.column + 1)
                for k, _ in value.value
            }
    return {}
