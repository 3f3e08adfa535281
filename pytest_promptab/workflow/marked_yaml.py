"""YAML parsed into plain data with the line of every key and list item.

The line marks are what lets every later error (schema, template, check) name
the line of the file it comes from. Used by the workflow loader and by case
files alike.

Hostile input is bounded: nesting deeper than :data:`MAX_DEPTH`, or aliases
that expand to more than :data:`MAX_ALIAS_EXPANSION` values (a "billion
laughs" file), is a located :class:`~pytest_promptab.errors.ConfigError`, not
a RecursionError or MemoryError. :func:`top_level_has_key` reads only the
parser's events: no recursion, no alias expansion, so it never raises on a
hostile file either.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import ConfigError
from ..textsafe import clean
from .textline import TextLine

Loc = tuple[Any, ...]
CONTENT = "<content>"
"""Marks key suffix: the first line of a scalar value's text."""
MAX_DEPTH = 100
"""Mappings and lists nested deeper than this are refused."""
MAX_ALIAS_EXPANSION = 200_000
"""Values that aliases (``*name``, ``<<: *name``) may repeat in one file."""
MAX_MERGED_KEYS = 10_000
"""Keys one mapping may get from merge keys (``<<``)."""


class _Refused(Exception):
    def __init__(self, message: str, line: int | None, hint: str) -> None:
        super().__init__(message)
        self.message, self.line, self.hint = message, line, hint


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a bound on nesting: its composer recurses
    once per level, so a deep file would raise RecursionError."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _Refused(f"the YAML nests deeper than {MAX_DEPTH} levels", mark.line + 1 if mark else None,
                               "a workflow or cases file never needs that many levels: flatten it")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Expansion:
    """Counts the values that aliases repeat while the node graph becomes data."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.repeated = 0

    def visit(self, node: yaml.Node) -> None:
        if id(node) in self.seen:
            self.repeated += 1
            if self.repeated > MAX_ALIAS_EXPANSION:
                raise _Refused(
                    f"aliases expand to more than {MAX_ALIAS_EXPANSION:,} values (an alias bomb?)",
                    node.start_mark.line + 1, "use fewer or smaller anchors (&name) and aliases (*name)",
                )
        else:
            self.seen.add(id(node))


def parse_yaml(text: str, shown: str) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML into plain data, with the line of every key and list item."""
    try:
        return _parse(text, shown)
    except _Refused as exc:
        raise ConfigError(exc.message, path=shown, line=exc.line, hint=exc.hint) from None
    except (RecursionError, MemoryError):  # the bounds above should make this unreachable
        raise ConfigError("the YAML is too deeply nested or too large to load", path=shown,
                          hint="flatten it, and use fewer anchors and aliases") from None


def _parse(text: str, shown: str) -> tuple[Any, dict[Loc, int]]:
    try:
        root = yaml.compose(text, Loader=_BoundedLoader)
    except yaml.MarkedYAMLError as exc:
        line, problem = _syntax_problem(exc)
        raise ConfigError(f"YAML syntax error: {problem}", path=shown, line=line,
                          hint="check the indentation and quoting around this line") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", path=shown) from None
    marks: dict[Loc, int] = {}
    if root is None:
        return None, marks
    constructor = yaml.SafeLoader("")
    return _to_data(root, (), marks, constructor, shown, _Expansion()), marks


def top_level_has_key(text: str, key: str) -> bool | None:
    """Whether the first document is a mapping with ``key`` among its own
    keys; None when the text does not parse. Walks the parser's events only
    (iterative, aliases left unexpanded): total on any input."""
    depth = 0
    key_position = True
    try:
        for event in yaml.parse(text, Loader=_EVENT_LOADER):
            if isinstance(event, (yaml.StreamStartEvent, yaml.DocumentStartEvent)):
                continue
            if depth == 0:
                if not isinstance(event, yaml.MappingStartEvent):
                    return False
                depth = 1
                continue
            if depth == 1:
                if isinstance(event, yaml.MappingEndEvent):
                    return False
                if key_position and isinstance(event, yaml.ScalarEvent) and event.value == key:
                    return True
                key_position = not key_position
                if isinstance(event, yaml.CollectionStartEvent):
                    depth += 1
            elif isinstance(event, yaml.CollectionStartEvent):
                depth += 1
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return None
    return False


_EVENT_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _syntax_problem(exc: yaml.MarkedYAMLError) -> tuple[int | None, str]:
    """The line to name and what went wrong. Inside a block mapping or list
    (wrong indentation, a stray item) the problem's own line is the one to
    fix, not the line where the enclosing mapping starts. A construct left
    open (a quote, a bracket) is named where it starts: the parser only
    notices it where it gives up, often the end of the file."""
    context, problem = exc.context_mark, exc.problem_mark
    enclosing = bool(exc.context and exc.context.startswith("while parsing a block"))
    if enclosing and problem is not None:
        text = exc.problem or "syntax error"
        if text.startswith("expected <block end>"):
            text = f"this line does not fit the indentation of the lines above ({text})"
        if context is not None and context.line != problem.line:
            what = exc.context.removeprefix("while parsing a ") if exc.context else "block"
            text += f" (inside the {what} that starts at line {context.line + 1})"
        return problem.line + 1, text
    mark = context or problem
    text = " ".join(p for p in (exc.context, exc.problem) if p)
    if context and problem and problem.line != context.line:
        text += f" (noticed at line {problem.line + 1})"
    return (mark.line + 1 if mark else None), text


def _to_data(
    node: yaml.Node, loc: Loc, marks: dict[Loc, int], constructor: yaml.SafeLoader, shown: str, expansion: _Expansion
) -> Any:
    expansion.visit(node)
    if isinstance(node, yaml.MappingNode):
        merged = 0  # the first pairs after flattening come from merge keys (<<): the mapping's own override them
        if any(k.tag == "tag:yaml.org,2002:merge" for k, _ in node.value):
            own = sum(k.tag != "tag:yaml.org,2002:merge" for k, _ in node.value)
            constructor.flatten_mapping(node)
            merged = len(node.value) - own
            if len(node.value) > MAX_MERGED_KEYS:
                raise _Refused(f"merge keys (<<) give this mapping more than {MAX_MERGED_KEYS:,} keys",
                               node.start_mark.line + 1, "merge fewer or smaller mappings")
        result: dict[Any, Any] = {}
        from_merge: set[Any] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError("a mapping key must be a plain value", path=shown, line=key_node.start_mark.line + 1)
            key = _scalar(constructor, key_node)
            if index < merged:
                if key in result:
                    continue  # an earlier merged mapping wins (YAML's merge rule)
                from_merge.add(key)
            elif key in from_merge:
                from_merge.discard(key)
            elif key in result:
                raise ConfigError(
                    f"duplicate key {key!r} (first at line {marks[loc + (key,)]})",
                    path=shown,
                    line=key_node.start_mark.line + 1,
                    hint="remove one of them",
                )
            marks[loc + (key,)] = key_node.start_mark.line + 1
            if isinstance(value_node, yaml.ScalarNode):
                # the first line of the value's text: a block scalar starts below its key
                block = 1 if value_node.style in ("|", ">") else 0
                start, end = value_node.start_mark, value_node.end_mark
                marks[loc + (key, CONTENT)] = TextLine(
                    start.line + 1 + block, raw=start.buffer[start.index : end.index] if start.buffer else "",
                    raw_line=start.line + 1, literal=value_node.style == "|",
                )  # fmt: skip
            result[key] = _to_data(value_node, loc + (key,), marks, constructor, shown, expansion)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            marks[loc + (index,)] = item.start_mark.line + 1
            items.append(_to_data(item, loc + (index,), marks, constructor, shown, expansion))
        return items
    return _scalar(constructor, node)


def _scalar(constructor: yaml.SafeLoader, node: yaml.Node) -> Any:
    value = constructor.construct_object(node, deep=True)
    # a "\ud83d\ude80" escape pair is the character it encodes; a lone surrogate cannot be written as UTF-8
    return clean(value) if isinstance(value, str) else value


def line_for(marks: dict[Loc, int], loc: Loc) -> int | None:
    while loc:
        if loc in marks:
            return marks[loc]
        loc = loc[:-1]
    return 1 if marks else None
