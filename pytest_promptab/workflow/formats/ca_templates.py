"""configurable-agents prompt templates (``{state.x}``, ``{x}``, ``{a.b}``,
node ``inputs:``) translated to promptab's Jinja2 templates.

configurable-agents replaces every ``{name}`` matching
``\\{([a-zA-Z_][a-zA-Z0-9_.]*)\\}`` by the node's input of that name, else by
the state value at that (dotted) path; all other text stays as it is. The
translation gives the same text: each placeholder becomes ``{{ path }}``, and
text between placeholders that Jinja2 would read (``{{``, ``{%``, ``{#``) is
kept verbatim in ``{% raw %}`` blocks. No newline is added or removed, so
lines inside a prompt keep their numbers.
"""

from __future__ import annotations

import difflib
import re

PLACEHOLDER = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_.]*)\}")
_JINJA = re.compile(r"\{[{%#]|[}%#]\}")


class UnknownName(Exception):
    """A placeholder names neither an input of the node nor a state field."""

    def __init__(self, name: str, known: list[str], line_offset: int) -> None:
        close = difflib.get_close_matches(state_path(name).split(".")[0], known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        super().__init__(
            f"{{{name}}} names neither an input of the node nor a state field{hint}; "
            f"known: {', '.join(known) or 'none'}"
        )
        self.name, self.line_offset = name, line_offset


def state_path(name: str) -> str:
    """``state.a.b`` -> ``a.b``; ``a.b`` stays."""
    return name.removeprefix("state.")


def translate(text: str, inputs: dict[str, str], state: set[str]) -> str:
    """``text`` as a Jinja2 template. ``inputs`` maps a node's local names to
    their (configurable-agents) references; ``state`` is the names known at
    that node (state fields and earlier outputs)."""
    out: list[str] = []
    pos = 0
    for match in PLACEHOLDER.finditer(text):
        out.append(_literal(text[pos:match.start()]))
        name = match.group(1)
        if name in inputs:
            out.append(reference(inputs[name], state, text[:match.start()].count("\n")))
        else:
            out.append(_expr(name, state, text[:match.start()].count("\n")))
        pos = match.end()
    out.append(_literal(text[pos:]))
    return "".join(out)


def reference(ref: str, state: set[str], line_offset: int = 0) -> str:
    """An ``inputs:`` value: a template (``"{state.topic}"``, text allowed) or
    a bare state path (``state.topic``, ``topic``)."""
    if PLACEHOLDER.search(ref):
        return translate(ref, {}, state)
    return _expr(ref.strip(), state, line_offset)


def _expr(name: str, state: set[str], line_offset: int) -> str:
    path = state_path(name)
    if path.split(".")[0] not in state:
        raise UnknownName(name, sorted(state), line_offset)
    return "{{ " + path + " }}"


def _literal(text: str) -> str:
    if not _JINJA.search(text):
        return text
    return "{% raw %}" + text + "{% endraw %}"
