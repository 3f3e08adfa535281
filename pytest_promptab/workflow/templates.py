"""Prompt templates: Jinja2 (``{{ name }}``, MLflow's prompt syntax) rendered
in a sandbox with strict undefined, compiled once per distinct source."""

from __future__ import annotations

import re
import threading
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from ..errors import TemplateError


class TemplateRenderer:
    """Compiles and renders templates; thread-safe, caches compiled sources."""

    def __init__(self) -> None:
        self._env = SandboxedEnvironment(
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
        )
        self._compiled: dict[str, jinja2.Template] = {}
        self._lock = threading.Lock()

    def variables(self, source: str, *, where: str, path: str | None = None, line: int | None = None) -> set[str]:
        """The names ``source`` reads from its scope (syntax errors raise)."""
        try:
            return set(meta.find_undeclared_variables(self._env.parse(source)))
        except jinja2.TemplateSyntaxError as exc:
            raise self._syntax_error(exc, where, path, line) from None

    def render(
        self,
        source: str,
        scope: dict[str, Any],
        *,
        where: str,
        path: str | None = None,
        line: int | None = None,
    ) -> str:
        if "{" not in source:  # nothing to render: the common case for settings and plain text
            return source
        template = self._compile(source, where, path, line)
        try:
            return template.render(scope)
        except jinja2.UndefinedError as exc:
            names = ", ".join(sorted(k for k in scope if not k.startswith("_")))
            missing = re.match(r"'([^']+)' is undefined", exc.message or "")
            raise TemplateError(
                f"{where}: {exc.message}",
                path=path,
                line=line_of_name(source, missing.group(1), line) if missing else line,
                hint=f"the names in scope are: {names}",
            ) from None
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(f"{where}: not allowed in a template: {exc}", path=path, line=line) from None
        except Exception as exc:  # a filter or expression failed on the data
            raise TemplateError(f"{where}: {type(exc).__name__}: {exc}", path=path, line=line) from None

    def _compile(self, source: str, where: str, path: str | None, line: int | None) -> jinja2.Template:
        template = self._compiled.get(source)
        if template is None:
            try:
                template = self._env.from_string(source)
            except jinja2.TemplateSyntaxError as exc:
                raise self._syntax_error(exc, where, path, line) from None
            with self._lock:
                self._compiled[source] = template
        return template

    @staticmethod
    def _syntax_error(exc: jinja2.TemplateSyntaxError, where: str, path: str | None, line: int | None) -> TemplateError:
        return TemplateError(
            f"{where}: template syntax error: {exc.message}",
            path=path,
            line=line,
            hint="templates use Jinja2 syntax: {{ name }}; write {{ '{{' }} for a literal '{{'",
        )


def line_of_name(source: str, name: str, first_line: int | None) -> int | None:
    """The file line where ``name`` first appears in a template whose text
    starts at ``first_line`` (for block scalars, the line below the key)."""
    if first_line is None:
        return None
    match = re.search(r"\b" + re.escape(name) + r"\b", source)
    return first_line + (source[: match.start()].count("\n") if match else 0)
