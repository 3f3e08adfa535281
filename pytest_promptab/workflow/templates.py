"""Prompt templates: Jinja2 (``{{ name }}``, MLflow's prompt syntax) rendered
in a sandbox with strict undefined, compiled once per distinct source.

Rendering is bounded, so a template can fail its run but never hang the
session or fill its memory: a ``range`` holds at most :data:`MAX_RANGE`
items and one render iterates over at most :data:`MAX_ITERATIONS` of them in
all (nested loops multiply), ``*`` and ``**`` cannot build a value beyond
:data:`MAX_OUTPUT` characters, the output stops at :data:`MAX_OUTPUT`
characters, and a render stops after :data:`MAX_RENDER_S` seconds.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import TemplateError
from .textline import line_in_value

MAX_RANGE = 100_000
"""Items one ``range(...)`` may hold."""
MAX_ITERATIONS = 1_000_000
"""``range`` items one render may iterate over, all loops together."""
MAX_OUTPUT = 2_000_000
"""Characters one render may produce (a prompt far beyond any context window)."""
MAX_RENDER_S = 10.0
"""Seconds one render may take."""
_HINT = "bound the template's loops and repetitions; a prompt never needs that much"


class RenderLimit(Exception):
    """A bound of rendering was reached; the message says which."""


class _Budget(threading.local):
    iterations = 0
    deadline = float("inf")

    def start(self) -> None:
        self.iterations = 0
        self.deadline = time.monotonic() + MAX_RENDER_S

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderLimit(f"rendering took longer than {MAX_RENDER_S:g} s")


_budget = _Budget()


class _BoundedRange:
    """``range`` for templates: its iteration counts against the render's budget."""

    def __init__(self, rng: range) -> None:
        self._range = rng

    def __iter__(self) -> Iterator[int]:
        budget = _budget
        for count, value in enumerate(self._range):
            budget.iterations += 1
            if budget.iterations > MAX_ITERATIONS:
                raise RenderLimit(f"the template's loops ran more than {MAX_ITERATIONS:,} times")
            if not count & 1023:
                budget.check_time()
            yield value

    def __len__(self) -> int:
        return len(self._range)

    def __getitem__(self, index: Any) -> Any:
        return self._range[index]

    def __contains__(self, value: object) -> bool:
        return value in self._range

    def __reversed__(self) -> Iterator[int]:
        return iter(_BoundedRange(self._range[::-1]))


def _bounded_range(*args: int) -> _BoundedRange:
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise RenderLimit(f"range() of {len(rng):,} items: templates allow at most {MAX_RANGE:,}")
    return _BoundedRange(rng)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox with bounds on ``range``, ``*``, ``**`` and time."""

    intercepted_binops = frozenset(["*", "**"])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.globals["range"] = _bounded_range

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int) and len(seq) * times > MAX_OUTPUT:
                    raise RenderLimit(f"'*' would build a value of more than {MAX_OUTPUT:,} items")
        elif (operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1
              and right * abs(left).bit_length() > 4096):  # fmt: skip
            raise RenderLimit("'**' would build a number of more than 4096 bits")
        return super().call_binop(context, operator, left, right)

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _budget.check_time()
        return super().call(context, obj, *args, **kwargs)


class TemplateRenderer:
    """Compiles and renders templates; thread-safe, caches compiled sources."""

    def __init__(self) -> None:
        self._env = BoundedSandbox(
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
        )
        self._compiled: dict[str, jinja2.Template] = {}
        self._conditions: dict[str, Any] = {}
        self._lock = threading.Lock()

    def condition_variables(self, source: str, *, where: str, path: str | None = None,
                            line: int | None = None) -> set[str]:
        """The names a route condition (a Jinja2 expression) reads; a syntax
        error raises :class:`TemplateError`."""
        try:
            self._env.compile_expression(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{where}: invalid condition {source!r}: {exc.message}", path=path, line=line,
                                hint="a condition is a Jinja2 expression, e.g. category == \"billing\"") from None
        return self.variables("{{ (" + source + ") }}", where=where, path=path, line=line)

    def holds(self, source: str, scope: dict[str, Any]) -> bool:
        """Whether a route condition holds on ``scope``. A condition that
        cannot be evaluated (a missing name, a comparison of text with a
        number) does not hold."""
        expression = self._conditions.get(source)
        if expression is None:
            expression = self._env.compile_expression(source, undefined_to_none=False)
            with self._lock:
                self._conditions[source] = expression
        try:
            _budget.start()
            return bool(expression(**scope))
        except Exception:  # noqa: BLE001 - any failure on the data: the condition does not hold
            return False

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
            return _render_bounded(template, scope)
        except RenderLimit as exc:
            raise TemplateError(f"{where}: {exc}", path=path, line=line, hint=_HINT) from None
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


def _render_bounded(template: jinja2.Template, scope: dict[str, Any]) -> str:
    """``template.render(scope)``, chunk by chunk within the bounds."""
    _budget.start()
    parts: list[str] = []
    size = 0
    for chunk in template.generate(scope):
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise RenderLimit(f"the template renders more than {MAX_OUTPUT:,} characters")
        parts.append(chunk)
        if len(parts) & 1023 == 0:
            _budget.check_time()
    return "".join(parts)


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
