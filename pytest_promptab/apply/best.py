"""``--promptab-apply-best``: decide whether an A/B test's winner goes into
its workflow file, and if so write it there safely.

The rules (SPEC section 8): nothing after an interrupted session, nor for an
A/B test with missing runs, nor without a significant winner other than the
baseline, nor when the winner's share of FAILED runs is above
``ab_test.max_error_rate``; a file that changed since it was collected is left alone.
Otherwise ``<file>.bak`` is written first, then the rewritten text (see
:mod:`pytest_promptab.apply.rewrite`) goes to a temporary file in the same
folder and is moved over the file atomically, keeping its permissions. Every
outcome is an :class:`ApplyDecision` whose ``message`` is the one line the
terminal shows.
"""

from __future__ import annotations

import codecs
import difflib
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..analysis.summary import ABTestSummary
from ..errors import ApplyError
from ..fileio import atomic_write_bytes
from ..workflow.schema import WorkflowConfig
from .rewrite import NodeChange, WorkflowChange, rewrite

__all__ = ["ApplyDecision", "apply_winner", "change_for_variant", "planned_sha256", "refusal", "registry_changes",
           "rewritten"]


@dataclass
class ApplyDecision:
    file: str
    ab_test: str
    applied: bool
    variant: str | None
    """The variant written into the file, or the winner that was not."""
    message: str
    """One line for the terminal: what was decided and why."""
    kind: str = "applied"
    """``applied`` (or would be), ``already`` (the file has it), ``decision``
    (the saved decision does not allow applying) or ``file`` (the file refused)."""
    diff: str | None = None
    """With ``dry_run``: the unified diff that applying would write."""


def change_for_variant(workflow: WorkflowConfig, variant_name: str) -> WorkflowChange:
    """What must change in the file for its baseline to become ``variant_name``.

    The variant's per-node prompts, systems and settings keys (merged over the
    node's settings), and its provider keys (merged into the top-level
    ``provider:``): the merges :mod:`pytest_promptab.workflow.variants` does when it
    runs the variant, so the file then runs as the variant did. (A node's own
    ``provider:`` wins over both, in the A/B test and after.) The baseline
    itself is no change."""
    ab_test = workflow.ab_test
    if variant_name == ab_test.baseline:
        return WorkflowChange(nodes={})
    variant = next((v for v in ab_test.variants if v.name == variant_name), None)
    if variant is None:
        raise ApplyError(
            f"A/B test {ab_test.name!r} has no variant {variant_name!r}; "
            f"variants are: {', '.join(ab_test.variant_names)}"
        )
    nodes: dict[str, NodeChange] = {}
    for node in workflow.nodes:
        refs = node.registry_refs  # a registry text is not in the file: the registry gets it (registry_changes)
        change = NodeChange(
            prompt=None if "prompt" in refs else variant.prompts.get(node.id),
            system=None if "system" in refs else variant.system.get(node.id),
            settings=dict(variant.settings.get(node.id, {})),
        )
        if change.prompt is not None or change.system is not None or change.settings:
            nodes[node.id] = change
    provider = dict(variant.provider or {})
    if provider and workflow.provider is None:
        raise ApplyError(
            f"variant {variant_name!r} overrides 'provider' but the file has no top-level 'provider:'",
            hint="copy the variant's provider into the nodes by hand",
        )
    return WorkflowChange(nodes=nodes, provider=provider)


def registry_changes(workflow: WorkflowConfig, variant_name: str) -> list[str]:
    """The texts ``variant_name`` changes that come from MLflow's prompt
    registry, not the file (``node 'reply' prompt (support@production)``):
    apply-best registers them as new versions instead of editing the file."""
    variant = next((v for v in workflow.ab_test.variants if v.name == variant_name), None)
    if variant is None:
        return []
    out = []
    for node in workflow.nodes:
        for key, ref in node.registry_refs.items():
            current = node.prompt_text if key == "prompt" else node.system_text
            new = (variant.prompts if key == "prompt" else variant.system).get(node.id)
            if new is not None and new != current:
                out.append(f"node {node.id!r} {key} ({ref.registry})")
    return out


def refusal(summary: ABTestSummary, *, interrupted: bool) -> str | None:
    """Why the A/B test's decision does not allow applying its winner, or
    None when it does: the same rules for ``--promptab-apply-best`` and for
    ``promptab apply`` (which reads the decision from a saved session)."""
    winner = summary.winner if summary.has_significant_winner else None
    if interrupted:
        return "the session was interrupted"
    if not summary.complete:
        return "not every run of the A/B test ran (deselected or stopped early)"
    if winner is None:  # the reason says which: no significant winner, gates, no runs
        return summary.winner_reason or "no significant winner"
    won = next((v for v in summary.variants if v.name == winner), None)
    if won is not None and won.error_rate is not None and won.error_rate > summary.max_error_rate:
        n = won.failed_runs
        return (
            f"{winner!r} has {n} failed run{'s' if n != 1 else ''} of {won.runs} ({won.error_rate:.0%}), "
            f"above ab_test.max_error_rate {summary.max_error_rate:g}"
        )
    violated = next((v.violated for v in summary.variants if v.name == winner), [])
    if violated:
        return f"{winner!r} violates {', '.join(violated)}"
    return None


def apply_winner(
    path: Path,
    workflow: WorkflowConfig,
    summary: ABTestSummary,
    *,
    collected_sha256: str,
    interrupted: bool,
    write: bool = True,
    later: bool = False,
    dry_run: bool = False,
    applied_sha256: str | None = None,
    registry: bool = True,
) -> ApplyDecision:
    """Write the A/B test's winner into ``path`` when the rules allow it.

    Never raises for a refusal: the decision says what happened and why.
    ``write=False`` decides without writing (``applied`` then means "would be
    applied"): the gates judge that winner as the deploy candidate before the
    session end writes it. ``later`` is ``promptab apply``: ``summary`` comes
    from a saved session, ``workflow`` from the file as it is now, and a file
    that already holds exactly what applying writes is "already applied".
    ``dry_run`` computes the diff (in ``diff``) and writes nothing.
    ``applied_sha256`` (from the session, when it has it): the sha256 of the
    bytes applying writes, so a changed file is "already applied" exactly
    when it holds those bytes. A winner's text for a node whose text comes
    from MLflow's prompt registry goes there (registered at session end, its
    alias moved), not into the file: ``registry`` False (MLflow off) and
    ``later`` (``promptab apply``, offline) refuse such a winner."""
    path = Path(path)
    label = summary.file or str(path)
    winner = summary.winner if summary.has_significant_winner else None

    def refuse(why: str, kind: str = "file") -> ApplyDecision:
        return ApplyDecision(label, summary.name, False, winner, f"{label}: not applied: {why}", kind)

    why = refusal(summary, interrupted=interrupted)
    if why is not None or winner is None:
        return refuse(why or "no significant winner", "decision")
    if later and workflow.ab_test.name != summary.name:
        return refuse(f"the A/B test {summary.name!r} is not in the file any more")
    to_registry = registry_changes(workflow, winner)
    if to_registry and later:
        return refuse(f"{', '.join(to_registry)} comes from MLflow's prompt registry, which promptab apply does "
                      "not write: run the session with --promptab-apply-best and MLflow on")
    if to_registry and not registry:
        return refuse(f"{', '.join(to_registry)} comes from MLflow's prompt registry, and MLflow is off "
                      "(--promptab-no-mlflow): nothing was written")
    in_registry = f"; to MLflow's prompt registry: {', '.join(to_registry)}" if to_registry else ""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return refuse(f"cannot read the file ({exc.strerror or exc})")
    changed = hashlib.sha256(data).hexdigest() != collected_sha256
    if changed and not later:
        return refuse("file changed since collection")
    if changed and applied_sha256 is not None:  # the session knows the bytes applying writes
        if hashlib.sha256(data).hexdigest() == applied_sha256:
            return ApplyDecision(label, summary.name, True, winner, f"{label}: already applied {winner!r}", "already")
        return refuse("the file changed since that session ran (its sha256 differs); run the session again")
    try:
        new_data = rewritten(data, workflow, winner, label)
    except UnicodeError:
        return refuse(f"the file is not valid {_encoding(data)} text")
    except ApplyError as exc:
        return refuse(_one_line(exc))
    if new_data == data and to_registry and not changed:  # the registry gets it all
        verb = "would apply" if dry_run or not write else "applied"
        return ApplyDecision(label, summary.name, True, winner, f"{label}: {verb} {winner!r} "
                             f"({_why(summary, winner)}){in_registry}; the file is unchanged", diff="" if dry_run else None)
    if new_data == data:
        if later:  # the file already holds the winner's prompts and settings
            return ApplyDecision(label, summary.name, True, winner, f"{label}: already applied {winner!r}", "already")
        return refuse(f"the file already has the prompts of {winner!r}")
    if changed:
        return refuse("the file changed since that session ran (its sha256 differs); run the session again")
    if dry_run:
        encoding = _encoding(data)
        diff = "".join(difflib.unified_diff(data.decode(encoding).splitlines(True),
                                            new_data.decode(encoding).splitlines(True), f"a/{label}", f"b/{label}"))
        return ApplyDecision(label, summary.name, True, winner, f"{label}: would apply {winner!r} "
                             f"({_why(summary, winner)}){in_registry}", diff=diff)
    if not write:
        return ApplyDecision(label, summary.name, True, winner, f"{label}: would apply {winner!r}{in_registry}")
    try:
        _replace_file(path, data, new_data)
    except OSError as exc:
        return refuse(f"cannot write the file ({exc.strerror or exc}); it was left as it was")
    return ApplyDecision(label, summary.name, True, winner,
                         f"{label}: applied {winner!r} ({_why(summary, winner)}){in_registry}")


def _change(text: str, workflow: WorkflowConfig, winner: str) -> WorkflowChange:
    """What to write: a configurable-agents file gets the winner's prompt as
    that file writes it (its ``{state.x}`` templates), in the node's
    ``prompt:``, and its ``config_overrides`` values where they point
    (``config.llm.temperature``)."""
    from ..workflow.formats.ca_parts import Located
    from ..workflow.formats.configurable_agents import source_change

    try:
        found = source_change(text, winner)
    except Located as exc:
        raise ApplyError(exc.message, hint=exc.hint) from None
    except Exception:  # noqa: BLE001 - not parseable here: the promptab path decides
        found = None
    if found is None:
        return change_for_variant(workflow, winner)
    prompts, keys = found
    return WorkflowChange(nodes={node_id: NodeChange(prompt=prompt) for node_id, prompt in prompts.items()},
                          keys=keys)


def rewritten(data: bytes, workflow: WorkflowConfig, winner: str, label: str) -> bytes:
    """The file's bytes with ``winner`` written in, in the file's encoding.
    Raises ApplyError (a value it cannot rewrite) or UnicodeError."""
    encoding = _encoding(data)
    text = data.decode(encoding)
    return rewrite(text, _change(text, workflow, winner), path=label).encode(encoding)


def planned_sha256(path: Path, workflow: WorkflowConfig, summary: ABTestSummary, *, collected_sha256: str,
                   applied: bool) -> str | None:
    """The sha256 of the bytes applying the winner writes into ``path`` (saved
    with the session for ``promptab apply``), or None when the decision does
    not allow applying or the file is not the collected one any more.
    ``applied``: apply-best already wrote them, so they are the file's bytes."""
    if refusal(summary, interrupted=False) is not None or summary.winner is None:
        return None
    try:
        data = Path(path).read_bytes()
        if applied:
            return hashlib.sha256(data).hexdigest()
        if hashlib.sha256(data).hexdigest() != collected_sha256:
            return None
        return hashlib.sha256(rewritten(data, workflow, summary.winner, summary.file)).hexdigest()
    except (OSError, UnicodeError, ApplyError):
        return None


def _why(summary: ABTestSummary, winner: str) -> str:
    """``pass_rate +0.30, p=0.002``: the objective's difference and p-value."""
    from ..analysis.stats import (  # numbers as the summary table shows them
        format_number,
        format_p,
    )

    comparison = next((v.comparison for v in summary.variants if v.name == winner), None)
    if comparison is None or comparison.diff is None:
        return summary.winner_reason or f"best on {summary.objective}"
    text = f"{comparison.metric} {format_number(comparison.diff, comparison.metric, signed=True)}"
    p = comparison.p_adjusted if comparison.p_adjusted is not None else comparison.p_value
    return text if p is None else f"{text}, {format_p(p)}"


def _one_line(exc: ApplyError) -> str:
    text = exc.message + (f" (line {exc.line})" if exc.line else "") + (f"; {exc.hint}" if exc.hint else "")
    return " ".join(text.split())


def _encoding(data: bytes) -> str:
    """The file's encoding; a BOM stays in the text so it is written back."""
    if data.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le"
    if data.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be"
    return "utf-8"


def _replace_file(path: Path, old: bytes, new: bytes) -> None:
    """Back up ``old`` to ``<file>.bak``, then put ``new`` in place atomically."""
    target = Path(os.path.realpath(path))  # a symlink stays a symlink
    mode = stat.S_IMODE(target.stat().st_mode)
    atomic_write_bytes(path.with_name(path.name + ".bak"), old, mode)
    atomic_write_bytes(target, new, mode)
