"""Hostile and odd files stay contained (issue 12, items 2 and 5-9): each bad
file becomes one failed item (or one failed run) with a located message,
while a good workflow and a plain test beside it still run; secrets in a
``base_url`` are refused and never shown; text that is not UTF-8 is read or
named; lone surrogates are stored and logged safely."""

from __future__ import annotations

import codecs
import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pytest_promptab.errors import PromptabError
from pytest_promptab.textsafe import NotText, clean, decode_text
from pytest_promptab.workflow.loader import is_promptab_file
from pytest_promptab.workflow.templates import MAX_RANGE, TemplateRenderer
from tests.conftest import ECHO_PROVIDER

NO_MLFLOW = "--promptab-no-mlflow"
GOOD = """
name: good
provider: {type: python, callable: "echo_provider.py:echo"}
nodes: [{id: a, prompt: "yes"}]
checks: [{type: equals, value: "yes"}]
ab_test: {name: fine, runs: 2}
"""
PLAIN_TEST = "def test_plain():\n    assert True\n"
PASSWORD = "hunter2-s3cret"


def _run_beside(pytester: pytest.Pytester, files: dict[str, str | bytes], *args: str) -> pytest.RunResult:
    """``files`` next to a good workflow and a plain test, run with promptab."""
    pytester.makepyfile(echo_provider=ECHO_PROVIDER, test_plain=PLAIN_TEST)
    (pytester.path / "good.yaml").write_text(GOOD)
    for name, content in files.items():
        path = pytester.path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content).lstrip(), encoding="utf-8")
    return pytester.runpytest("--promptab", NO_MLFLOW, "-p", "no:cacheprovider", *args)


def _assert_contained(result: pytest.RunResult, failed: int = 1) -> str:
    """The good workflow's 2 runs and the plain test passed, ``failed`` failed, no traceback."""
    out = result.stdout.str()
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == 3, out
    assert outcomes.get("failed") == failed, out
    assert result.ret == 1, out
    assert "Traceback" not in out and "INTERNALERROR" not in out, out
    assert "pytest_promptab/" not in out, out
    return out


def _flow(prompt: str = "yes", **extra: str) -> str:
    head = 'name: bad\nprovider: {type: python, callable: "echo_provider.py:echo"}\n'
    return head + f"nodes: [{{id: a, prompt: {json.dumps(prompt)}}}]\n" + "".join(extra.values()) + "ab_test: {name: t, runs: 1}\n"


# ------------------------------------------------------------- item 6: hostile YAML


def _alias_bomb() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(8):
        this, prev = chr(98 + i), chr(97 + i)
        lines.append(f"{this}: &{this} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\nab_test: {name: t}\n"


def test_alias_bomb_is_one_failed_item(pytester: pytest.Pytester) -> None:
    bomb = _alias_bomb()
    assert len(bomb) < 500
    result = _run_beside(pytester, {"bomb.yaml": bomb})
    out = _assert_contained(result)
    result.stdout.fnmatch_lines(["FAILED bomb.yaml::workflow*"])
    assert "bomb.yaml:1: aliases expand to more than 200,000 values" in out


@pytest.mark.parametrize("opener, closer", [("[", "]"), ("{a: ", "}")], ids=["lists", "mappings"])
def test_deep_nesting_is_one_failed_item(pytester: pytest.Pytester, opener: str, closer: str) -> None:
    deep = "ab_test: {name: t}\nx: " + opener * 10_000 + "1" + closer * 10_000 + "\n"
    result = _run_beside(pytester, {"deep.yaml": deep})
    out = _assert_contained(result)
    result.stdout.fnmatch_lines(["FAILED deep.yaml::workflow*"])
    assert "deep.yaml:2: " in out
    assert "nests deeper than 100 levels" in out or "maximum nesting depth" in out, out


def test_a_bad_file_named_on_the_command_line_is_contained(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(echo_provider=ECHO_PROVIDER, test_plain=PLAIN_TEST)
    (pytester.path / "good.yaml").write_text(GOOD)
    (pytester.path / "bomb.yaml").write_text(_alias_bomb())
    result = pytester.runpytest("--promptab", NO_MLFLOW, "bomb.yaml", "good.yaml", "test_plain.py")
    _assert_contained(result)


@pytest.mark.parametrize(
    "content",
    [
        _alias_bomb().encode(),
        ("ab_test: 1\nx: " + "[" * 50_000).encode(),
        ("x: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\nab_test: 1\n").encode(),
        b"\xff\xfe\x00\x00garbage",
        b"ab_test: \xff\xfe broken",
        b"\x00\x01\x02 binary",
        "ab_test: {name: t}\n".encode("utf-16-le"),
        b"",
    ],
    ids=["bomb", "deep-open", "deep-flow", "bad-utf32", "bad-utf8", "binary", "utf16-no-bom", "empty"],
)
def test_is_promptab_file_is_total(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "f.yaml"
    path.write_bytes(content)
    assert is_promptab_file(path) in (True, False)


def test_is_promptab_file_survives_a_crashing_parser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pytest_promptab.workflow.loader as loader

    def boom(text: str, key: str) -> bool:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(loader, "top_level_has_key", boom)
    path = tmp_path / "f.yaml"
    path.write_text("name: x\nab_test: {name: t}\n")
    assert is_promptab_file(path) is True
    path.write_text("name: x\nother: {ab_test: 1}\n")
    assert is_promptab_file(path) is False


def test_merge_keys_are_overridden_not_duplicates(pytester: pytest.Pytester) -> None:
    flow = """
    name: merged
    provider:
      type: python
      callable: "echo_provider.py:echo"
      settings: &defaults {temperature: 0.2, max_tokens: 5}
    nodes:
      - {id: a, prompt: "yes", settings: {<<: *defaults, temperature: 0.9}}
    checks: [{type: equals, value: "yes"}]
    ab_test: {name: m, runs: 1}
    """
    result = _run_beside(pytester, {"merged.yaml": flow})
    assert result.ret == 0, result.stdout.str()
    assert result.parseoutcomes()["passed"] == 4


# ------------------------------------------------------------- item 7: encodings


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be", "utf-8"])
def test_a_file_with_a_bom_is_read(pytester: pytest.Pytester, encoding: str) -> None:
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE, "utf-32-le": codecs.BOM_UTF32_LE,
           "utf-32-be": codecs.BOM_UTF32_BE, "utf-8": codecs.BOM_UTF8}[encoding]  # fmt: skip
    flow = GOOD.replace("name: good", "name: wide").replace("fine", "wide")
    result = _run_beside(pytester, {"wide.yaml": bom + flow.encode(encoding)})
    assert result.ret == 0, result.stdout.str()
    assert result.parseoutcomes()["passed"] == 5


@pytest.mark.parametrize(
    "content, message",
    [
        (b"name: bad\nprompt: caf\xe9\nab_test: {name: t}\n", "bad.yaml:2: the file is not UTF-8 text (invalid byte 0xe9)"),
        ("name: bad\nab_test: {name: t}\n".encode("utf-16-le"), "bad.yaml: the file looks like UTF-16 without a byte order mark"),
        (codecs.BOM_UTF16_LE + b"a\x00:\x00\x00\xd8" + "\nab_test: 1".encode("utf-16-le"),
         "bad.yaml: the file starts with a UTF-16-LE byte order mark but is not"),
    ],
    ids=["latin-1", "utf16-no-bom", "broken-utf16"],
)
def test_a_file_that_is_not_text_is_a_load_error(pytester: pytest.Pytester, content: bytes, message: str) -> None:
    result = _run_beside(pytester, {"bad.yaml": content})
    out = _assert_contained(result)
    result.stdout.fnmatch_lines(["FAILED bad.yaml::workflow*"])
    assert message in out, out
    assert "save it as UTF-8" in out


def test_decode_text() -> None:
    assert decode_text(codecs.BOM_UTF8 + "é".encode()) == "é"
    assert decode_text(codecs.BOM_UTF32_LE + "x: 1".encode("utf-32-le")) == "x: 1"
    with pytest.raises(NotText) as info:
        decode_text(b"ok\nok\n\xff")
    assert info.value.line == 3
    with pytest.raises(NotText):
        decode_text(b"a: 1\x00")


# ------------------------------------------------------------- item 9: jsonl duplicates


def test_jsonl_duplicate_key_is_a_located_error(pytester: pytest.Pytester) -> None:
    cases = '{"id": "one", "email": "hi"}\n{"id": "two", "email": "a", "email": "b"}\n'
    flow = _flow("{{ email }}", cases="cases: cases.jsonl\n")
    result = _run_beside(pytester, {"cases.jsonl": cases, "bad.yaml": flow})
    out = _assert_contained(result)
    result.stdout.fnmatch_lines(["FAILED bad.yaml::workflow*"])
    assert "cases.jsonl:2: duplicate key 'email' in this record" in out, out


def test_jsonl_nested_duplicate_key_is_named(pytester: pytest.Pytester) -> None:
    cases = '{"id": "one", "inputs": {"email": "a", "email": "b"}}\n'
    flow = _flow("{{ email }}", cases="cases: cases.jsonl\n")
    result = _run_beside(pytester, {"cases.jsonl": cases, "bad.yaml": flow})
    assert "cases.jsonl:1: duplicate key 'email'" in _assert_contained(result)


# ------------------------------------------------------------- item 2: credentials in base_url


@pytest.mark.parametrize(
    "where, flow, line",
    [
        ("provider", f"""
         name: cred
         provider: {{type: openai, model: m, base_url: "http://user:{PASSWORD}@127.0.0.1:9/v1"}}
         nodes: [{{id: a, prompt: "yes"}}]
         ab_test: {{name: t, runs: 1}}
         """, 2),
        ("node", f"""
         name: cred
         provider: {{type: openai, model: m}}
         nodes:
           - id: a
             prompt: "yes"
             provider:
               base_url: http://user:{PASSWORD}@127.0.0.1:9/v1
         ab_test: {{name: t, runs: 1}}
         """, 7),
        ("variant", f"""
         name: cred
         provider: {{type: openai, model: m}}
         nodes: [{{id: a, prompt: "yes"}}]
         ab_test:
           name: t
           runs: 1
           variants:
             - name: v
               provider: {{base_url: "https://{PASSWORD}@example.com/v1"}}
         """, 9),
        ("check", f"""
         name: cred
         provider: {{type: openai, model: m}}
         nodes: [{{id: a, prompt: "yes"}}]
         checks:
           - type: llm_judge
             rubric: polite
             provider: {{base_url: "http://u:{PASSWORD}@judge.example/v1"}}
         ab_test: {{name: t, runs: 1}}
         """, 7),
    ],
    ids=["provider", "node", "variant", "check"],
)
def test_base_url_with_credentials_is_refused_and_never_shown(
    pytester: pytest.Pytester, where: str, flow: str, line: int
) -> None:
    result = _run_beside(pytester, {"cred.yaml": flow}, "-rA", "--junitxml=junit.xml")
    out = _assert_contained(result)
    result.stdout.fnmatch_lines(["FAILED cred.yaml::workflow*"])
    assert f"cred.yaml:{line}: " in out, out
    assert "base_url must not hold a user name or password" in out
    assert "api_key_env" in out
    for written in [out, result.stderr.str(), (pytester.path / "junit.xml").read_text(),
                    (pytester.path / ".promptab" / "results.json").read_text()]:  # fmt: skip
        assert PASSWORD not in written


def test_openai_base_url_variable_with_credentials_fails_the_runs_without_showing_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://user:{PASSWORD}@127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-not-real")
    flow = 'name: env\nprovider: {type: openai, model: m}\nnodes: [{id: a, prompt: "yes"}]\nab_test: {name: t, runs: 1}\n'
    result = _run_beside(pytester, {"env.yaml": flow}, "-rA")
    out = _assert_contained(result)
    result.stdout.fnmatch_lines(["FAILED env.yaml::t::baseline?run1?*"])
    assert "$OPENAI_BASE_URL must not hold a user name or password" in out, out
    assert PASSWORD not in out and PASSWORD not in (pytester.path / ".promptab" / "results.json").read_text()


# ------------------------------------------------------------- item 5: bounded templates


def test_a_template_that_would_render_forever_fails_its_run(pytester: pytest.Pytester) -> None:
    bomb = "{% for i in range(99999) %}{% for j in range(99999) %}{{ j }}{% endfor %}{% endfor %}"
    silent = "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}yes"
    flow = f"""
    name: loops
    provider: {{type: python, callable: "echo_provider.py:echo"}}
    nodes: [{{id: a, prompt: "{{{{ body }}}}"}}, {{id: b, prompt: {json.dumps(bomb)}}}]
    cases:
      - {{id: fine, inputs: {{body: "yes"}}}}
    ab_test:
      name: t
      runs: 1
      variants:
        - {{name: silent, prompts: {{b: {json.dumps(silent)}}}}}
    """
    result = _run_beside(pytester, {"loops.yaml": flow})
    out = _assert_contained(result, failed=2)
    result.stdout.fnmatch_lines(["FAILED loops.yaml::t::baseline?fine-run1?*", "FAILED loops.yaml::t::silent?fine-run1?*"])
    assert "node 'b' prompt: the template renders more than 2,000,000 characters" in out, out
    assert "node 'b' prompt: the template's loops ran more than 1,000,000 times" in out, out


@pytest.mark.parametrize(
    "source, message",
    [
        ("{{ range(10**9) | length }}", f"at most {MAX_RANGE:,}"),
        ("{{ 'ab' * 10**8 }}", "'*' would build"),
        ("{{ [1, 2] * 10**8 }}", "'*' would build"),
        ("{{ 7 ** 100000 }}", "'**' would build"),
        ("{% for c in 'x' * 1000 %}{{ 'y' * 1000000 }}{% endfor %}", "renders more than"),
    ],
)
def test_render_bounds(source: str, message: str) -> None:
    from pytest_promptab.errors import TemplateError

    with pytest.raises(TemplateError) as info:
        TemplateRenderer().render(source, {}, where="node 'a' prompt", path="f.yaml", line=3)
    assert message in info.value.message
    assert info.value.line == 3


def test_ordinary_templates_render_as_before() -> None:
    renderer = TemplateRenderer()
    source = "{% for i in range(3) %}{{ i }}{% endfor %} {{ range(4) | list }} {{ range(5) | length }} " \
             "{{ 2 ** 10 }} {{ 'ab' * 2 }} {% for i in range(3) | reverse %}{{ i }}{% endfor %} {{ 2 in range(3) }}"
    assert renderer.render(source, {}, where="w") == "012 [0, 1, 2, 3] 5 1024 abab 210 True"


# ------------------------------------------------------------- item 8: lone surrogates

SURROGATE_PROVIDER = ECHO_PROVIDER + '''

def lone(request):
    return "answer \\ud800 " + request.prompt.strip()
'''


def _surrogate_flow() -> str:
    # "\\ud83d\\ude80" in YAML: two escapes that make a surrogate pair (a rocket); "\\udc00" alone is none
    return (
        'name: odd\nprovider: {type: python, callable: "echo_provider.py:lone", model: m}\n'
        'nodes: [{id: a, prompt: "{{ text }}"}]\n'
        'cases:\n  - {id: c, inputs: {text: "go \\ud83d\\ude80 \\udc00"}}\n'
        'checks: [{type: contains, value: "answer"}]\n'
        "ab_test: {name: t, runs: 2}\n"
    )


def test_lone_surrogates_record_and_replay(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(echo_provider=SURROGATE_PROVIDER, test_plain=PLAIN_TEST)
    (pytester.path / "odd.yaml").write_text(_surrogate_flow(), encoding="utf-8")
    outputs = []
    for mode in ("record", "replay"):
        result = pytester.runpytest("--promptab", NO_MLFLOW, "--promptab-cache", mode, "-p", "no:cacheprovider")
        assert result.ret == 0, result.stdout.str()
        assert result.parseoutcomes()["passed"] == 3
        data = json.loads((pytester.path / ".promptab" / "results.json").read_text(encoding="utf-8"))
        outputs.append([(run["case"], run["run"], run["outputs"]) for run in data["abtests"][0]["runs"]])
        if mode == "record":
            recordings = sorted((pytester.path / ".promptab" / "cache").rglob("*.json"))
            assert len(recordings) == 2
            for path in recordings:
                stored = json.loads(path.read_bytes().decode("utf-8"))  # valid UTF-8
                assert stored["response"]["text"] == "answer \ufffd go \U0001f680 \ufffd"
    assert outputs[0] == outputs[1] == [("c", 1, {"a": "answer \ufffd go \U0001f680 \ufffd"}),
                                        ("c", 2, {"a": "answer \ufffd go \U0001f680 \ufffd"})]


def test_clean() -> None:
    text = "ok"
    assert clean(text) is text
    assert clean("\ud83d\ude80 \ud800 \udfff") == "\U0001f680 \ufffd \ufffd"


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import mlflow.tracking

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    mlflow.tracking.MlflowClient(f"sqlite:///{path.as_posix()}").search_experiments()
    return path


@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")
def test_lone_surrogates_are_logged_to_mlflow(pytester: pytest.Pytester, empty_store: Path) -> None:
    import mlflow.tracking

    store = pytester.path / "mlflow.db"
    shutil.copyfile(empty_store, store)
    uri = f"sqlite:///{store.as_posix()}"
    pytester.makepyfile(echo_provider=SURROGATE_PROVIDER)
    flow = _surrogate_flow().replace("ab_test: {name: t, runs: 2}", "ab_test:\n  name: t\n  runs: 1\n  variants:\n"
                                     '    - {name: "v\\ud800", prompts: {a: "{{ text }} \\udfff"}}')
    (pytester.path / "odd.yaml").write_text(flow, encoding="utf-8")
    result = pytester.runpytest("--promptab", "--promptab-mlflow-uri", uri, "-p", "no:cacheprovider")
    out = result.stdout.str()
    assert result.ret == 0, out
    assert "MLflow logging failed" not in out and "could not log" not in out.lower(), out
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.get_experiment_by_name("odd")
    assert experiment is not None, out
    runs = client.search_runs([experiment.experiment_id])
    variants = {r.data.params.get("variant") for r in runs} - {None}
    assert variants == {"baseline", "v\ufffd"}, variants
    child = next(r for r in runs if r.data.params.get("variant") == "v\ufffd")
    files: dict[str, Any] = {}
    for info in client.list_artifacts(child.info.run_id):
        if not info.is_dir:
            local = client.download_artifacts(child.info.run_id, info.path, str(pytester.path / "dl"))
            files[info.path] = Path(local).read_text(encoding="utf-8")
    assert any("\ufffd" in text for text in files.values()), files


def test_templates_and_conditions_cannot_change_the_case_data() -> None:
    # a case's inputs are shared by every run and variant: the sandbox is immutable
    renderer = TemplateRenderer()
    scope = {"items": [1, 2], "d": {"k": 1}}
    assert not renderer.holds("items.append(5) is none", scope)
    assert not renderer.holds("d.update(k=9) is none", scope)
    with pytest.raises(PromptabError):
        renderer.render("{{ items.append(3) }}", scope, where="node 'x' prompt")
    assert scope == {"items": [1, 2], "d": {"k": 1}}


@pytest.mark.parametrize(
    ("url", "has"),
    [
        ("http://user:secret@127.0.0.1:9/v1", True),
        ("http://u:pa/ss@127.0.0.1:9/v1", True),  # a password holding "/" (SQLAlchemy reads it so)
        ("https://u:p@ss@host/v1", True),
        ("//u@host", True),
        ("http://127.0.0.1:8000/v1", False),
        ("127.0.0.1:8000/v1", False),
        ("", False),
    ],
)
def test_one_rule_finds_the_user_info_it_hides(url: str, has: bool) -> None:
    from pytest_promptab.textsafe import has_userinfo, hide_userinfo

    assert has_userinfo(url) is has
    assert ("secret" in hide_userinfo(url) or "pa/ss" in hide_userinfo(url)) is False
