"""Nodes whose prompt comes from MLflow's prompt registry (``prompt:
{registry: "name@alias"}``), against the real sqlite store and the real
``mlflow server``: what the provider sees, the cache under
``.promptab/registry/`` that offline sessions read, the located error of a
prompt neither reachable nor cached, and apply-best registering the winner
and moving the alias (read back through MlflowClient)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.mlflow_server import MlflowServer

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")

# records every prompt it is sent; answers with the prompt's last line
SEEN_PROVIDER = '''
import json, pathlib, threading
from pytest_promptab.providers.base import ProviderResponse

_lock = threading.Lock()

def respond(request):
    with _lock, open(pathlib.Path(__file__).with_name("seen.jsonl"), "a", encoding="utf-8") as out:
        out.write(json.dumps({"prompt": request.prompt, "system": request.system}) + "\\n")
    return ProviderResponse(text=request.prompt.strip().splitlines()[-1])
'''

FLOW = """
name: reg-flow
provider: {{type: python, callable: "seen_provider.py:respond", model: m1}}
nodes:
  - id: answer
    prompt:
      registry: "{ref}"
    settings: {{temperature: 0.1}}
inputs: {{question: q1}}
checks:
  - {{name: is-yes, type: equals, value: "yes"}}
ab_test:
  name: ab
  runs: 8
  variants:
    - name: better
      prompts: {{answer: "Better {{{{ question }}}}\\nyes"}}
"""
"""The registry's text ends in "no" (the baseline fails its check); the
challenger's override ends in "yes" and wins."""


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def _register(uri: str, name: str, template: str, alias: str | None = None) -> int:
    client = _client(uri)
    version = client.register_prompt(name=name, template=template, commit_message="by the test")
    if alias:
        client.set_prompt_alias(name, alias, int(version.version))
    return int(version.version)


def _seen(root: Path) -> list[str]:
    path = root / "seen.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    path.unlink(missing_ok=True)
    return [json.loads(line)["prompt"] for line in lines]


def _write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    pytester.makepyfile(seen_provider=SEEN_PROVIDER)
    return pytester.path


def test_registry_prompt_is_run_cached_refreshed_and_read_offline(pytester: pytest.Pytester, project: Path) -> None:
    db = project / "reg.db"
    uri = f"sqlite:///{db}"
    _register(uri, "reg-greet", "Registry says {{ question }}\nno", alias="prod")
    _write(project, "flow.yaml", FLOW.format(ref="reg-greet@prod"))

    result = pytester.runpytest("--promptab", "flow.yaml", "--promptab-mlflow-uri", uri)
    assert result.ret == 0, result.stdout.str()
    seen = _seen(project)
    assert "Registry says q1\nno" in seen and "Better q1\nyes" in seen
    cached = json.loads((project / ".promptab/registry/reg-greet/@prod.json").read_text(encoding="utf-8"))
    assert cached == {"reference": "reg-greet@prod", "name": "reg-greet", "version": 1,
                      "text": "Registry says {{ question }}\nno"}
    # the variant runs show the resolved text (and the override) as their prompt params
    client = _client(uri)
    exp = client.get_experiment_by_name("reg-flow")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" in r.data.tags}
    assert runs["baseline"].data.params["prompt.answer"] == "Registry says {{ question }}\nno"
    assert runs["better"].data.params["prompt.answer"] == "Better {{ question }}\nyes"
    # the baseline's run links the registry version it ran; the challenger overrode it
    assert json.loads(runs["baseline"].data.tags["mlflow.linkedPrompts"]) == [{"name": "reg-greet", "version": "1"}]
    assert "mlflow.linkedPrompts" not in runs["better"].data.tags

    # the alias moves: the next session reads the registry again and refreshes the cache
    _register(uri, "reg-greet", "Moved {{ question }}\nno", alias="prod")
    again = pytester.runpytest("--promptab", "flow.yaml", "--promptab-mlflow-uri", uri)
    assert again.ret == 0, again.stdout.str()
    assert "Moved q1\nno" in _seen(project)
    assert json.loads((project / ".promptab/registry/reg-greet/@prod.json").read_text())["version"] == 2

    # the store is gone: --promptab-no-mlflow runs from the cache, without a word about it
    db.unlink()
    offline = pytester.runpytest("--promptab", "flow.yaml", "--promptab-no-mlflow", "-W", "error::UserWarning")
    assert offline.ret == 0, offline.stdout.str()
    assert "Moved q1\nno" in _seen(project)
    offline.assert_outcomes(passed=8, xfailed=8)

    # MLflow on but the store unreachable (no database): the cached text, with a warning
    missing = f"sqlite:///{project / 'gone' / 'none.db'}"
    unreachable = pytester.runpytest("--promptab", "flow.yaml", "--promptab-mlflow-uri", missing)
    assert "Moved q1\nno" in _seen(project)
    unreachable.stdout.fnmatch_lines(["*registry prompt 'reg-greet@prod': no MLflow store at*; using the cached text "
                                      "of version 2 (.promptab/registry/reg-greet/@prod.json)*"])


def test_prompt_neither_reachable_nor_cached_fails_its_file_only(pytester: pytest.Pytester, project: Path) -> None:
    uri = f"sqlite:///{project / 'reg.db'}"
    _register(uri, "reg-other", "Some text\nyes", alias="prod")  # the store exists, without that prompt
    _write(project, "bad.yaml", FLOW.format(ref="reg-nothere@prod"))
    good = FLOW.format(ref="x@y").replace('prompt:\n      registry: "x@y"', 'prompt: "Plain {{ question }}\\nyes"')
    assert "registry" not in good
    _write(project, "good.yaml", good.replace("name: reg-flow", "name: good-flow"))

    result = pytester.runpytest("--promptab", "--promptab-mlflow-uri", uri)
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        "*bad.yaml:6: node 'answer': prompt 'reg-nothere@prod' from MLflow's prompt registry: "
        "Prompt with name=reg-nothere not found in the registry at sqlite:///*",
        "*hint: register it (MlflowClient().register_prompt(name='reg-nothere'*",
    ])
    result.assert_outcomes(failed=1, passed=16)  # good.yaml: both variants pass all 8 runs
    assert not (project / ".promptab/registry/reg-nothere").exists()

    offline = pytester.runpytest("--promptab", "--promptab-no-mlflow", "bad.yaml")
    offline.stdout.fnmatch_lines([
        "*bad.yaml:6: node 'answer': prompt 'reg-nothere@prod' from MLflow's prompt registry: not cached "
        "(.promptab/registry/reg-nothere/@prod.json does not exist), and --promptab-no-mlflow reads only the cache",
        "*hint: run once without --promptab-no-mlflow*",
    ])
    assert offline.ret == 1


def test_pinned_version_is_read_once_then_from_the_cache(pytester: pytest.Pytester, project: Path) -> None:
    db = project / "reg.db"
    uri = f"sqlite:///{db}"
    _register(uri, "reg-pin", "Pinned {{ question }}\nno")
    _write(project, "flow.yaml", FLOW.format(ref="reg-pin/1"))
    assert pytester.runpytest("--promptab", "flow.yaml", "--promptab-mlflow-uri", uri).ret == 0
    assert "Pinned q1\nno" in _seen(project)
    db.unlink()  # a version never changes: the cache is enough, MLflow on or off, and no warning
    result = pytester.runpytest("--promptab", "flow.yaml", "--promptab-mlflow-uri", uri)
    assert result.ret == 0, result.stdout.str()
    assert "Pinned q1\nno" in _seen(project)
    assert "cached text" not in result.stdout.str()


def test_pinned_version_comes_from_the_store_in_use_not_another_stores_cache(
    pytester: pytest.Pytester, project: Path
) -> None:
    first, second = f"sqlite:///{project / 'a.db'}", f"sqlite:///{project / 'b.db'}"
    _register(first, "reg-two", "Store A {{ question }}\nno")
    _register(second, "reg-two", "Store B {{ question }}\nno")
    _write(project, "flow.yaml", FLOW.format(ref="reg-two/1"))
    assert pytester.runpytest("--promptab", "flow.yaml", "--promptab-mlflow-uri", first).ret == 0
    assert "Store A q1\nno" in _seen(project)
    result = pytester.runpytest("--promptab", "flow.yaml", "--promptab-mlflow-uri", second)
    assert result.ret == 0, result.stdout.str()
    assert "Store B q1\nno" in _seen(project)  # version 1 of the store in use, not the cached copy


@pytest.mark.parametrize("store", ["sqlite", "server"])
def test_apply_best_registers_the_winner_and_moves_the_alias(
    pytester: pytest.Pytester, project: Path, store: str, request: pytest.FixtureRequest
) -> None:
    if store == "server":
        server: MlflowServer = request.getfixturevalue("mlflow_server")
        uri, name = server.uri, "reg-apply-server"
    else:
        uri, name = f"sqlite:///{project / 'reg.db'}", "reg-apply"
    _register(uri, name, "Old {{ question }}\nno", alias="prod")
    path = _write(project, "flow.yaml", FLOW.format(ref=f"{name}@prod"))
    before = path.read_bytes()
    pytester.makeini("[pytest]\npromptab_registry_alias = chosen\n")

    result = pytester.runpytest("--promptab", "--promptab-apply-best", "flow.yaml", "--promptab-mlflow-uri", uri)
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines([
        "apply-best: flow.yaml: applied 'better' (*); to MLflow's prompt registry: node 'answer' prompt "
        f"({name}@prod); the file is unchanged; registered in MLflow as prompts:/{name}/2; "
        f"{name}@prod now points at version 2",
    ])
    assert path.read_bytes() == before  # the text lives in the registry
    client = _client(uri)
    moved = client.get_prompt_version_by_alias(name, "prod")
    assert moved.version == 2 and moved.template == "Better {{ question }}\nyes"
    assert moved.model_config["temperature"] == 0.1 and moved.model_config["model_name"] == "m1"
    assert client.get_prompt_version_by_alias(name, "chosen").version == 2  # the configured alias
    assert client.get_prompt_version(name, 1).template == "Old {{ question }}\nno"
    # the cache holds what the alias now points at: an offline session runs the winner
    cached = json.loads((project / f".promptab/registry/{name}/@prod.json").read_text())
    assert cached["version"] == 2 and cached["text"] == "Better {{ question }}\nyes"
    offline = pytester.runpytest("--promptab", "--promptab-no-mlflow", "flow.yaml")
    assert "Better q1\nyes" in _seen(project) and offline.ret == 0


def test_apply_best_on_a_pinned_version_says_the_file_still_pins_it(pytester: pytest.Pytester, project: Path) -> None:
    uri = f"sqlite:///{project / 'reg.db'}"
    _register(uri, "reg-pinned", "Old {{ question }}\nno")
    path = _write(project, "flow.yaml", FLOW.format(ref="reg-pinned/1"))
    before = path.read_bytes()
    result = pytester.runpytest("--promptab", "--promptab-apply-best", "flow.yaml", "--promptab-mlflow-uri", uri)
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines([
        "apply-best: flow.yaml: applied 'better' *registered in MLflow as prompts:/reg-pinned/2; the file still "
        "pins reg-pinned/1: write reg-pinned/2 (or reg-pinned@promptab-best) to run the winner",
    ])
    assert path.read_bytes() == before
    assert _client(uri).get_prompt_version_by_alias("reg-pinned", "promptab-best").version == 2


def test_apply_best_with_mlflow_off_refuses_a_registry_winner(
    pytester: pytest.Pytester, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"sqlite:///{project / 'reg.db'}"
    _register(uri, "reg-off", "Old {{ question }}\nno", alias="prod")
    path = _write(project, "flow.yaml", FLOW.format(ref="reg-off@prod"))
    assert pytester.runpytest("--promptab", "flow.yaml", "--promptab-mlflow-uri", uri).ret == 0  # caches it
    before = path.read_bytes()
    result = pytester.runpytest("--promptab", "--promptab-apply-best", "--promptab-no-mlflow", "flow.yaml")
    result.stdout.fnmatch_lines([
        "apply-best: flow.yaml: not applied: node 'answer' prompt (reg-off@prod) comes from MLflow's prompt "
        "registry, and MLflow is off (--promptab-no-mlflow): nothing was written",
    ])
    assert path.read_bytes() == before
    assert _client(uri).get_prompt_version_by_alias("reg-off", "prod").version == 1
    # promptab apply, offline, reads the registry text from the cache and refuses that winner too
    from pytest_promptab.cli_apply import run_apply

    capsys.readouterr()
    assert run_apply(None, [], dry_run=False, rootdir=str(project)) == 1
    out = capsys.readouterr().out
    assert ("flow.yaml::ab: not applied: node 'answer' prompt (reg-off@prod) comes from MLflow's prompt registry, "
            "which promptab apply does not write") in out
    assert path.read_bytes() == before


def test_xdist_workers_resolve_once_and_the_controller_reads_the_cache(pytester: pytest.Pytester, project: Path) -> None:
    uri = f"sqlite:///{project / 'reg.db'}"
    _register(uri, "reg-xdist", "Xdist {{ question }}\nno", alias="prod")
    _write(project, "flow.yaml", FLOW.format(ref="reg-xdist@prod"))
    result = pytester.runpytest_subprocess("--promptab", "-n", "2", "flow.yaml", "--promptab-mlflow-uri", uri)
    assert result.ret == 0, result.stdout.str()
    assert "Xdist q1\nno" in _seen(project)
    result.stdout.fnmatch_lines(["*baseline*", "*winner: better*"])
    stamp = json.loads((project / ".promptab/registry.lock").read_text())
    assert stamp["refs"] == ["reg-xdist@prod"]
    assert sorted(p.name for p in (project / ".promptab/registry").rglob("*")) == ["@prod.json", "reg-xdist"]
