"""Registry prompts without MLflow: the ``{registry: ...}`` schema and its
located errors, the session's resolver policy (when the registry is asked,
when the cache answers, what an unreachable registry or a missing prompt
gives) with a stand-in for the logging process, the cache files, and the
apply-best decisions on a node whose text comes from the registry."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pytest_promptab.apply.best import (
    apply_winner,
    change_for_variant,
    registry_changes,
)
from pytest_promptab.errors import ConfigError
from pytest_promptab.tracking.prompt_cache import (
    RegistryPrompts,
    cache_path,
    read_entry,
    write_entry,
)
from pytest_promptab.workflow.loader import RegistryAnswer, load_workflow
from pytest_promptab.workflow.schema import RegistryPrompt
from pytest_promptab.workflow.variants import resolve_nodes
from tests.test_mlflow_log import make_summary

FLOW = """
name: w
provider: {{type: python, callable: "x.py:f"}}
nodes:
  - id: a
    prompt:
      registry: {ref}
    system: {system}
inputs: {{question: q}}
ab_test:
  name: ab
  variants:
    - name: other
      prompts: {{a: "Other {{{{ question }}}}"}}
"""


def _file(tmp_path: Path, ref: str = '"greet@prod"', system: str = "Be brief.") -> Path:
    path = tmp_path / "flow.yaml"
    path.write_text(textwrap.dedent(FLOW.format(ref=ref, system=system)).lstrip(), encoding="utf-8")
    return path


def _answers(texts: dict[str, str]) -> Any:
    def resolve(refs: list[RegistryPrompt]) -> dict[str, RegistryAnswer]:
        return {r.registry: RegistryAnswer(text=texts[r.registry], version=4) if r.registry in texts
                else RegistryAnswer(problem="not there", hint="add it") for r in refs}

    return resolve


# ------------------------------------------------------------- the schema


@pytest.mark.parametrize(
    ("ref", "line", "message"),
    [
        ('"greet@"', 6, "nodes[0].prompt.registry: 'greet@' is not a prompt registry reference: write it as"),
        ('"greet/0"', 6, "'greet/0' is not a prompt registry reference"),
        ('"../x@y"', 6, "'../x@y' is not a prompt registry reference"),
        ("3", 6, "registry must be text, got int"),
        ('"a@b"\n      alias: x', 7, "unknown key 'alias' in a registry reference; it takes only 'registry'"),
    ],
)
def test_a_malformed_reference_is_a_located_error(tmp_path: Path, ref: str, line: int, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_workflow(_file(tmp_path, ref), registry=_answers({}))
    assert info.value.line == line
    assert message in info.value.message


def test_a_prompt_neither_text_nor_reference(tmp_path: Path) -> None:
    path = _file(tmp_path)
    path.write_text(path.read_text().replace('prompt:\n      registry: "greet@prod"', "prompt: [1, 2]"))
    with pytest.raises(ConfigError) as info:
        load_workflow(path, registry=_answers({}))
    assert info.value.line == 5
    assert 'is text, or a registry reference {registry: "name@alias"}, not list' in info.value.message


def test_references_parse_and_resolve_into_the_nodes(tmp_path: Path) -> None:
    ref = RegistryPrompt(registry="prompts:/support.reply@prod")
    assert (ref.registry, ref.name, ref.alias, ref.version, ref.uri) == (
        "support.reply@prod", "support.reply", "prod", None, "prompts:/support.reply@prod")
    assert RegistryPrompt(registry="x/12").version == 12
    path = _file(tmp_path, system='{registry: "sys/2"}')
    loaded = load_workflow(path, registry=_answers({"greet@prod": "Hi {{ question }}", "sys/2": "Be kind."}))
    node = loaded.config.nodes[0]
    assert (node.prompt_text, node.system_text) == ("Hi {{ question }}", "Be kind.")
    assert {k: r.registry for k, r in node.registry_refs.items()} == {"prompt": "greet@prod", "system": "sys/2"}
    (baseline,) = resolve_nodes(loaded, "baseline")
    assert (baseline.prompt, baseline.system, baseline.prompt_line) == ("Hi {{ question }}", "Be kind.", 6)
    (other,) = resolve_nodes(loaded, "other")  # a variant's override of a registry prompt still works
    assert (other.prompt, other.system) == ("Other {{ question }}", "Be kind.")


def test_unresolved_reference_names_the_line_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_workflow(_file(tmp_path), display="flow.yaml", registry=_answers({}))
    assert (info.value.line, info.value.hint) == (6, "add it")
    assert info.value.message == "node 'a': prompt 'greet@prod' from MLflow's prompt registry: not there"
    with pytest.raises(ConfigError) as info:  # promptab's loader without a session
        load_workflow(_file(tmp_path))
    assert "which only a pytest --promptab session resolves" in info.value.message and info.value.line == 6


def test_a_file_without_references_never_asks(tmp_path: Path) -> None:
    from tests.test_end_to_end import SIMPLE

    called: list[Any] = []
    path = tmp_path / "plain.yaml"
    path.write_text(SIMPLE, encoding="utf-8")
    load_workflow(path, registry=lambda refs: called.append(refs) or {})
    assert called == []


# ------------------------------------------------------------- the resolver


class FakeProcess:
    """The logging process's ``resolve``: answers from ``texts``, or fails."""

    running = True

    def __init__(self, texts: dict[str, tuple[int, str]], *, ok: bool = True) -> None:
        self.texts, self.ok, self.asked = texts, ok, []  # type: ignore[var-annotated]

    def resolve(self, references: list[str]) -> dict[str, Any]:
        self.asked.append(list(references))
        if not self.ok:
            return {"ok": False, "message": "MLflow at http://h is not reachable", "prompts": {}}
        return {"ok": True, "message": "", "prompts": {
            r: {"name": r.split("@")[0].split("/")[0], "version": self.texts[r][0], "text": self.texts[r][1]}
            if r in self.texts else {"missing": f"Prompt {r} not found"} for r in references}}


def _resolver(root: Path, process: FakeProcess | None, run: str = "run-1") -> RegistryPrompts:
    return RegistryPrompts(root, tracking_uri=None if process is None else "http://h", run_uid=run,
                           process=lambda: process, shown_uri="http://h")  # type: ignore[arg-type,return-value]


REFS = [RegistryPrompt(registry="greet@prod"), RegistryPrompt(registry="greet/3")]


def test_every_reference_is_read_once_per_session(tmp_path: Path) -> None:
    process = FakeProcess({"greet@prod": (5, "five"), "greet/3": (3, "three")})
    first = _resolver(tmp_path, process)
    assert {k: (a.text, a.version) for k, a in first(REFS).items()} == {"greet@prod": ("five", 5), "greet/3": ("three", 3)}
    first(REFS)  # the same session: asked once
    assert process.asked == [["greet@prod", "greet/3"]]
    cached = cache_path(tmp_path / ".promptab" / "registry", "greet@prod")
    assert cached == tmp_path / ".promptab/registry/greet/@prod.json"
    assert json.loads(cached.read_text()) == {"reference": "greet@prod", "name": "greet", "version": 5, "text": "five"}
    mtime = cached.stat().st_mtime_ns
    second = _resolver(tmp_path, process, run="run-2")  # a new session: both again (another store may hold
    second(REFS)  # another version 3, or it was deleted)
    assert process.asked[1:] == [["greet@prod", "greet/3"]]
    assert cached.stat().st_mtime_ns == mtime  # unchanged content: not rewritten
    worker = _resolver(tmp_path, process, run="run-2")  # another xdist worker of that run: the cache only
    worker(REFS)
    assert len(process.asked) == 2


def test_unreachable_registry_uses_the_cache_with_a_note(tmp_path: Path) -> None:
    write_entry(tmp_path / ".promptab/registry", "greet@prod", name="greet", version=2, text="two")
    answers = _resolver(tmp_path, FakeProcess({}, ok=False))([REFS[0], RegistryPrompt(registry="new@prod")])
    old, new = answers["greet@prod"], answers["new@prod"]
    assert (old.text, old.version, old.source) == ("two", 2, "cache")
    assert old.note is not None and "not reachable; using the cached text of version 2" in old.note
    assert new.text is None and new.problem is not None
    assert "cannot be read (MLflow at http://h is not reachable), and the prompt is not cached" in new.problem
    assert new.hint is not None and "start the tracking server" in new.hint


def test_an_unreachable_registry_is_asked_once_per_session(tmp_path: Path) -> None:
    process = FakeProcess({}, ok=False)
    resolver = _resolver(tmp_path, process)
    resolver([REFS[0]])
    resolver([RegistryPrompt(registry="other@prod")])  # the next file: not asked again (a dead server costs seconds)
    assert process.asked == [["greet@prod"]]
    assert "not reachable" in (resolver([RegistryPrompt(registry="other@prod")])["other@prod"].problem or "")


def test_a_prompt_the_registry_lacks_is_an_error_even_when_cached(tmp_path: Path) -> None:
    write_entry(tmp_path / ".promptab/registry", "greet@prod", name="greet", version=2, text="stale")
    answer = _resolver(tmp_path, FakeProcess({}))([REFS[0]])["greet@prod"]
    assert answer.text is None
    assert answer.problem == "Prompt greet@prod not found in the registry at http://h"
    assert answer.hint is not None and "set_prompt_alias('greet', 'prod', <version>)" in answer.hint


def test_no_mlflow_reads_only_the_cache(tmp_path: Path) -> None:
    write_entry(tmp_path / ".promptab/registry", "greet@prod", name="greet", version=2, text="two")
    answers = _resolver(tmp_path, None)(REFS)
    assert (answers["greet@prod"].text, answers["greet@prod"].note) == ("two", None)
    assert answers["greet/3"].problem is not None and "--promptab-no-mlflow reads only the cache" in answers["greet/3"].problem


def test_a_broken_cache_file_counts_as_absent(tmp_path: Path) -> None:
    path = cache_path(tmp_path, "greet@prod")
    path.parent.mkdir(parents=True)
    path.write_text('{"text": 3}')
    assert read_entry(tmp_path, "greet@prod") is None


# ------------------------------------------------------------- apply-best


def test_apply_best_leaves_registry_text_out_of_the_file(tmp_path: Path) -> None:
    path = _file(tmp_path)
    loaded = load_workflow(path, registry=_answers({"greet@prod": "Hi {{ question }}"}))
    assert change_for_variant(loaded.config, "other").nodes == {}
    assert registry_changes(loaded.config, "other") == ["node 'a' prompt (greet@prod)"]
    summary = make_summary()
    ab = summary.abtests[0]
    ab.file, ab.name = "flow.yaml", "ab"
    ab.winner, ab.variants[1].name = "other", "other"
    ab.complete, ab.winner_reason = True, None
    kwargs: dict[str, Any] = {"collected_sha256": loaded.sha256, "interrupted": False}
    assert ab.has_significant_winner
    later = apply_winner(path, loaded.config, ab, later=True, **kwargs)
    assert not later.applied and "which promptab apply does not write" in later.message
    off = apply_winner(path, loaded.config, ab, registry=False, **kwargs)
    assert not off.applied and "MLflow is off (--promptab-no-mlflow)" in off.message
    on = apply_winner(path, loaded.config, ab, **kwargs)
    assert on.applied and on.message.endswith("to MLflow's prompt registry: node 'a' prompt (greet@prod); "
                                              "the file is unchanged")


def test_registrations_of_registry_nodes_use_their_names_and_aliases() -> None:
    from pytest_promptab.tracking.registry import registrations, registry_notes

    ab = make_summary().abtests[0]
    empathetic = ab.variant("empathetic")
    empathetic.system = dict(empathetic.system, reply="Be warm.")  # the winner also changes reply's system text
    refs = {"reply": {"prompt": "support-reply@production", "system": "support-system/3"}}
    items = registrations(ab, "empathetic", refs)
    assert [(i.key, i.name, i.aliases, i.reference) for i in items] == [
        ("reply", "support-reply", ["production"], "support-reply@production"),
        ("reply.system", "support-system", [], "support-system/3"),
    ]
    assert items[0].text == empathetic.prompts["reply"] and items[1].text == "Be warm."
    assert items[0].model_config is not None and items[0].model_config["extra_params"]["system"] == "Be warm."
    plain = registrations(ab, "empathetic", {})  # a file's own prompt: the default name, no extra alias
    assert [(i.key, i.name, i.aliases) for i in plain] == [("reply", None, [])]
    done = list(zip(items, ["prompts:/support-reply/7", "prompts:/support-system/4"]))
    assert registry_notes(done, "chosen") == [
        "support-reply@production now points at version 7",
        "the file still pins support-system/3: write support-system/4 (or support-system@chosen) to run the winner",
    ]


def test_a_bad_registry_alias_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--promptab", "--promptab-registry-alias", "my alias")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "promptab_registry_alias 'my alias': a registry alias uses letters, digits" in result.stderr.str()
