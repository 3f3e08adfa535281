"""One serialised form of a run, everywhere: the ``--junitxml`` property is
compact JSON, results.json holds the same content as before (each run as its
record's compact JSON), records survive xdist, and a big session does not
queue every run before its first item."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_promptab import __version__
from pytest_promptab.checks.result import CheckResult
from pytest_promptab.report.results_file import results_text, write_results
from pytest_promptab.run.prefetch import PREFETCH_WINDOW
from pytest_promptab.run.records import RunRecord, received_record
from pytest_promptab.session import PromptabSession
from pytest_promptab.session_data import PromptabOptions, RunJob
from tests.test_end_to_end import NO_MLFLOW, SIMPLE
from tests.test_mlflow_log import make_summary

RECORD_KEYS = ["file", "ab_test", "variant", "case", "run", "status", "metrics", "checks", "outputs", "error",
               "error_node", "extra", "file_sha256"]  # fmt: skip
CHECK_KEYS = ["name", "type", "passed", "score", "expected", "actual", "detail", "scores"]


def compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def record(**overrides: object) -> RunRecord:
    values: dict = dict(
        file="f.yaml", ab_test="ab", variant="baseline", case="c1", run=2, status="check_failed",
        metrics={"latency_ms": 12.5, "passed": 0.0, "check.ok": 0.25},
        checks=[CheckResult("ok", "similarity", False, 0.25, "yes", "no", "too far", {"a": 0.5})],
        outputs={"answer": "no", "parsed": {"k": [1, 2]}}, extra={"answer": {"reasoning": "r"}}, file_sha256="ab" * 32,
    )  # fmt: skip
    values.update(overrides)
    return RunRecord(**values)


# ------------------------------------------------------------ the record's one form


def test_to_json_is_the_compact_json_of_to_dict_with_every_field() -> None:
    r = record()
    text = r.to_json()
    data = json.loads(text)
    assert list(data) == RECORD_KEYS and list(data["checks"][0]) == CHECK_KEYS
    assert text == compact(data)  # no whitespace between tokens
    assert data == json.loads(json.dumps(r.to_dict()))
    assert RunRecord.from_json(text) == r and RunRecord.from_dict(data) == r


def test_reading_a_record_ignores_keys_it_does_not_know() -> None:
    data = json.loads(record().to_json())
    data["from_a_newer_version"] = 1
    data["checks"][0]["weight_used"] = 2.0
    assert RunRecord.from_dict(data) == record()


def test_a_value_that_is_not_json_is_kept_as_text_and_nan_survives() -> None:
    r = record(outputs={"answer": Path("x")}, metrics={"score": math.nan})
    back = json.loads(r.to_json())
    assert back["outputs"]["answer"] == "x" and math.isnan(back["metrics"]["score"])


def test_a_run_is_shipped_as_its_json_text_and_taken_back_whole_in_process(tmp_path: Path) -> None:
    session = PromptabSession(PromptabOptions(rootdir=tmp_path))
    here, r = record(), record()
    text = session.ship(here, here=True)
    assert type(text) is str and text == r.to_json()  # execnet (pytest-xdist) ships exact built-in types only
    session.add_record(text)
    assert session.records["f.yaml"][0] is here  # taken back as it is, not parsed
    worker = session.ship(record(), here=False)  # an xdist worker: its controller parses the text
    session.add_record(worker)
    session.add_record(json.loads(worker))  # a plugin that re-serialised the report
    assert session.records["f.yaml"][1:] == [r, r] and session.records["f.yaml"][1] is not r
    assert not session._shipped
    assert received_record(text) == r


# ------------------------------------------------------------ results.json


def test_results_text_holds_what_the_summary_dict_holds() -> None:
    summary = make_summary()
    summary.abtests[0].mlflow_run_id = "abc"
    summary.abtests[0].runs[0].extra["judge"] = {"reasoning": "fine\nline two"}
    text = results_text(summary)
    assert json.loads(text) == json.loads(json.dumps({"promptab_version": __version__, **summary.to_dict()}))
    assert list(json.loads(text)) == ["promptab_version", *summary.to_dict()]
    lines = text.splitlines()
    runs = summary.abtests[0].runs
    assert lines[1 : 1 + len(runs)] == [r.to_json() + "," for r in runs[:-1]] + [runs[-1].to_json()]
    assert lines[0].startswith(f'{{"promptab_version":"{__version__}","abtests":[{{"file":')  # compact
    assert "\n " not in text  # no indentation


def test_results_text_of_an_ab_test_without_runs_and_of_no_ab_test() -> None:
    summary = make_summary(runs=1)
    summary.abtests[0].runs = []
    assert json.loads(results_text(summary))["abtests"][0]["runs"] == []
    summary.abtests = []
    assert json.loads(results_text(summary))["abtests"] == []


def test_write_results_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "results.json"
    write_results(path, make_summary(runs=1))
    assert json.loads(path.read_text())["promptab_version"] == __version__


def test_results_file_of_a_session_keeps_its_keys_and_one_run_per_line(
    pytester: pytest.Pytester, echo_workflow
) -> None:
    echo_workflow("flow", SIMPLE)
    result = pytester.runpytest("--promptab", NO_MLFLOW)
    assert result.parseoutcomes()["xfailed"] == 6
    text = (pytester.path / ".promptab" / "results.json").read_text()
    data = json.loads(text)
    assert list(data) == ["promptab_version", "abtests", "interrupted", "results_path", "mlflow_uri", "mlflow_error",
                          "tolerated_errors"]
    (ab,) = data["abtests"]
    assert len(ab["runs"]) == 8 and all(list(run) == RECORD_KEYS for run in ab["runs"])
    assert {(r["variant"], r["case"], r["run"]) for r in ab["runs"]} == {
        (v, c, n) for v in ("baseline", "loud") for c in ("good", "bad") for n in (1, 2)
    }
    assert ab["variants"][0]["aggregates"]["passed"]["mean"] == 0.5
    run_lines = [line for line in text.splitlines() if line.startswith('{"file":')]
    assert len(run_lines) == 8  # one run per line


# ------------------------------------------------------------ junit XML and xdist


def test_junitxml_property_of_a_run_is_short_compact_json(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", SIMPLE)
    result = pytester.runpytest("--promptab", NO_MLFLOW, "--junitxml=out.xml")
    assert result.parseoutcomes()["xfailed"] == 6
    root = ET.parse(pytester.path / "out.xml").getroot()
    values = [p.get("value") or "" for p in root.iter("property") if p.get("name") == "promptab_run"]
    assert len(values) == 8
    for value in values:
        data = json.loads(value)  # a Python repr ('...', None, True) would not parse
        assert list(data) == RECORD_KEYS and data["file"] == "flow.yaml"
        assert value == compact(data)
        # the old repr was ~2 KB; the record now also carries each node's rendered
        # messages for its MLflow trace (extra["@trace"]), ~130 characters here
        assert len(value) < 800, len(value)
    good = next(json.loads(v) for v in values if '"case":"good"' in v and '"variant":"baseline"' in v)
    assert good["status"] == "passed" and good["outputs"] == {"answer": "yes"}


def test_xdist_records_equal_a_serial_sessions(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", SIMPLE)
    serial = pytester.runpytest("--promptab", NO_MLFLOW, "--promptab-json=serial.json", "-p", "no:cacheprovider")
    parallel = pytester.runpytest_subprocess(
        "--promptab", NO_MLFLOW, "-n", "2", "--promptab-json=parallel.json", "-p", "no:cacheprovider",
        "--junitxml=out.xml",
    )  # fmt: skip
    assert serial.ret == parallel.ret == 0, parallel.stdout.str()

    def runs(name: str) -> list[dict]:
        found = json.loads((pytester.path / name).read_text())["abtests"][0]["runs"]
        for run in found:
            run["metrics"] = {k: v for k, v in run["metrics"].items() if "latency" not in k}
        return found

    assert runs("serial.json") == runs("parallel.json") and len(runs("serial.json")) == 8
    root = ET.parse(pytester.path / "out.xml").getroot()
    values = [p.get("value") or "" for p in root.iter("property") if p.get("name") == "promptab_run"]
    assert len(values) == 8 and all(v == compact(json.loads(v)) for v in values)


# ------------------------------------------------------------ prefetch


class _Counting:
    """A runner stand-in that records what is submitted."""

    concurrency = 8

    def __init__(self) -> None:
        self.queued: list = []

    def submit_all(self, jobs: list) -> None:
        self.queued.extend(key for key, _ in jobs)

    def result(self, key, job):  # type: ignore[no-untyped-def]
        return key


def test_prefetch_queues_a_window_ahead_and_tops_it_up(tmp_path: Path) -> None:
    session = PromptabSession(PromptabOptions(rootdir=tmp_path, concurrency=2))
    fake = _Counting()
    session._runner = fake  # type: ignore[assignment]
    jobs = [RunJob("f.yaml", "v", 0, n) for n in range(1, 5001)]
    session.prefetch(jobs)
    assert len(fake.queued) == PREFETCH_WINDOW  # not 5,000 before the first item
    for index, job in enumerate(jobs):
        session.result(job)
        assert index < len(fake.queued) <= index + 1 + PREFETCH_WINDOW
        assert len(fake.queued) - (index + 1) >= min(PREFETCH_WINDOW // 2, len(jobs) - index - 1)
    assert fake.queued == [job.key for job in jobs]  # each once, in report order
