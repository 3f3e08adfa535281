"""--promptab-apply-best decisions and the safe replacement of the file.

Every refusal must leave the file exactly as it was (bytes and mtime) and say
why in one line; an applied winner leaves a byte-exact backup, keeps the
file's permissions and leaves no temporary file behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_promptab.analysis.summary import ABTestSummary, Comparison, VariantSummary
from pytest_promptab.apply import best as apply_best
from pytest_promptab.apply.best import ApplyDecision, apply_winner, change_for_variant
from pytest_promptab.apply.rewrite import NodeChange
from pytest_promptab.errors import ApplyError
from pytest_promptab.workflow.schema import WorkflowConfig

CORPUS = Path(__file__).parent / "rewrite_corpus"
OLD_MTIME_NS = 1_600_000_000_000_000_000


def _summary(
    *,
    winner: str | None = "empathetic",
    failed_runs: int = 0,
    complete: bool = True,
    winner_reason: str = "",
    violated: list[str] | None = None,
    metric: str = "pass_rate",
    diff: float = 0.3,
    p_adjusted: float | None = 0.002,
    runs: int = 10,
    max_error_rate: float = 0.05,
) -> ABTestSummary:
    comparison = Comparison(
        variant="empathetic", metric=metric, baseline_value=0.6, value=0.6 + diff, diff=diff,
        ci_low=0.1, ci_high=0.5, p_value=0.001, p_adjusted=p_adjusted, test="fisher",
        significant=True, better=True,
    )
    variants = [
        VariantSummary(name="baseline", role="baseline", runs=10, failed_runs=0, aggregates={},
                       pass_rate=0.6, pass_rate_ci=(0.31, 0.83)),
        VariantSummary(name="empathetic", role="challenger", runs=runs, failed_runs=failed_runs, aggregates={},
                       pass_rate=0.9, pass_rate_ci=(0.6, 0.98), comparison=comparison,
                       winner=winner == "empathetic", violated=violated or []),
        VariantSummary(name="terse", role="challenger", runs=10, failed_runs=0, aggregates={},
                       pass_rate=0.5, pass_rate_ci=(0.24, 0.76)),
    ]
    return ABTestSummary(
        file="examples/support.yaml", workflow="support-reply", name="reply-tone",
        nodeid="examples/support.yaml::reply-tone", baseline="baseline", objective=metric, goal="max",
        alpha=0.05, variants=variants, winner=winner, winner_reason=winner_reason, complete=complete,
        failed_runs=failed_runs, max_error_rate=max_error_rate,
    )


@pytest.fixture
def workflow_file(tmp_path: Path) -> Path:
    path = tmp_path / "support.yaml"
    shutil.copyfile(CORPUS / "spec_example.input", path)
    path.chmod(0o640)
    os.utime(path, ns=(OLD_MTIME_NS, OLD_MTIME_NS))
    return path


def _workflow(path: Path) -> WorkflowConfig:
    return WorkflowConfig.model_validate(yaml.safe_load(path.read_bytes().decode("utf-8")))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _apply(path: Path, summary: ABTestSummary, **kwargs: Any) -> ApplyDecision:
    options: dict[str, Any] = {"collected_sha256": _sha(path), "interrupted": False, **kwargs}
    return apply_winner(path, _workflow(path), summary, **options)


def test_applies_the_winner_with_backup_and_permissions(workflow_file: Path) -> None:
    original = workflow_file.read_bytes()
    decision = _apply(workflow_file, _summary())
    assert decision == ApplyDecision(
        file="examples/support.yaml", ab_test="reply-tone", applied=True, variant="empathetic",
        message="examples/support.yaml: applied 'empathetic' (pass_rate +0.30, p=0.002)",
    )
    assert workflow_file.read_bytes() == (CORPUS / "spec_example.expected").read_bytes()
    backup = workflow_file.with_name("support.yaml.bak")
    assert backup.read_bytes() == original
    assert workflow_file.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in workflow_file.parent.iterdir()) == ["support.yaml", "support.yaml.bak"]


def test_a_winner_with_errored_runs_within_max_error_rate_is_applied(workflow_file: Path) -> None:
    # 2 of 50 runs FAILED (4%): within the default max_error_rate of 5%
    assert _apply(workflow_file, _summary(failed_runs=2, runs=50)).applied


def test_applying_twice_changes_nothing(workflow_file: Path) -> None:
    original = workflow_file.read_bytes()
    assert _apply(workflow_file, _summary()).applied
    applied = workflow_file.read_bytes()
    os.utime(workflow_file, ns=(OLD_MTIME_NS, OLD_MTIME_NS))

    # The collected workflow is the original one: its variant's prompts are
    # already in the file, so there is nothing left to write.
    again = apply_winner(workflow_file, WorkflowConfig.model_validate(yaml.safe_load(original)), _summary(),
                         collected_sha256=_sha(workflow_file), interrupted=False)
    assert not again.applied
    assert again.message == "examples/support.yaml: not applied: the file already has the prompts of 'empathetic'"
    assert workflow_file.read_bytes() == applied
    assert workflow_file.stat().st_mtime_ns == OLD_MTIME_NS
    assert workflow_file.with_name("support.yaml.bak").read_bytes() == original


@pytest.mark.parametrize(
    ("summary", "options", "why"),
    [
        (_summary(), {"interrupted": True}, "the session was interrupted"),
        (_summary(failed_runs=2), {}, "'empathetic' has 2 failed runs of 10 (20%), above ab_test.max_error_rate 0.05"),
        (_summary(failed_runs=1, runs=100, max_error_rate=0.0), {},
         "'empathetic' has 1 failed run of 100 (1%), above ab_test.max_error_rate 0"),
        (_summary(complete=False), {}, "not every run of the A/B test ran (deselected or stopped early)"),
        (_summary(winner="baseline"), {}, "no significant winner"),
        (_summary(winner=None), {}, "no significant winner"),
        (_summary(winner="baseline", winner_reason="no significant winner (closest: empathetic: p=0.21)"), {},
         "no significant winner (closest: empathetic: p=0.21)"),
        (_summary(winner="baseline", winner_reason="no challenger passed the gates: empathetic violates a FAIL gate"),
         {}, "no challenger passed the gates: empathetic violates a FAIL gate"),
        (_summary(violated=["cost_usd.mean<=0.002"]), {}, "'empathetic' violates cost_usd.mean<=0.002"),
        (_summary(), {"collected_sha256": "0" * 64}, "file changed since collection"),
    ],
)
def test_refusals_leave_the_file_untouched(
    workflow_file: Path, summary: ABTestSummary, options: dict[str, Any], why: str
) -> None:
    before = workflow_file.read_bytes()
    decision = _apply(workflow_file, summary, **options)
    assert not decision.applied
    assert decision.message == f"examples/support.yaml: not applied: {why}"
    assert "\n" not in decision.message
    assert workflow_file.read_bytes() == before
    assert workflow_file.stat().st_mtime_ns == OLD_MTIME_NS
    assert [p.name for p in workflow_file.parent.iterdir()] == ["support.yaml"]


def test_rewrite_refusal_leaves_the_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "shared.yaml"
    shutil.copyfile(CORPUS / "refuse_anchor.input", path)
    os.utime(path, ns=(OLD_MTIME_NS, OLD_MTIME_NS))
    before = path.read_bytes()
    summary = _summary(winner="winner")
    summary.variants[1].name = "winner"
    decision = _apply(path, summary)
    assert not decision.applied and decision.variant == "winner"
    assert decision.message.startswith(
        "examples/support.yaml: not applied: nodes[first].prompt uses a YAML anchor or alias (&name / *name)"
    )
    assert "(line 5)" in decision.message and "\n" not in decision.message
    assert path.read_bytes() == before and path.stat().st_mtime_ns == OLD_MTIME_NS
    assert [p.name for p in tmp_path.iterdir()] == ["shared.yaml"]


@pytest.mark.parametrize(("bom", "encoding"), [("", "utf-8"), ("\ufeff", "utf-8"), ("\ufeff", "utf-16-le")])
def test_crlf_bom_and_encoding_survive(tmp_path: Path, bom: str, encoding: str) -> None:
    path = tmp_path / "crlf.yaml"
    path.write_bytes((bom + (CORPUS / "crlf.input").read_bytes().decode()).encode(encoding))
    summary = _summary(winner="winner")
    summary.variants[1].name = "winner"
    workflow = WorkflowConfig.model_validate(yaml.safe_load((CORPUS / "crlf.input").read_bytes().decode()))
    decision = apply_winner(path, workflow, summary, collected_sha256=_sha(path), interrupted=False)
    assert decision.applied, decision.message
    expected = (bom + (CORPUS / "crlf.expected").read_bytes().decode()).encode(encoding)
    assert path.read_bytes() == expected


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_a_symlinked_file_stays_a_symlink(workflow_file: Path) -> None:
    link = workflow_file.with_name("link.yaml")
    link.symlink_to(workflow_file.name)
    assert _apply(link, _summary()).applied
    assert link.is_symlink()
    assert workflow_file.read_bytes() == (CORPUS / "spec_example.expected").read_bytes()
    assert link.with_name("link.yaml.bak").read_bytes() == (CORPUS / "spec_example.input").read_bytes()


def test_a_failed_write_leaves_the_file_and_no_temp_file(workflow_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = workflow_file.read_bytes()

    def refuse(src: str, dst: str) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(apply_best.os, "replace", refuse)
    decision = _apply(workflow_file, _summary())
    assert not decision.applied
    assert decision.message == (
        "examples/support.yaml: not applied: cannot write the file (Permission denied); it was left as it was"
    )
    assert workflow_file.read_bytes() == before
    assert [p.name for p in workflow_file.parent.iterdir()] == ["support.yaml"]


@pytest.mark.parametrize(
    ("metric", "diff", "p", "shown"),
    [
        ("pass_rate", 0.3, 0.002, "pass_rate +0.30, p=0.002"),
        ("pass_rate", 0.25, 0.0004, "pass_rate +0.25, p<0.001"),
        ("cost_usd", -0.00042, 0.01, "cost_usd -0.00042, p=0.010"),
        ("score", 0.1, None, "score +0.10"),
    ],
)
def test_applied_message_says_why(workflow_file: Path, metric: str, diff: float, p: float | None, shown: str) -> None:
    summary = _summary(metric=metric, diff=diff, p_adjusted=p)
    if p is None:
        summary.variants[1].comparison.p_value = None  # type: ignore[union-attr]
    assert _apply(workflow_file, summary).message == f"examples/support.yaml: applied 'empathetic' ({shown})"


def test_change_for_variant() -> None:
    workflow = WorkflowConfig.model_validate(yaml.safe_load((CORPUS / "flow.input").read_text()))
    change = change_for_variant(workflow, "winner")
    assert change.nodes == {
        "classify": NodeChange(prompt="Classify as billing, bug or feature:\n{{ email }}", settings={"top_p": 0.9}),
        "reply": NodeChange(prompt="Reply kindly to: {{ email }}", settings={"temperature": 0.3, "seed": 7}),
        "polish": NodeChange(system="You edit text."),
    }
    assert change.provider == {"model": "gpt-4o", "settings": {"temperature": 0.1}}
    assert change_for_variant(workflow, "baseline").nodes == {}
    with pytest.raises(ApplyError, match="has no variant 'nope'; variants are: baseline, winner"):
        change_for_variant(workflow, "nope")


def test_change_for_variant_needs_a_top_level_provider_for_provider_overrides() -> None:
    data = yaml.safe_load((CORPUS / "flow.input").read_text())
    provider = data.pop("provider")
    for node in data["nodes"]:
        node["provider"] = provider
    with pytest.raises(ApplyError, match="overrides 'provider' but the file has no top-level 'provider:'"):
        change_for_variant(WorkflowConfig.model_validate(data), "winner")


@pytest.mark.parametrize(
    "name", sorted(p.name[: -len(".input")] for p in CORPUS.glob("*.input") if not p.name.startswith("refuse_"))
)
def test_the_rewritten_file_runs_as_the_winner_did(tmp_path: Path, name: str) -> None:
    """The engine's view: the new file's baseline resolves to exactly the
    nodes (prompts, systems, settings, providers) the winner ran with."""
    from pytest_promptab.workflow.loader import load_workflow
    from pytest_promptab.workflow.variants import resolve_nodes

    def resolved(loaded: Any, variant: str) -> list[Any]:
        return [dataclasses.replace(n, prompt_line=None, system_line=None) for n in resolve_nodes(loaded, variant)]

    path = tmp_path / "w.yaml"
    shutil.copyfile(CORPUS / f"{name}.input", path)
    before = load_workflow(path)
    winner = before.config.ab_test.variants[0].name
    summary = _summary(winner=winner)
    summary.variants[1].name = winner
    assert apply_winner(path, before.config, summary, collected_sha256=before.sha256, interrupted=False).applied
    after = load_workflow(path)
    assert resolved(after, after.config.ab_test.baseline) == resolved(before, winner)
    assert resolved(after, after.config.ab_test.baseline) != resolved(before, before.config.ab_test.baseline)
