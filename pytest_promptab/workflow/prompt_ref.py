"""``{registry: "name@alias"}`` / ``{registry: "name/3"}``: a node's text
taken from MLflow's prompt registry, as the schema
(:mod:`pytest_promptab.workflow.schema`, where ``NodeConfig.prompt`` and
``system`` accept it) defines it; the resolved form the loader makes of it."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from .schema_base import LocatedValueError

__all__ = ["REGISTRY_REF_HINT", "RegistryPrompt", "ResolvedPrompt", "registry_reference", "registry_text"]

REGISTRY_REF_HINT = (
    'write it as "name@alias" (e.g. "support-reply@production") or "name/<version>" (e.g. "support-reply/3"); '
    "names and aliases use letters, digits, '_', '-', '.'"
)
_REGISTRY_RE = re.compile(
    r"^(?:prompts:/)?(?P<name>[A-Za-z0-9_\-][A-Za-z0-9_.\-]*)"
    r"(?:@(?P<alias>[A-Za-z0-9_\-][A-Za-z0-9_.\-]*)|/(?P<version>[1-9][0-9]{0,9}))$"
)


class RegistryPrompt(BaseModel):
    """``{registry: "name@alias"}`` or ``{registry: "name/3"}``: a text that
    comes from MLflow's prompt registry instead of the file (a node's
    ``prompt`` or ``system``). The pytest session resolves it (through the
    MLflow logging process, cached under ``.promptab/registry/``) before the
    file's items are built; see :class:`ResolvedPrompt`. A ``prompts:/``
    prefix, as MLflow writes its URIs, is accepted and dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    registry: str

    @field_validator("registry")
    @classmethod
    def _reference(cls, value: str) -> str:
        text = value.strip()
        if _REGISTRY_RE.match(text) is None:
            raise ValueError(f"{value!r} is not a prompt registry reference: {REGISTRY_REF_HINT}")
        return text.removeprefix("prompts:/")

    @property
    def name(self) -> str:
        return self._parts()[0]

    @property
    def alias(self) -> str | None:
        """The alias (``name@alias``), or None for a pinned version."""
        return self._parts()[1]

    @property
    def version(self) -> int | None:
        """The pinned version (``name/3``), or None for an alias."""
        return self._parts()[2]

    @property
    def uri(self) -> str:
        """``prompts:/name@alias`` or ``prompts:/name/3``, as MLflow writes it."""
        return f"prompts:/{self.registry}"

    def _parts(self) -> tuple[str, str | None, int | None]:
        match = _REGISTRY_RE.match(self.registry)
        assert match is not None  # validated
        version = match.group("version")
        return match.group("name"), match.group("alias"), int(version) if version else None


class ResolvedPrompt(RegistryPrompt):
    """A :class:`RegistryPrompt` with the text it resolved to (set by the
    loader, never read from a file): ``text`` is used as the file's own
    prompt text would be (a Jinja2 template), ``version`` is the registry
    version it came from, ``source`` says from where (``registry``, or
    ``cache`` when only the cached copy was read)."""

    text: str
    resolved_version: int | None = None
    source: Literal["registry", "cache"] = "registry"


def registry_text(value: str | RegistryPrompt | None, what: str) -> str | None:
    """The text of a node's ``prompt``/``system`` value: the file's string,
    or a resolved registry prompt's text. An unresolved reference is a bug
    (the loader resolves every one or fails the file)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, ResolvedPrompt):
        return value.text
    raise RuntimeError(f"the {what} reference {value.registry!r} was not resolved")


def registry_reference(data: dict[Any, Any]) -> RegistryPrompt:
    """A ``{registry: ...}`` mapping as a :class:`RegistryPrompt`; its faults
    as :class:`LocatedValueError` at the key that has them."""
    for key in data:
        if key != "registry":
            raise LocatedValueError(
                f"unknown key {key!r} in a registry reference; it takes only 'registry' ({REGISTRY_REF_HINT})", (key,)
            )
    if "registry" not in data:
        raise LocatedValueError(f"a registry reference needs 'registry:' ({REGISTRY_REF_HINT})")
    value = data["registry"]
    if not isinstance(value, str):
        raise LocatedValueError(f"registry must be text, got {type(value).__name__} ({REGISTRY_REF_HINT})", ("registry",))
    try:
        return RegistryPrompt(registry=value)
    except ValueError:
        raise LocatedValueError(f"{value!r} is not a prompt registry reference: {REGISTRY_REF_HINT}", ("registry",)) from None
