"""Checks of a loaded workflow that need more than the schema: provider and
check types exist, callables import, templates parse and name only variables
that will be in scope. Run once per file at collection, so that a typo fails
the file up front instead of every one of its runs."""

from __future__ import annotations

import json
import re

from pydantic import ValidationError

from ..checks.registry import BUILTINS, CheckRegistry
from ..errors import ConfigError
from ..providers.registry import ProviderRegistry
from ..workflow.callables import load_callable
from ..workflow.loader import LoadedWorkflow
from ..workflow.marked_yaml import CONTENT
from ..workflow.schema import CheckConfig, ProviderConfig
from ..workflow.templates import TemplateRenderer, line_of_name
from ..workflow.variants import merge, resolve_nodes

BUILTIN_NAMES = {"expected", "variant", "run"}


def validate_workflow(
    loaded: LoadedWorkflow,
    display: str,
    *,
    providers: ProviderRegistry,
    checks: CheckRegistry,
    renderer: TemplateRenderer,
) -> None:
    config = loaded.config
    base = loaded.base_dir
    input_names = set().union(*(case.inputs.keys() for case in loaded.cases)) if loaded.cases else set()
    all_outputs = {key for node in config.nodes for key in node.state_keys}
    for index, check in enumerate(config.checks):
        line = loaded.line("checks", index)
        if check.type not in checks.types:
            raise ConfigError(
                f"unknown check type {check.type!r}; known: {', '.join(checks.types)}", path=display, line=line
            )
        if check.callable:
            try:
                load_callable(check.callable, base, what=f"check {(check.name or check.type)!r} callable")
            except ConfigError as exc:
                raise ConfigError(exc.message, path=display, line=line) from None
        elif check.type == "python":
            raise ConfigError("a 'python' check needs 'callable: path/to/file.py:function'", path=display, line=line)
        if check.type == "llm_judge" and not check.rubric:
            raise ConfigError("an 'llm_judge' check needs 'rubric:' (what the judge grades)", path=display, line=line)
        if check.type == "llm_judge" and config.provider is None and not check.provider:
            raise ConfigError("an 'llm_judge' check needs a provider: the workflow's or its own 'provider:'",
                              path=display, line=line)
        if check.provider is not None:
            defaults = config.provider.model_dump(exclude_unset=True) if config.provider else {}
            _provider_config(merge(defaults, check.provider), display, loaded.line("checks", index, "provider"))
        if check.type == "json_schema" and check.schema_ is not None:
            from ..checks.registry import check_schema
            from ..errors import CheckError

            try:
                check_schema(check.schema_, name=check.name or check.type)
            except CheckError as exc:
                raise ConfigError(exc.message, path=display, line=line) from None
        name = check.name or check.type
        value_line = loaded.line("checks", index, "value", CONTENT)
        _check_field(check.field, name, input_names | all_outputs | BUILTIN_NAMES, display,
                     loaded.line("checks", index, "field"))
        _check_keys_of_type(check, name, display, loaded.line("checks", index, "schema"))
        values = check.value if isinstance(check.value, list) else [check.value]
        for value in values:
            if isinstance(value, str):
                where = f"check {name!r} value"
                _check_names(renderer, value, input_names | all_outputs | BUILTIN_NAMES,
                             where=where, display=display, line=value_line)
                _check_expected(renderer, value, loaded, where=where, display=display, line=value_line)
                if check.type == "regex":
                    _check_regex(value, check, name, display, value_line)
        if check.rubric:
            _check_expected(renderer, check.rubric, loaded, where=f"check {name!r} rubric", display=display,
                            line=loaded.line("checks", index, "rubric", CONTENT))
    for variant in config.ab_test.variant_names:
        nodes = resolve_nodes(loaded, variant)
        for index, node in enumerate(nodes):
            line = loaded.marks.get(("nodes", index, "settings")) or loaded.line("provider", "settings")
            _json_settings(node.settings, f"node {node.id!r} settings", display, line)
        known = input_names | BUILTIN_NAMES
        for node in nodes:
            if node.provider.type not in providers.types:
                raise ConfigError(
                    f"node {node.id!r}: unknown provider type {node.provider.type!r}; "
                    f"known: {', '.join(providers.types)}",
                    path=display,
                    line=loaded.line("provider", "type"),
                    hint="provider types from other plugins need that plugin installed",
                )
            if node.provider.type == "python" and node.provider.callable:
                try:
                    load_callable(node.provider.callable, base, what="provider callable")
                except ConfigError as exc:
                    raise ConfigError(exc.message, path=display, line=loaded.line("provider", "callable")) from None
            for source, line, part in ((node.prompt, node.prompt_line, "prompt"), (node.system, node.system_line, "system")):
                if source:
                    where = f"variant {variant!r} node {node.id!r} {part}"
                    _check_names(renderer, source, known, where=where, display=display, line=line)
                    _check_expected(renderer, source, loaded, where=where, display=display, line=line)
            known = known | set(node.state_keys)
            if variant == config.ab_test.baseline:
                _check_routes(loaded, node.id, known, renderer, display)


def _check_routes(loaded: LoadedWorkflow, node_id: str, known: set[str], renderer: TemplateRenderer,
                  display: str) -> None:
    """A node's route conditions parse and read only names in scope after it."""
    index = next(i for i, n in enumerate(loaded.config.nodes) if n.id == node_id)
    for r_index, route in enumerate(loaded.config.nodes[index].routes or ()):
        if route.when is None:
            continue
        line = loaded.line("nodes", index, "routes", r_index, "when")
        where = f"node {node_id!r} route {r_index + 1}"
        names = renderer.condition_variables(route.when, where=where, path=display, line=line)
        unknown = sorted(names - known)
        if unknown:
            raise ConfigError(
                f"{where}: condition {route.when!r} reads {unknown[0]!r}, which is not in the state",
                path=display,
                line=line,
                hint=f"the names in scope are: {', '.join(sorted(known))}",
            )


def _check_names(
    renderer: TemplateRenderer, source: str, known: set[str], *, where: str, display: str, line: int | None
) -> None:
    names = renderer.variables(source, where=where, path=display, line=line)
    unknown = sorted(names - known)
    if unknown:
        raise ConfigError(
            f"{where}: template variable {unknown[0]!r} is not defined",
            path=display,
            line=line_of_name(source, unknown[0], line),
            hint=f"the names in scope are: {', '.join(sorted(known))} "
            "(case inputs, outputs of earlier nodes, expected, variant, run)",
        )


def _check_field(field: str | None, name: str, known: set[str], display: str, line: int | None) -> None:
    """A check's ``field`` is a case input, a node output (a dotted name
    reaches into a ``parse: json`` output) or a built-in name."""
    if field is None or field in known or field.partition(".")[0] in known:
        return
    import difflib

    close = difflib.get_close_matches(field, sorted(known - BUILTIN_NAMES), n=1)
    raise ConfigError(
        f"check {name!r}: field {field!r} names no node output or case input",
        path=display,
        line=line,
        hint=(f"did you mean {close[0]!r}? " if close else "")
        + f"fields are: {', '.join(sorted(known - BUILTIN_NAMES))} (a dotted name reaches into a parse: json output)",
    )


def _check_keys_of_type(check: CheckConfig, name: str, display: str, line: int | None) -> None:
    """``schema:`` means something to ``json_schema`` only (a plugin's check
    type may read it: only promptab's own types are held to this)."""
    if check.schema_ is not None and check.type in BUILTINS and check.type != "json_schema":
        what = ("only checks that the output parses as JSON" if check.type == "json"
                else "does not read 'schema:'")
        raise ConfigError(
            f"check {name!r}: type {check.type!r} {what}; the schema would be ignored",
            path=display,
            line=line,
            hint="to validate the output against 'schema:', use type: json_schema",
        )


def _check_regex(pattern: str, check: CheckConfig, name: str, display: str, line: int | None) -> None:
    if "{{" in pattern or "{%" in pattern:
        return  # a template: compiled per run, once rendered
    try:
        re.compile(pattern, 0 if check.case_sensitive else re.IGNORECASE)
    except re.error as exc:
        raise ConfigError(
            f"check {name!r} (regex): invalid pattern {pattern!r}: {exc}",
            path=display,
            line=line,
            hint="patterns use Python's re syntax; in YAML, single-quote them so backslashes stay",
        ) from None


def _check_expected(
    renderer: TemplateRenderer, source: str, loaded: LoadedWorkflow, *, where: str, display: str, line: int | None
) -> None:
    """Every ``expected.x`` a template reads is in every case's ``expected``:
    otherwise each run of that case would fail on it."""
    keys = renderer.expected_keys(source, where=where, path=display, line=line)
    for key in keys:
        for index, case in enumerate(loaded.cases):
            if key in case.expected:
                continue
            inline = isinstance(loaded.config.cases, list)
            at = f" (line {loaded.line('cases', index)})" if inline else ""
            raise ConfigError(
                f"{where} uses expected.{key}, but case {case.id!r}{at} has no expected.{key}",
                path=display,
                line=line_of_name(source, "expected", line),
                hint=f"give case {case.id!r} 'expected: {{{key}: ...}}', "
                f"or write {{{{ expected.{key} | default('') }}}} where it may be missing",
            )


def _provider_config(data: dict[str, object], display: str, line: int | None) -> ProviderConfig:
    try:
        return ProviderConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "provider"
        if first["type"] == "extra_forbidden":
            import difflib

            valid = list(ProviderConfig.model_fields)
            close = difflib.get_close_matches(where, valid, n=1)
            raise ConfigError(
                f"invalid provider: unknown key {where!r}; valid keys: {', '.join(valid)}",
                path=display,
                line=line,
                hint=f"did you mean {close[0]!r}?" if close else None,
            ) from None
        raise ConfigError(f"invalid provider: {where}: {first['msg']}", path=display, line=line) from None


def _json_settings(settings: dict[str, object], where: str, display: str, line: int | None) -> None:
    """Settings go to providers as JSON: a YAML date or other non-JSON value
    is an error here, not a crash in the middle of a run."""
    try:
        json.dumps(settings)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{where} must be plain JSON values: {exc}",
            path=display,
            line=line,
            hint="quote values YAML would read as dates or other types, e.g. stop: '2024-01-01'",
        ) from None
