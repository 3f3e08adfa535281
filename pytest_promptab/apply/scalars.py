"""Writing one YAML value as text for :mod:`pytest_promptab.apply.rewrite`,
in the style of the value it replaces (SPEC section 8): a ``|`` block stays a
``|`` block, a ``>`` block is re-folded (never inside a template tag), a
quoted scalar stays quoted on one line, with escapes for line breaks (a
single-quoted one becomes double-quoted when it must hold a line break or a
control character), and a plain one stays plain when that is safe (a plain
value that gains line breaks becomes a ``|`` block); anything else is
double-quoted. Every candidate is loaded back and must give the value, so a
style is only used when it writes the value exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

__all__ = ["STEP", "STR_TAG", "Out", "key_text", "loads", "render"]

STR_TAG = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_WIDE = 10**9
STEP = 2
"""Indentation of new block scalars relative to their key."""
_NONPRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ODD_BREAKS = re.compile("[\r\x85\u2028\u2029\ufeff]")
"""Characters PyYAML reads as line breaks (or a BOM): only double quotes keep them."""
_TEMPLATE_TAGS = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_FOLD_MIN_WIDTH = 60
"""A re-folded ``>`` block wraps at the old block's widest line, at least this."""


@dataclass
class Out:
    """A value ready to write: ``inline`` text, or a block scalar's
    indicators (``|-``) and content lines (indented, without line breaks)."""

    inline: str | None = None
    head: str = ""
    lines: list[str] = field(default_factory=list)

    @property
    def keep(self) -> bool:
        return self.head.endswith("+")


def render(value: Any, old: Node | None, col: int, flow: bool, ccol: int = 0, width: int = 80,
           chomp: str | None = None) -> Out:
    """``value`` written in the style of ``old`` (a new key: plain when safe).

    ``col`` is the key's column, ``flow`` whether the value sits in a flow
    mapping; for a block scalar, ``ccol`` is its content column, ``width`` its
    widest line and ``chomp`` its old chomping indicator."""
    if not isinstance(value, str):
        return Out(_dump_inline(value))
    style = old.style if isinstance(old, ScalarNode) else None
    if not flow and (style in ("|", ">") or (style is None and "\n" in value)):
        # A `>` block is re-folded by PyYAML's emitter; when that cannot be
        # done safely it becomes a `|` block, and a value no block scalar can
        # hold (control characters, odd line breaks) falls back to "...".
        block = (_folded(value, col, ccol, width) if style == ">" else None) or _literal(value, col, ccol, chomp)
        if block is not None:
            return block
    if style == "'":  # one line of single quotes, else double quotes with escapes (a line break is "\n")
        quoted = _quoted(value, "'")
        if quoted is not None:
            return Out(quoted)
    if style is None and _plain_ok(value, flow):
        return Out(value)
    return Out(_quoted(value, '"'))


def _block_column(value: str, col: int, ccol: int) -> int | None:
    """The content column of a block scalar holding ``value`` under a key in
    column ``col``: ``ccol`` when 1 to 9 deeper, else :data:`STEP` deeper; None
    when no block scalar can hold ``value`` (control characters, odd breaks)."""
    if _NONPRINTABLE.search(value) or _ODD_BREAKS.search(value):
        return None
    return ccol if 1 <= ccol - col <= 9 else col + STEP


def _literal(value: str, col: int, wanted_ccol: int, old_chomp: str | None) -> Out | None:
    ccol = _block_column(value, col, wanted_ccol)
    if ccol is None:
        return None
    if not value.endswith("\n"):
        chomp = "-"
    elif value == "\n" or value.endswith("\n\n") or old_chomp == "+":
        chomp = "+"
    else:
        chomp = ""
    lines = value.split("\n") if value else []
    if chomp != "-":
        lines = lines[:-1]
    digit = str(ccol - col) if value[:1] in (" ", "\n") else ""
    out = Out(head="|" + digit + chomp, lines=[" " * ccol + s if s else "" for s in lines])
    return out if _block_loads(out, col, value) else None


def _folded(value: str, col: int, wanted_ccol: int, width: int) -> Out | None:
    ccol = _block_column(value, col, wanted_ccol)
    if ccol is None:
        return None
    # Never fold inside a template tag: its spaces are glued with a private-use
    # character (printable, never a break point) while the emitter folds.
    glue = next(chr(c) for c in range(0xE000, 0xF900) if chr(c) not in value)
    protected = _TEMPLATE_TAGS.sub(lambda m: m.group().replace(" ", glue), value)
    node = MappingNode(_MAP, [(ScalarNode(STR_TAG, "k"), ScalarNode(STR_TAG, protected, style=">"))])
    width = max(width, _FOLD_MIN_WIDTH) - ccol + 2  # the emitter indents by 2 under a key in column 0
    dumped = yaml.serialize(node, width=width, allow_unicode=True).replace(glue, " ")
    dumped = dumped[:-4] if dumped.endswith("\n...\n") else dumped
    if not dumped.startswith("k: >"):
        return None
    head, _, body = dumped[3:].partition("\n")
    shift = " " * (ccol - 2)
    lines = [shift + s if s else "" for s in body.split("\n")[:-1]]
    out = Out(head=re.sub(r"\d", str(ccol - col), head), lines=lines)
    return out if _block_loads(out, col, value) else None


def _block_loads(out: Out, col: int, value: str) -> bool:
    doc = " " * col + "k: " + out.head + "\n" + "".join(s + "\n" for s in out.lines)
    return loads(doc) == {"k": value}


def _quoted(value: str, style: str) -> str | None:
    dumped = yaml.serialize(ScalarNode(STR_TAG, value, style=style), width=_WIDE, allow_unicode=True)
    dumped = dumped[:-1] if dumped.endswith("\n") else dumped
    if "\n" in dumped or not dumped.startswith(style):
        return None
    ok = loads("k: " + dumped) == {"k": value} and loads("{k: " + dumped + "}") == {"k": value}
    return dumped if ok else None


def _plain_ok(value: str, flow: bool) -> bool:
    if not value or value != value.strip() or _NONPRINTABLE.search(value) or _ODD_BREAKS.search(value):
        return False
    if "\n" in value or "\t" in value:
        return False
    docs = ["k: " + value] + (["{k: " + value + "}"] if flow else [])
    return all(loads(doc) == {"k": value} for doc in docs)


def _dump_inline(value: Any) -> str:
    dumped: str = yaml.safe_dump(value, default_flow_style=True, width=_WIDE, allow_unicode=True, sort_keys=False)
    return dumped[: -len("\n...\n")] if dumped.endswith("\n...\n") else dumped.rstrip("\n")


def key_text(key: str) -> str:
    """A mapping key as YAML text: plain when safe, else quoted."""
    return key if _plain_ok(key, True) else _quoted(key, '"') or _dump_inline(key)


def loads(doc: str) -> Any:
    """The data of a YAML document, or None when it does not parse."""
    try:
        return yaml.safe_load(doc)
    except yaml.YAMLError:
        return None
