"""Pure layout rules of the MLflow logging: which runs become traces, which
nodes apply-best registers and with what model config, rounding, params."""

from __future__ import annotations

from pytest_promptab.tracking import layout, registry
from pytest_promptab.tracking.traces import select_runs
from tests.test_mlflow_log import make_summary


def test_trace_selection_takes_the_same_pairs_in_every_variant_failed_first() -> None:
    summary = make_summary(runs=4)  # 3 variants x 2 cases x 4 runs; run+vi % 4 == 0 fails
    ((ab, records),) = select_runs(summary, 12)
    assert len(records) == 12  # 4 pairs x 3 variants
    pairs = {v: {(r.case, r.run) for r in records if r.variant == v} for v in ("baseline", "empathetic", "terse")}
    assert pairs["baseline"] == pairs["empathetic"] == pairs["terse"]
    # every pair with a failed run in some variant comes before any all-passing pair
    failing = {(r.case, r.run) for r in ab.runs if r.status != "passed"}
    assert pairs["baseline"] <= failing
    assert select_runs(summary, 0) == [] and select_runs(summary, 2) == []  # less than one pair per variant


def test_apply_registers_only_changed_nodes_with_settings_and_system() -> None:
    ab = make_summary().abtests[0]
    assert registry.changed_nodes(ab, "empathetic") == ["reply"]  # classify is the baseline's
    config = registry.prompt_model_config(ab.variant("empathetic"), "reply")
    assert abs(config["temperature"] - 0.3) < 1e-9 and config["max_tokens"] == 300 and config["stop_sequences"] == ["\n\n"]
    assert config["model_name"] == "gpt-4o-mini" and config["provider"] == "openai"
    assert "SECRET" not in repr(config)
    system = registry.prompt_model_config(ab.variant("empathetic"), "classify")
    assert system["extra_params"]["system"] == "You are a support triage assistant."


def test_values_rounded_and_long_prompts_marked() -> None:
    assert layout.round6(0.000030349999999999996) == 3.035e-05
    assert layout.round6(123456789.0) == 123457000.0
    text = layout.param_text("x" * 7000, "prompts/reply.txt")
    assert len(text) == 6000 and text.endswith("7000 characters in all; the full text is the artifact prompts/reply.txt]")
    assert layout.param_text("short", "p") == "short"
