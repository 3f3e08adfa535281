"""Prompt templates: Jinja2 (``{{ name }}``, MLflow's prompt syntax) rendered
in a sandbox with strict undefined, compiled once per distinct source."""

from __future__ import annotations

import re
import threading
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from ..errors import TemplateError
from .textline import line_in_value


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
            raise self._syntax_error(exc, source, where, path, line) from None

    def expected_keys(self, source: str, *, where: str, path: str | None = None, line: int | None = None) -> list[str]:
        """The keys ``source`` reads from ``expected`` (``expected.x``,
        ``expected['x']``), leaving out those it guards (``| default``,
        ``is defined``) or calls (``expected.get(...)``)."""
        if "expected" not in source:
            return []
        try:
            tree = self._env.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            raise self._syntax_error(exc, source, where, path, line) from None
        guarded: set[str] = set()
        for guard in tree.find_all((nodes.Filter, nodes.Test)):
            if guard.node is not None and guard.name in ("default", "d", "defined", "undefined", "none"):
                guarded.update(k for n in (guard.node, *guard.node.find_all((nodes.Getattr, nodes.Getitem)))
                               if (k := _expected_key(n)))
        for call in tree.find_all(nodes.Call):
            if key := _expected_key(call.node):
                guarded.add(key)
        used: list[str] = []
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            key = _expected_key(node)
            if key and key not in guarded and key not in used:
                used.append(key)
        return used

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
                raise self._syntax_error(exc, source, where, path, line) from None
            with self._lock:
                self._compiled[source] = template
        return template

    @staticmethod
    def _syntax_error(
        exc: jinja2.TemplateSyntaxError, source: str, where: str, path: str | None, line: int | None
    ) -> TemplateError:
        # jinja2 counts the lines of the value; the text of that line finds it in the file
        lines = source.split("\n")
        number = min(max(exc.lineno or 1, 1), len(lines))
        index = sum(len(text) + 1 for text in lines[: number - 1])
        needle = lines[number - 1].strip()[:40] or None
        return TemplateError(
            f"{where}: template syntax error: {exc.message}",
            path=path,
            line=line_in_value(source, line, index=index, needle=needle),
            hint="templates use Jinja2 syntax: {{ name }}; write {{ '{{' }} for a literal '{{'",
        )


def _expected_key(node: nodes.Node) -> str | None:
    if not isinstance(node, (nodes.Getattr, nodes.Getitem)):
        return None
    if not (isinstance(node.node, nodes.Name) and node.node.name == "expected"):
        return None
    if isinstance(node, nodes.Getattr):
        return str(node.attr)
    arg = node.arg
    return arg.value if isinstance(arg, nodes.Const) and isinstance(arg.value, str) else None


def line_of_name(source: str, name: str, first_line: int | None) -> int | None:
    """The file line where ``name`` first appears in a template whose text
    starts at ``first_line`` (for block scalars, the line below the key; a
    :class:`~pytest_promptab.workflow.textline.TextLine` knows quoted styles)."""
    match = re.search(r"\b" + re.escape(name) + r"\b", source)
    return line_in_value(source, first_line, index=match.start() if match else 0, needle=name)
