"""Loading workflow files: YAML with line marks, validated against the schema.

``is_promptab_file`` decides cheaply which YAML files are ours, and never
raises: a file it cannot decide on (not text, hostile) is ours when it shows
an ``ab_test:`` line, so that the load reports it as that file's failure.
``load_workflow`` returns a :class:`LoadedWorkflow` or raises a
:class:`~pytest_promptab.errors.ConfigError` that names the file and line and,
for an unknown key, the nearest valid one.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import ConfigError
from ..textsafe import NotText, decode_text
from .cases import load_cases
from .formats import configurable_agents as ca
from .formats.ca_parts import Located
from .marked_yaml import CONTENT, Loc, line_for, parse_yaml, top_level_has_key
from .schema import (
    USERINFO_HINT,
    USERINFO_MESSAGE,
    CaseConfig,
    LocatedValueError,
    RegistryPrompt,
    ResolvedPrompt,
    WorkflowConfig,
    url_has_userinfo,
)


@dataclass(frozen=True)
class RegistryAnswer:
    """What a registry resolver says about one reference: its ``text`` (and
    the ``version`` it resolved to, ``source`` registry or cache), or the
    ``problem`` and the ``hint`` that fixes it. ``note``: a warning to show
    with a text that was found (e.g. MLflow unreachable, the cached copy used)."""

    text: str | None = None
    version: int | None = None
    source: str = "registry"
    problem: str | None = None
    hint: str | None = None
    note: str | None = None


RegistryResolver = Callable[[list[RegistryPrompt]], Mapping[str, RegistryAnswer]]
"""Resolves ``{registry: ...}`` references (keyed by ``RegistryPrompt.registry``);
the pytest session gives one (:mod:`pytest_promptab.tracking.prompt_cache`)."""


@dataclass
class LoadedWorkflow:
    """A validated workflow file and what we need to report on it."""

    path: Path
    config: WorkflowConfig
    cases: list[CaseConfig]
    marks: dict[Loc, int] = field(default_factory=dict)
    sha256: str = ""
    source_format: str = "promptab"
    """``promptab`` or ``configurable-agents`` (translated on load)."""
    notes: list[str] = field(default_factory=list)
    """Keys the file's format accepts and promptab does not use (shown under -v)."""
    registry_notes: list[str] = field(default_factory=list)
    """Warnings about registry prompts resolved from the cache (MLflow unreachable)."""

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def line(self, *loc: Any) -> int | None:
        """The 1-based line of the key (or item) at ``loc``, or of its nearest parent."""
        return line_for(self.marks, tuple(loc))


_AB_TEST_LINE = re.compile(r"^ab_test[ \t]*:", re.MULTILINE)


def is_promptab_file(path: Path) -> bool:
    """A YAML file is ours when its top-level mapping has an ``ab_test`` key;
    a file that does not parse (or is not text) is ours when a line starts
    with ``ab_test:``. Never raises: it runs in ``pytest_collect_file``,
    where an exception would end the whole session."""
    try:
        raw = path.read_bytes()
    except OSError:
        return False
    try:
        return _is_promptab_bytes(raw)
    except Exception:  # noqa: BLE001 - total by design; the load names the problem
        return _looks_like_ab_test(raw)


def _is_promptab_bytes(raw: bytes) -> bool:
    try:
        text = decode_text(raw)
    except NotText:
        return _looks_like_ab_test(raw)
    if "ab_test" not in text:
        return False
    found = top_level_has_key(text, "ab_test")
    if found is None:  # does not parse: ours when it says so on a line of its own
        return bool(_AB_TEST_LINE.search(text)) or ca.looks_like_ca_text(text)
    return found or _is_ca_text(text)


def _is_ca_text(text: str) -> bool:
    """A configurable-agents workflow with ``config.ab_test`` (parsed only
    when its top level has ``schema_version``, ``flow`` and ``nodes``)."""
    if not all(top_level_has_key(text, key) for key in ("schema_version", "flow", "nodes")):
        return False
    try:
        data, _ = parse_yaml(text, "<file>")
    except ConfigError:  # bounded parse refused it: let the load say why
        return ca.looks_like_ca_text(text)
    return ca.is_ca_data(data)


def _looks_like_ab_test(raw: bytes) -> bool:
    """An ``ab_test:`` line in bytes that may not be text (any ASCII-compatible
    encoding), or in UTF-16 without a byte order mark."""
    if re.search(rb"(?m)^ab_test[ \t]*:", raw):
        return True
    return any("\nab_test:".encode(enc) in raw or raw.startswith("ab_test:".encode(enc))
               for enc in ("utf-16-le", "utf-16-be"))


def load_workflow(path: Path, *, display: str | None = None,
                  provider: dict[str, Any] | None = None, registry: RegistryResolver | None = None) -> LoadedWorkflow:
    """Read, parse and validate ``path``; ``display`` is how errors name it.
    ``provider`` (``--promptab-provider``) replaces the provider of every node:
    the file's default, the nodes' and the variants' overrides. ``registry``
    resolves the file's ``{registry: ...}`` prompts (called only when it has
    some); without one such a file does not load."""
    shown = display or str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", path=shown) from exc
    try:
        text = decode_text(raw)
    except NotText as exc:
        raise ConfigError(str(exc), path=shown, line=exc.line,
                          hint="save it as UTF-8 (UTF-16 and UTF-32 are read when the file starts with a BOM)") from None
    data, marks = parse_yaml(text, shown)
    if not isinstance(data, dict):
        raise ConfigError("a workflow file must be a mapping (key: value) at the top level", path=shown, line=1)
    _refuse_url_credentials(data, (), marks, shown)
    source_format, notes, case_defaults = "promptab", [], {}
    if ca.is_ca_data(data):
        try:
            translation = ca.translate(data, marks)
        except Located as exc:
            raise ConfigError(exc.message, path=shown, line=_located_line(marks, exc.loc), hint=exc.hint) from None
        data, marks, notes, source_format = translation.data, translation.marks, translation.notes, "configurable-agents"
        case_defaults = translation.case_defaults
    if provider is not None:
        data = with_provider(data, provider)
    try:
        config = WorkflowConfig.model_validate(data)
    except ValidationError as exc:
        raise _schema_error(exc, marks, shown) from None
    registry_notes: list[str] = []
    if any(node.registry_refs for node in config.nodes):
        config, registry_notes = _resolve_registry(config, registry, marks, shown)
    cases = load_cases(config, path.parent, shown, marks)
    if case_defaults and isinstance(config.cases, str):  # a cases file: what a case does not give, the defaults do
        cases = [c.model_copy(update={"inputs": {**case_defaults, **c.inputs}}) for c in cases]
    return LoadedWorkflow(path=path, config=config, cases=cases, marks=marks, sha256=hashlib.sha256(raw).hexdigest(),
                          source_format=source_format, notes=notes, registry_notes=registry_notes)


def _resolve_registry(config: WorkflowConfig, registry: RegistryResolver | None, marks: dict[Loc, int],
                      shown: str) -> tuple[WorkflowConfig, list[str]]:
    """``config`` with every ``{registry: ...}`` of its nodes resolved to a
    :class:`ResolvedPrompt`; the first that cannot be is a ConfigError at the
    line of its ``registry:`` value."""
    wanted = [(index, key, ref) for index, node in enumerate(config.nodes) for key, ref in node.registry_refs.items()]
    if registry is None:
        index, key, ref = wanted[0]
        raise ConfigError(
            f"node {config.nodes[index].id!r}: its {key} comes from MLflow's prompt registry ({ref.registry!r}), "
            "which only a pytest --promptab session resolves",
            path=shown, line=line_for(marks, ("nodes", index, key, "registry")),
            hint="run the file with pytest --promptab (the resolved text is cached under .promptab/registry/)",
        )
    unique = list({ref.registry: ref for _, _, ref in wanted}.values())
    answers = registry(unique)
    nodes = list(config.nodes)
    notes: list[str] = []
    for index, key, ref in wanted:
        answer = answers.get(ref.registry) or RegistryAnswer(problem="the resolver gave no answer")
        if answer.text is None:
            raise ConfigError(
                f"node {nodes[index].id!r}: {key} {ref.registry!r} from MLflow's prompt registry: "
                f"{answer.problem or 'not found'}",
                path=shown, line=line_for(marks, ("nodes", index, key, "registry")), hint=answer.hint,
            )
        if answer.note and answer.note not in notes:
            notes.append(answer.note)
        resolved = ResolvedPrompt(registry=ref.registry, text=answer.text, resolved_version=answer.version,
                                  source="cache" if answer.source == "cache" else "registry")
        nodes[index] = nodes[index].model_copy(update={key: resolved})
    return config.model_copy(update={"nodes": nodes}), notes


def with_provider(data: dict[str, Any], provider: dict[str, Any]) -> dict[str, Any]:
    """``data`` with ``provider`` as every node's provider (the file default
    replaced; node and variant overrides dropped; checks keep theirs)."""
    out = dict(data, provider=dict(provider))
    if isinstance(data.get("nodes"), list):
        out["nodes"] = [{k: v for k, v in n.items() if k != "provider"} if isinstance(n, dict) else n
                        for n in data["nodes"]]
    ab = data.get("ab_test")
    if isinstance(ab, dict) and isinstance(ab.get("variants"), list):
        variants = [{k: v for k, v in item.items() if k != "provider"} if isinstance(item, dict) else item
                    for item in ab["variants"]]
        out["ab_test"] = dict(ab, variants=variants)
    return out


def parse_provider_spec(spec: str) -> dict[str, Any]:
    """``--promptab-provider`` / ini ``promptab_provider``: a provider mapping
    written as YAML flow, e.g. ``{type: python, callable: "stand_in.py:respond"}``."""
    from pydantic import ValidationError as _VE

    from .schema import ProviderConfig

    where = "--promptab-provider"
    try:
        data, _ = parse_yaml(spec, where)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}", hint="write it as YAML flow: '{type: openai, model: m}'") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, e.g. '{{type: openai, base_url: \"http://127.0.0.1:8000/v1\", "
                          "model: local}'")
    try:
        ProviderConfig.model_validate(data)
    except _VE as exc:
        first = exc.errors(include_url=False)[0]
        place = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{where}: {place + ': ' if place else ''}{first['msg']}") from None
    return data


def _located_line(marks: dict[Loc, int], loc: Loc) -> int | None:
    """The line of ``loc``; ``(..., CONTENT, n)`` is the n-th line of a value's text."""
    if len(loc) >= 2 and loc[-2] == CONTENT and isinstance(loc[-1], int):
        first = marks.get(loc[:-1])
        if first is not None:
            return int(first) + loc[-1]
        loc = loc[:-2]
    return line_for(marks, loc)


def _refuse_url_credentials(data: Any, loc: Loc, marks: dict[Loc, int], shown: str) -> None:
    """Any ``base_url`` (the provider's, a node's, a variant's, a check's)
    with a user name or password in it, before validation: pydantic's errors
    would repeat the value, and this one must never be printed."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key in ("base_url", "api_base") and isinstance(value, str) and url_has_userinfo(value):
                where = _dotted(loc + (key,))
                raise ConfigError(f"{where}: {USERINFO_MESSAGE}", path=shown, line=line_for(marks, loc + (key,)),
                                  hint=USERINFO_HINT)
            _refuse_url_credentials(value, loc + (key,), marks, shown)
    elif isinstance(data, list):
        for index, item in enumerate(data):
            _refuse_url_credentials(item, loc + (index,), marks, shown)


def _schema_error(exc: ValidationError, marks: dict[Loc, int], shown: str) -> ConfigError:
    """The first error of ``exc``, located and explained (the rest as a count)."""
    # an unknown key first: a typo ('promtp') also makes the real key look missing
    errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    messages = []
    first_line: int | None = None
    hint: str | None = None
    for err in errors:
        loc: Loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and _is_union_tag(p)))
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, LocatedValueError):
            loc = loc + cause.loc
        line = line_for(marks, loc)
        text, err_hint = _explain(dict(err), loc)
        messages.append((line, text))
        if first_line is None:
            first_line, hint = line, err_hint
    line0, text0 = messages[0]
    more = ""
    if len(messages) > 1:
        others = "; ".join(f"line {ln}: {t}" for ln, t in messages[1:4])
        more = f"\n  also: {others}" + (" ..." if len(messages) > 4 else "")
    return ConfigError(text0 + more, path=shown, line=line0, hint=hint)


def _is_union_tag(part: str) -> bool:
    # pydantic puts the union member's type in the loc: 'list[CaseConfig]', 'str', 'function-after[...]'
    return "[" in part or part in {"str", "int", "float", "bool", "dict", "list", "RegistryPrompt"}


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the file"


def _explain(err: dict[str, Any], loc: Loc) -> tuple[str, str | None]:
    kind = err["type"]
    where = _dotted(loc)
    if kind == "extra_forbidden":
        key = loc[-1] if loc else "?"
        valid = _valid_keys(loc[:-1])
        close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}?" if close else None
        return (f"unknown key {key!r} in {_dotted(loc[:-1])}; valid keys: {', '.join(valid)}", hint)
    if kind == "missing":
        return (f"{where} is required but missing", f"add '{loc[-1]}:'" if loc else None)
    if kind in ("value_error", "assertion_error"):
        msg = err["msg"].removeprefix("Value error, ")
        return (f"{msg}" if not loc else f"{where}: {msg}", None)
    got = err.get("input")
    shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return (f"{where}: {err['msg'].lower()} (got {shown})", None)


def _valid_keys(loc: Loc) -> list[str]:
    """The field names of the model found at ``loc`` in the schema."""
    model: Any = WorkflowConfig
    for part in loc:
        model = _descend(model, part)
        if model is None:
            return []
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or name for name, f in model.model_fields.items()]
    return []


def _descend(annotation: Any, part: Any) -> Any:
    for candidate in _members(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel) and isinstance(part, str):
            fields = {f.alias or n: f for n, f in candidate.model_fields.items()}
            if part in fields:
                return fields[part].annotation
        origin = typing.get_origin(candidate)
        if origin is list and isinstance(part, int):
            return typing.get_args(candidate)[0]
        if origin is dict and isinstance(part, str):
            return typing.get_args(candidate)[1]
    return None


def _members(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]
