"""Byte-exact rewriting of a workflow YAML: set node prompts, systems and
settings (and top-level provider keys) in the text, changing nothing else.

PyYAML's composed node tree gives the span of every value in the original
text. Each changed value's span is replaced by the new value written in the
style of the old one (a ``|`` block stays a ``|`` block at the same
indentation, a quoted scalar stays quoted, a plain one stays plain when that
is safe: see :mod:`pytest_promptab.apply.scalars`); a missing key is inserted
where a person would put it. Comments, key order, quoting, blank lines, line
endings and every other byte stay.
Shared values (anchors, aliases, merge keys) and explicit tags are refused
rather than guessed at, and the result is re-loaded and compared with the
expected data before it is returned: this module never produces a wrong file,
it raises :class:`ApplyError` instead.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import ApplyError
from ..workflow.variants import merge
from .scalars import STEP, STR_TAG, key_text, loads, render

__all__ = ["NodeChange", "WorkflowChange", "rewrite"]

_MERGE = "tag:yaml.org,2002:merge"
_INDICATORS = re.compile(r"[|>][0-9+-]*")
_HINT = "write the value out in place, or copy the winner's prompts into the file by hand"


@dataclass
class NodeChange:
    """New values for one node; ``None`` / empty means unchanged."""

    prompt: str | None = None
    system: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    """Keys set inside the node's ``settings`` (a dict over a mapping: key by key)."""


@dataclass
class WorkflowChange:
    nodes: dict[str, NodeChange]
    """By node id."""
    provider: dict[str, Any] = field(default_factory=dict)
    """Keys set in the top-level ``provider:``. Everywhere, a dict whose old
    value is a mapping too is set key by key, as the engine merges a variant."""
    keys: dict[str, Any] = field(default_factory=dict)
    """Nested keys set from the top level (``{"config": {"llm": {"temperature": 0.1}}}``:
    a configurable-agents variant's ``config_overrides``)."""


def rewrite(text: str, change: WorkflowChange, *, path: str = "<file>") -> str:
    """Return ``text`` with ``change`` applied, every untouched byte kept.

    Raises :class:`ApplyError` when the change cannot be made safely."""
    if not change.nodes and not change.provider and not change.keys:
        return text
    eol = _eol(text)
    # Work on text that ends with a line break, so that no edit has to care
    # about the end of the file; the break is taken off again if it can be.
    padded = bool(text) and not text.endswith("\n")
    rewriter = _Rewriter(text + eol if padded else text, eol, path)
    rewriter.apply(change)
    result = rewriter.result()
    if padded and result.endswith(eol) and _same(loads(result[: -len(eol)]), loads(result)):
        result = result[: -len(eol)]
    if result != text:
        _verify(text, result, change, path)
    return result


class _Composer(yaml.SafeLoader):
    """Composes the node tree and notes the nodes we must not rewrite."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.marked: dict[int, str] = {}

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        node: Node = super().compose_node(parent, index)
        if event.anchor is not None:  # an &anchor, or an *alias (which is the anchored node)
            self.marked[id(node)] = "a YAML anchor or alias (&name / *name)"
        elif getattr(event, "tag", None) is not None:
            self.marked.setdefault(id(node), "an explicit YAML tag (!tag)")
        return node


class _Rewriter:
    def __init__(self, text: str, eol: str, path: str) -> None:
        self.text, self.eol, self.path = text, eol, path
        self.loader = _Composer(text)
        try:
            self.root = self.loader.get_single_node()
        except yaml.YAMLError as exc:
            raise ApplyError(f"the file does not parse as YAML: {exc}", path=path) from None
        self.edits: list[tuple[int, int, int, str]] = []

    # -- walking the tree ------------------------------------------------
    def apply(self, change: WorkflowChange) -> None:
        root = self.root
        if not isinstance(root, MappingNode):
            raise ApplyError("the file's top level is not a mapping", path=self.path)
        self.guard(root, "the top-level mapping")
        if change.nodes:
            entry = self.get(root, "nodes")
            if entry is None or not isinstance(entry[1], SequenceNode):
                raise ApplyError("the file has no 'nodes:' list to rewrite", path=self.path)
            self.guard(entry[1], "nodes")
            items: dict[str, MappingNode] = {}
            for item in entry[1].value:
                ident = self.get(item, "id") if isinstance(item, MappingNode) else None
                if ident is not None and isinstance(ident[1], ScalarNode):
                    items[ident[1].value] = item  # type: ignore[assignment]
            for node_id, node_change in change.nodes.items():
                if node_id not in items:
                    raise ApplyError(
                        f"node {node_id!r} is not in the file (nodes: {', '.join(items) or 'none'})",
                        path=self.path,
                        hint="the file changed since the A/B test ran; run it again",
                    )
                self.node(items[node_id], node_change, f"nodes[{node_id}]")
        if change.provider:
            entry = self.get(root, "provider")
            if entry is None or not isinstance(entry[1], MappingNode):
                raise ApplyError("the winner overrides 'provider' but the file has no top-level 'provider:' mapping",
                                 path=self.path, hint=_HINT)
            self.set_keys(entry[1], change.provider, "provider")
        if change.keys:
            self.set_keys(root, change.keys, "")

    def node(self, item: MappingNode, change: NodeChange, where: str) -> None:
        self.guard(item, where)
        self.no_merge(item, where)
        prompt = self.get(item, "prompt")
        if prompt is None:
            raise ApplyError(f"{where} has no 'prompt:' key", path=self.path, line=_line(item))
        after = None
        if change.prompt is not None:
            after = self.replace(prompt, change.prompt, f"{where}.prompt", item.flow_style)
        if after is None:
            after = self.after_entry(prompt[1])
        if change.system is not None:
            system = self.get(item, "system")
            if system is not None:
                self.replace(system, change.system, f"{where}.system", item.flow_style)
            else:  # before the prompt, as in the spec's example, when the prompt key starts its line
                before = self.line_start(prompt[0])
                self.insert(item, [("system", change.system)], after if before is None else before, where)
        if change.settings:
            settings = self.get(item, "settings")
            if settings is None:
                self.insert(item, [("settings", dict(change.settings))], after, where)
            elif isinstance(settings[1], MappingNode):
                self.set_keys(settings[1], change.settings, f"{where}.settings")
            else:  # `settings:` left empty (null)
                self.replace(settings, dict(change.settings), f"{where}.settings", item.flow_style)

    def set_keys(self, mapping: MappingNode, values: dict[str, Any], where: str) -> None:
        self.guard(mapping, where)
        self.no_merge(mapping, where)
        missing = []
        for key, value in values.items():
            entry = self.get(mapping, key)
            if entry is None:
                missing.append((key, value))
            elif isinstance(value, dict) and isinstance(entry[1], MappingNode):
                self.set_keys(entry[1], value, f"{where}.{key}".lstrip("."))
            else:
                self.replace(entry, value, f"{where}.{key}".lstrip("."), mapping.flow_style)
        if missing:
            last = mapping.value[-1][1] if mapping.value else None
            self.insert(mapping, missing, self.after_entry(last) if last is not None else None, where)

    def get(self, mapping: MappingNode, key: str) -> tuple[ScalarNode, Node] | None:
        found = None
        for k, v in mapping.value:
            if isinstance(k, ScalarNode) and k.tag == STR_TAG and k.value == key:
                found = (k, v)  # the last one wins, as when loading
        return found

    def guard(self, node: Node, where: str, *, deep: bool = False) -> None:
        why = self.loader.marked.get(id(node))
        if why:
            raise ApplyError(f"{where} uses {why}; promptab does not rewrite shared or tagged values",
                             path=self.path, line=_line(node), hint=_HINT)
        if deep and isinstance(node, (MappingNode, SequenceNode)):
            for child in node.value:
                for sub in child if isinstance(child, tuple) else (child,):
                    self.guard(sub, where, deep=True)

    def no_merge(self, mapping: MappingNode, where: str) -> None:
        for key, _ in mapping.value:
            if key.tag == _MERGE:
                raise ApplyError(f"{where} uses a merge key (<<:); promptab does not rewrite merged mappings",
                                 path=self.path, line=_line(key), hint=_HINT)

    # -- edits -------------------------------------------------------------
    def replace(self, entry: tuple[ScalarNode, Node], new: Any, where: str, flow: bool | None) -> int | None:
        """Replace an existing value; return where a key inserted after this
        entry goes, or None when the value already equals ``new``."""
        key, old = entry
        self.guard(old, where, deep=True)
        if _same(self.loader.construct_object(old, deep=True), new):
            return None
        text, col = self.text, key.start_mark.column
        start, end = old.start_mark.index, old.end_mark.index
        chomp, ccol, width = None, col + STEP, 80
        if isinstance(old, ScalarNode) and old.style in ("|", ">"):
            indicators = _INDICATORS.match(text, start).group()  # type: ignore[union-attr]
            rest_from = start + len(indicators)
            chomp, ccol, width = self.block_metrics(old, col, indicators)
            x = self.block_end(old)
        elif isinstance(old, (MappingNode, SequenceNode)) and not old.flow_style:
            start = text.index(":", key.end_mark.index) + 1
            x = rest_from = self.line_end(self.content_end(old))
        else:
            rest_from = end
            x = self.line_end(end)
        out = render(new, old, col, bool(flow), ccol, width, chomp)
        lead = " " if start > 0 and text[start - 1] not in " \t\r\n" else ""
        rest = text[rest_from:self.line_end(rest_from)]
        if flow:
            self.edit(start, end, lead + (out.inline or ""))
            return None
        if out.inline is not None:
            if isinstance(old, ScalarNode) and old.style in ("|", ">"):
                self.edit(start, x, lead + out.inline + rest)
            else:
                self.edit(start, end if rest_from == end else x, lead + out.inline)
        elif out.keep:
            self.edit(start, self.blank_end(x), lead + out.head + rest + self.eol + "".join(s + self.eol for s in out.lines))
        else:
            self.edit(start, x, lead + out.head + rest + "".join(self.eol + s for s in out.lines))
        return self.blank_end(x) if out.keep or chomp == "+" else self.after_break(x)

    def insert(self, mapping: MappingNode, entries: list[tuple[str, Any]], pos: int | None, where: str) -> None:
        self.guard(mapping, where)
        if mapping.flow_style:
            if mapping.value:
                pos, sep = mapping.value[-1][1].end_mark.index, ", "
            else:
                pos, sep = self.text.index("{", mapping.start_mark.index) + 1, ""
            parts = []
            for key, value in entries:
                parts.append(f"{sep}{key_text(key)}: {render(value, None, 0, True).inline}")
                sep = ", "
            self.edit(pos, pos, "".join(parts))
            return
        assert pos is not None
        col, eol, chunk = mapping.start_mark.column, self.eol, ""
        for key, value in entries:
            out = render(value, None, col, False, col + STEP)
            chunk += " " * col + f"{key_text(key)}: " + (out.inline if out.inline is not None else out.head) + eol
            chunk += "".join(s + eol for s in out.lines)
        self.edit(pos, pos, chunk)

    def edit(self, start: int, end: int, new: str) -> None:
        self.edits.append((start, end, len(self.edits), new))

    def result(self) -> str:
        parts, pos = [], 0
        for start, end, _, new in sorted(self.edits):
            if start < pos:  # two changes touching one span: never guess
                raise ApplyError("two changes overlap in the file", path=self.path, hint=_HINT)
            parts += [self.text[pos:start], new]
            pos = end
        return "".join(parts) + self.text[pos:]

    # -- positions in the text ---------------------------------------------
    def line_end(self, pos: int) -> int:
        """Index of the line break ending the line of ``pos`` (or the end)."""
        j = self.text.find("\n", pos)
        if j < 0:
            return len(self.text)
        return j - 1 if j > pos and self.text[j - 1] == "\r" else j

    def after_break(self, pos: int) -> int:
        for brk in ("\r\n", "\n"):
            if self.text.startswith(brk, pos):
                return pos + len(brk)
        return pos

    def blank_end(self, pos: int) -> int:
        """Start of the first non-blank line after the line ending at ``pos``."""
        pos = self.after_break(pos)
        while pos < len(self.text):
            end = self.line_end(pos)
            if self.text[pos:end].strip(" \t") or end == len(self.text):
                break
            pos = self.after_break(end)
        return pos

    def line_start(self, key: Node) -> int | None:
        """Start of the key's line when only spaces precede the key on it."""
        start = self.text.rfind("\n", 0, key.start_mark.index) + 1
        return start if not self.text[start:key.start_mark.index].strip(" ") else None

    def block_end(self, node: ScalarNode) -> int:
        """End of a block scalar's last content line (its header's end if none)."""
        head_end = self.line_end(node.start_mark.index)
        pos, last = self.after_break(head_end), head_end
        while pos < node.end_mark.index:
            end = self.line_end(pos)
            if self.text[pos:end].strip(" \t"):
                last = end
            if end >= node.end_mark.index or self.after_break(end) == end:
                break
            pos = self.after_break(end)
        return last

    def block_metrics(self, node: ScalarNode, col: int, indicators: str) -> tuple[str, int, int]:
        """(chomping indicator, content column, widest line) of a block scalar."""
        digits = re.sub(r"\D", "", indicators)
        content = self.text[self.after_break(self.line_end(node.start_mark.index)):self.block_end(node)]
        lines = [s for s in content.replace("\r", "").split("\n") if s.strip(" \t")]
        ccol = col + int(digits) if digits else (len(lines[0]) - len(lines[0].lstrip(" ")) if lines else col + STEP)
        chomp = "+" if "+" in indicators else "-" if "-" in indicators else ""
        return chomp, ccol, max((len(s) for s in lines), default=80)

    def content_end(self, node: Node) -> int:
        if isinstance(node, ScalarNode) and node.style in ("|", ">"):
            return self.block_end(node)
        if isinstance(node, MappingNode) and not node.flow_style and node.value:
            return self.content_end(node.value[-1][1])
        if isinstance(node, SequenceNode) and not node.flow_style and node.value:
            return self.content_end(node.value[-1])
        return node.end_mark.index

    def after_entry(self, value: Node) -> int:
        """Where a key inserted after the entry holding ``value`` goes."""
        end = self.content_end(value)
        keep = isinstance(value, ScalarNode) and value.style in ("|", ">") and "+" in _INDICATORS.match(
            self.text, value.start_mark.index).group()  # type: ignore[union-attr]
        return self.blank_end(end) if keep else self.after_break(self.line_end(end))


def _eol(text: str) -> str:
    first = text.find("\n")
    return "\r\n" if first > 0 and text[first - 1] == "\r" else "\n"


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 is not 1.0 nor True)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def _expected(data: Any, change: WorkflowChange) -> Any:
    """The file's data with ``change`` applied: what the result must load as."""
    data = copy.deepcopy(data)
    nodes = {str(node.get("id")): node for node in data.get("nodes") or [] if isinstance(node, dict)}
    for node_id, node_change in change.nodes.items():
        node = nodes[node_id]
        if node_change.prompt is not None:
            node["prompt"] = node_change.prompt
        if node_change.system is not None:
            node["system"] = node_change.system
        if node_change.settings:
            node["settings"] = merge(node.get("settings") or {}, node_change.settings)
    if change.provider:
        data["provider"] = merge(data["provider"], change.provider)
    return merge(data, change.keys) if change.keys else data


def _verify(text: str, result: str, change: WorkflowChange, path: str) -> None:
    try:
        got = yaml.safe_load(result)
    except yaml.YAMLError as exc:
        got = exc
    if not _same(got, _expected(yaml.safe_load(text), change)):
        raise ApplyError(
            "the rewritten file would not load as the winner's configuration, so it was not written",
            path=path,
            hint=_HINT + "; please report this file to pytest-promptab",
        )
