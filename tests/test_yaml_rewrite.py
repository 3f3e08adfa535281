"""The byte-exact YAML rewriter behind --promptab-apply-best.

The corpus in ``rewrite_corpus/`` is the main contract: each input rewritten
with its first variant must equal the expected file byte for byte, and load as
the winner's configuration. The unit tests below pin the style rules one by
one (chomping, quoting, insertion, refusals, the safety net).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_promptab.apply import scalars as yaml_scalars
from pytest_promptab.apply.best import change_for_variant
from pytest_promptab.apply.rewrite import NodeChange, WorkflowChange, rewrite
from pytest_promptab.errors import ApplyError
from pytest_promptab.workflow.schema import WorkflowConfig
from pytest_promptab.workflow.variants import merge

CORPUS = Path(__file__).parent / "rewrite_corpus"
CASES = sorted(p.name[: -len(".input")] for p in CORPUS.glob("*.input") if not p.name.startswith("refuse_"))
REFUSALS = {
    "refuse_anchor": "nodes[first].prompt uses a YAML anchor or alias",
    "refuse_alias": "nodes[second].settings uses a YAML anchor or alias",
    "refuse_merge": "nodes[second] uses a merge key (<<:)",
}


def _read(name: str) -> str:
    return (CORPUS / name).read_bytes().decode("utf-8")


def _winner_config(text: str) -> tuple[WorkflowConfig, str]:
    workflow = WorkflowConfig.model_validate(yaml.safe_load(text))
    return workflow, workflow.ab_test.variants[0].name


def _winner_data(text: str) -> Any:
    """The input's data with its first variant applied, built from the variant
    config independently of the rewriter."""
    data = copy.deepcopy(yaml.safe_load(text))
    variant = data["ab_test"]["variants"][0]
    for node in data["nodes"]:
        if node["id"] in variant.get("prompts", {}):
            node["prompt"] = variant["prompts"][node["id"]]
        if node["id"] in variant.get("system", {}):
            node["system"] = variant["system"][node["id"]]
        if node["id"] in variant.get("settings", {}):
            node["settings"] = merge(node.get("settings", {}), variant["settings"][node["id"]])
    if variant.get("provider"):
        data["provider"] = merge(data["provider"], variant["provider"])
    return data


def _apply(text: str) -> str:
    workflow, winner = _winner_config(text)
    return rewrite(text, change_for_variant(workflow, winner), path="corpus.yaml")


def test_corpus_is_complete() -> None:
    assert len(CASES) >= 8
    assert all((CORPUS / f"{name}.expected").exists() for name in CASES)
    # git or an editor must not have converted the CRLF case
    assert b"\r\n" in (CORPUS / "crlf.input").read_bytes()
    assert b"\n" not in (CORPUS / "crlf.input").read_bytes().replace(b"\r\n", b"")


@pytest.mark.parametrize("name", CASES)
def test_corpus_rewrite_is_byte_exact(name: str) -> None:
    text = _read(f"{name}.input")
    result = _apply(text)
    assert result.encode("utf-8") == (CORPUS / f"{name}.expected").read_bytes()


@pytest.mark.parametrize("name", CASES)
def test_corpus_expected_file_loads_as_the_winner(name: str) -> None:
    text = _read(f"{name}.input")
    expected = _winner_data(text)
    assert yaml.safe_load(_read(f"{name}.expected")) == expected
    assert expected != yaml.safe_load(text)  # the case really changes something
    WorkflowConfig.model_validate(expected)


@pytest.mark.parametrize("name", CASES)
def test_corpus_applying_twice_changes_nothing(name: str) -> None:
    once = _apply(_read(f"{name}.input"))
    assert _apply(once) == once


@pytest.mark.parametrize("name", [n for n in CASES if n != "crlf"])
def test_corpus_with_crlf_line_endings(name: str) -> None:
    crlf = _read(f"{name}.input").replace("\n", "\r\n")
    assert _apply(crlf) == _read(f"{name}.expected").replace("\n", "\r\n")


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_corpus_refusals(name: str) -> None:
    text = _read(f"{name}.input")
    with pytest.raises(ApplyError) as info:
        _apply(text)
    assert REFUSALS[name] in str(info.value)
    assert info.value.line is not None
    assert "by hand" in (info.value.hint or "")


# -- unit rules ---------------------------------------------------------------

BASE = """\
name: w
provider: {type: python, callable: "f.py:g"}
nodes:
  - id: n
    prompt: {prompt}
"""


def _one(prompt_yaml: str, new: str, **node_change: Any) -> str:
    text = BASE.replace("{prompt}", prompt_yaml.rstrip("\n"))
    result = rewrite(text, WorkflowChange(nodes={"n": NodeChange(prompt=new, **node_change)}))
    assert yaml.safe_load(result)["nodes"][0]["prompt"] == new
    assert result.startswith(BASE.split("{prompt}")[0])
    return result.split("    prompt: ", 1)[1]


@pytest.mark.parametrize(
    ("old", "new", "written"),
    [
        ("|\n      old\n", "new\n", "|\n      new\n"),
        ("|\n      old\n", "new", "|-\n      new\n"),
        ("|-\n      old\n", "new\n", "|\n      new\n"),
        ("|\n      old\n", "new\n\n", "|+\n      new\n\n"),
        ("|+\n      old\n", "new\n", "|+\n      new\n"),  # the old indicator is kept when it fits
        ("|\n      old\n", "  indented\nnext\n", "|2\n        indented\n      next\n"),
        ("|\n      old\n", "", "|-\n"),
        ("|  # note\n      old\n", "new\n", "|  # note\n      new\n"),
    ],
)
def test_literal_block_chomping_and_indentation(old: str, new: str, written: str) -> None:
    assert _one(old, new) == written


@pytest.mark.parametrize(
    ("old", "new", "written"),
    [
        ("plain", "still plain", "still plain\n"),
        ("plain", "{{ x }} first", '"{{ x }} first"\n'),
        ("plain", "a: b", '"a: b"\n'),
        ("plain", "a #b", '"a #b"\n'),
        ("plain", "- x", '"- x"\n'),
        ("plain", "true", '"true"\n'),
        ("plain", "123", '"123"\n'),
        ("plain", "", '""\n'),
        ("plain", " lead", '" lead"\n'),
        ("'single'", "it's", "'it''s'\n"),
        ("'single'", "bell\x07", '"bell\\a"\n'),
        ('"double"', 'say "hi"', '"say \\"hi\\""\n'),
        ('"double"', "two\nlines", '"two\\nlines"\n'),  # SPEC 8: quoting stays, not a block
        ('"double"', "two\nlines\n", '"two\\nlines\\n"\n'),
        ("'single'", "two\nlines", '"two\\nlines"\n'),  # single quotes cannot hold a break on one line
        ("plain  # kept", "changed", "changed  # kept\n"),
    ],
)
def test_scalar_styles_follow_the_old_value(old: str, new: str, written: str) -> None:
    assert _one(old, new) == written


def test_a_value_no_block_can_hold_becomes_double_quoted() -> None:
    assert _one("|\n      old\n", "tab\x07bell\n") == '"tab\\abell\\n"\n'


def test_folded_block_falls_back_to_literal_when_it_cannot_fold() -> None:
    # trailing spaces cannot survive folding; a literal block keeps them
    assert _one(">\n      old text\n", "spaces   \nend\n") == "|\n      spaces   \n      end\n"


def test_folded_block_never_splits_a_template_tag() -> None:
    new = "word " * 10 + "{{ a_rather_long_variable_name | default('something long') }} tail\n"
    written = _one(">\n      " + "x" * 40 + "\n", new)
    assert written.startswith(">\n")
    assert "{{ a_rather_long_variable_name | default('something long') }}" in written


def test_block_at_end_of_file_without_newline() -> None:
    text = BASE.replace("{prompt}", "|\n      old").rstrip("\n")
    result = rewrite(text, WorkflowChange(nodes={"n": NodeChange(prompt="new\n")}))
    assert result.endswith("prompt: |\n      new\n")
    assert yaml.safe_load(result)["nodes"][0]["prompt"] == "new\n"


def test_keep_block_swallows_the_blank_lines_it_replaces() -> None:
    text = "name: w\nnodes:\n  - id: n\n    prompt: |\n      old\n\n\n    output: o\n"
    result = rewrite(text, WorkflowChange(nodes={"n": NodeChange(prompt="new\n\n")}))
    assert result == "name: w\nnodes:\n  - id: n\n    prompt: |+\n      new\n\n    output: o\n"


def test_unchanged_values_leave_the_bytes_alone() -> None:
    text = BASE.replace("{prompt}", "'same'   # comment")
    change = WorkflowChange(nodes={"n": NodeChange(prompt="same")})
    assert rewrite(text, change) == text
    assert rewrite(text, WorkflowChange(nodes={})) is text


def test_type_change_of_a_setting_is_rewritten() -> None:
    text = "nodes:\n  - id: n\n    prompt: p\n    settings: {temperature: 1.0, stop: '###'}\n"
    change = WorkflowChange(nodes={"n": NodeChange(settings={"temperature": 1, "stop": ["a", "b"]})})
    assert rewrite(text, change) == "nodes:\n  - id: n\n    prompt: p\n    settings: {temperature: 1, stop: [a, b]}\n"


def test_dict_setting_is_merged_key_by_key_like_the_engine_does() -> None:
    text = (
        "nodes:\n  - id: n\n    prompt: p\n    settings:\n      response_format:\n"
        "        type: text  # was\n        strict: true\n      seed: 1\n"
    )
    change = WorkflowChange(nodes={"n": NodeChange(settings={"response_format": {"type": "json_object"}})})
    assert rewrite(text, change) == text.replace("type: text", "type: json_object")


def test_dict_setting_replaces_a_scalar_whole() -> None:
    text = "nodes:\n  - id: n\n    prompt: p\n    settings:\n      stop:\n        - a\n        - b\n      seed: 1\n"
    change = WorkflowChange(nodes={"n": NodeChange(settings={"stop": {"x": 1}})})
    assert rewrite(text, change) == "nodes:\n  - id: n\n    prompt: p\n    settings:\n      stop: {x: 1}\n      seed: 1\n"


def test_flow_nodes_get_flow_safe_values() -> None:
    text = 'nodes: [{id: n, prompt: "p"}, {id: m, prompt: q}]\n'
    change = WorkflowChange(nodes={"n": NodeChange(prompt="a\nb", system="s, t", settings={"seed": 1})})
    result = rewrite(text, change)
    assert result == 'nodes: [{id: n, prompt: "a\\nb", system: "s, t", settings: {seed: 1}}, {id: m, prompt: q}]\n'


def test_utf8_bom_and_non_ascii_survive() -> None:
    text = "\ufeffname: é\nnodes:\n  - id: n\n    prompt: « vieux »\n"
    result = rewrite(text, WorkflowChange(nodes={"n": NodeChange(prompt="« neuf » 🙂")}))
    assert result == "\ufeffname: é\nnodes:\n  - id: n\n    prompt: « neuf » 🙂\n"


def test_provider_keys_nested_and_inserted() -> None:
    text = "provider:\n  type: openai  # kind\n  settings: {temperature: 0.2}\nnodes:\n  - id: n\n    prompt: p\n"
    change = WorkflowChange(nodes={}, provider={"model": "gpt-4o", "settings": {"temperature": 0.5, "seed": 3}})
    assert rewrite(text, change) == (
        "provider:\n  type: openai  # kind\n  settings: {temperature: 0.5, seed: 3}\n  model: gpt-4o\n"
        "nodes:\n  - id: n\n    prompt: p\n"
    )


@pytest.mark.parametrize(
    ("text", "change", "message"),
    [
        (BASE.replace("{prompt}", "p"), WorkflowChange(nodes={"zz": NodeChange(prompt="x")}),
         "node 'zz' is not in the file (nodes: n)"),
        ("nodes:\n  - id: n\n    prompt: p\n", WorkflowChange(nodes={}, provider={"model": "m"}),
         "no top-level 'provider:' mapping"),
        (BASE.replace("provider: {", "provider: &p {").replace("{prompt}", "p"),
         WorkflowChange(nodes={}, provider={"model": "m"}), "provider uses a YAML anchor or alias"),
        (BASE.replace("{prompt}", "!!str p"), WorkflowChange(nodes={"n": NodeChange(prompt="x")}),
         "nodes[n].prompt uses an explicit YAML tag"),
        ("nodes: [\n", WorkflowChange(nodes={"n": NodeChange(prompt="x")}), "does not parse as YAML"),
        ("- a\n", WorkflowChange(nodes={"n": NodeChange(prompt="x")}), "top level is not a mapping"),
    ],
)
def test_refusals(text: str, change: WorkflowChange, message: str) -> None:
    with pytest.raises(ApplyError) as info:
        rewrite(text, change, path="w.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("w.yaml")


def test_safety_net_refuses_a_wrong_result(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate a bug in value rendering: the check after rewriting must catch it.
    monkeypatch.setattr(yaml_scalars, "_quoted", lambda value, style: '"not the value"')
    text = BASE.replace("{prompt}", '"old"')
    with pytest.raises(ApplyError, match="would not load as the winner's configuration"):
        rewrite(text, WorkflowChange(nodes={"n": NodeChange(prompt="new: value")}))
