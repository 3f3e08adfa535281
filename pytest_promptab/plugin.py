"""The pytest plugin: options and hooks only (entry point ``promptab``).

The logic lives in plain modules; this file wires them to pytest. It must stay
cheap to import: without ``--promptab`` nothing but pytest and the standard
library is loaded.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generator

import pytest

from .stash import SESSION_KEY, YAML_SEEN_KEY

if TYPE_CHECKING:
    from .session import PromptabSession
    from .session_data import PromptabOptions



def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("promptab", "prompt A/B tests (pytest-promptab)")
    group.addoption("--promptab", action="store_true", default=None,
                    help="collect and run workflow YAML files that have an ab_test section")
    group.addoption("--promptab-concurrency", type=int, default=None, metavar="N",
                    help="provider calls in flight (default 8)")
    group.addoption("--promptab-runs", type=int, default=None, metavar="N", help="override every ab_test.runs")
    group.addoption("--promptab-cache", default=None, choices=("off", "record", "replay", "auto"),
                    help="record and replay provider responses under .promptab/cache/ (default off)")
    group.addoption("--promptab-apply-best", action="store_true", default=False,
                    help="rewrite each file's prompts with its A/B test's significant winner")
    group.addoption("--promptab-block-exit-code", type=int, default=None, metavar="N",
                    help="exit code when a BLOCK_DEPLOY gate fails (default 10)")
    group.addoption("--promptab-json", default=None, metavar="PATH",
                    help="results file (default .promptab/results.json under the rootdir)")
    group.addoption("--promptab-html", default=None, metavar="PATH",
                    help="write a self-contained HTML report of the session to PATH")
    group.addoption("--promptab-mlflow-uri", default=None, metavar="URI", help="MLflow tracking URI")
    group.addoption("--promptab-no-mlflow", action="store_true", default=False, help="do not log to MLflow")
    group.addoption("--promptab-mlflow-traces", type=int, default=50, metavar="N",
                    help="MLflow traces logged per session, the same cases in every variant, "
                         "failed runs first (default 50; 0: none)")
    group.addoption("--promptab-no-history", action="store_true", default=False,
                    help="do not save this session under .promptab/history/")
    group.addoption("--promptab-compare", action="store_true", default=False,
                    help="compare each A/B test with its latest earlier accepted session")
    group.addoption("--promptab-compare-to", default=None, metavar="REF",
                    help="compare with REF: a history file, a results file, mlflow:<run id> or "
                         "mlflow:branch=<name> (implies comparing)")
    group.addoption("--promptab-compare-fail", action="append", default=[], metavar="METRIC:TOL",
                    help="fail on a regression of METRIC beyond TOL (0.05 absolute, 20%% relative); repeatable")
    group.addoption("--promptab-registry-alias", default=None, metavar="ALIAS",
                    help="the prompt registry alias apply-best points at the versions it registers "
                         "(default promptab-best)")
    group.addoption("--promptab-provider", default=None, metavar="SPEC",
                    help="replace every node's provider, e.g. '{type: python, callable: \"stand_in.py:respond\"}'")
    parser.addini("promptab", type="bool", default=False, help="collect and run promptab workflow files")
    parser.addini("promptab_concurrency", default="8", help="provider calls in flight")
    parser.addini("promptab_cache", default="off", help="off, record, replay or auto")
    parser.addini("promptab_block_exit_code", default="10", help="exit code when a BLOCK_DEPLOY gate fails")
    parser.addini("promptab_json", default="", help="results file")
    parser.addini("promptab_html", default="", help="HTML report file (none when empty)")
    parser.addini("promptab_mlflow_uri", default="", help="MLflow tracking URI")
    parser.addini("promptab_registry_alias", default="promptab-best",
                  help="the prompt registry alias apply-best points at the versions it registers")
    parser.addini("promptab_compare_to", default="",
                  help="reference to compare with (history or results file, mlflow:<run id>, mlflow:branch=<name>)")
    parser.addini("promptab_provider", default="", help="provider mapping (YAML flow) replacing every node's")


def _session(config: pytest.Config) -> PromptabSession | None:
    return config.stash.get(SESSION_KEY, None)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "promptab: a run or gate of a promptab workflow")
    if not (config.getoption("promptab") or config.getini("promptab")):
        return
    from .session import PromptabSession

    hook = config.hook
    psession = PromptabSession(
        read_options(config),
        register_providers=lambda registry: hook.pytest_promptab_register_providers(registry=registry),
        register_checks=lambda registry: hook.pytest_promptab_register_checks(registry=registry),
    )
    config.stash[SESSION_KEY] = psession
    config.pluginmanager.register(PromptabHooks(config, psession), "promptab-session")


def read_options(config: pytest.Config) -> PromptabOptions:
    from .session_data import CACHE_MODES, PromptabOptions

    def pick(option: str, ini: str) -> Any:
        value = config.getoption(option)
        return value if value not in (None, "") else config.getini(ini)

    try:
        concurrency = int(pick("promptab_concurrency", "promptab_concurrency"))
        block = int(pick("promptab_block_exit_code", "promptab_block_exit_code"))
    except ValueError as exc:
        raise pytest.UsageError(f"promptab: {exc}") from None
    cache = str(pick("promptab_cache", "promptab_cache") or "off")
    if cache not in CACHE_MODES:
        raise pytest.UsageError(f"promptab_cache must be one of {', '.join(CACHE_MODES)}, not {cache!r}")
    if concurrency < 1:
        raise pytest.UsageError("--promptab-concurrency must be at least 1")
    if block in (2, 3, 4, 5) or not 0 < block < 256:
        raise pytest.UsageError("--promptab-block-exit-code must be 1..255 and not one of pytest's 2, 3, 4, 5")
    runs = config.getoption("promptab_runs")
    if runs is not None and not 1 <= runs <= 100_000:
        raise pytest.UsageError("--promptab-runs must be from 1 to 100000 (as ab_test.runs)")
    json_path = pick("promptab_json", "promptab_json")
    html_path = pick("promptab_html", "promptab_html")
    compare_to, compare_fail = _compare_options(config)
    alias = str(pick("promptab_registry_alias", "promptab_registry_alias") or "promptab-best").strip()
    if not re.fullmatch(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*", alias):
        raise pytest.UsageError(f"promptab_registry_alias {alias!r}: a registry alias uses letters, digits, '_', '-', '.'")
    return PromptabOptions(
        rootdir=config.rootpath,
        concurrency=concurrency,
        runs=runs,
        cache=cache,
        apply_best=bool(config.getoption("promptab_apply_best")),
        block_exit_code=block,
        json_path=Path(json_path).resolve() if json_path else None,
        html_path=Path(html_path).resolve() if html_path else None,
        mlflow_uri=config.getoption("promptab_mlflow_uri"),
        mlflow_ini=config.getini("promptab_mlflow_uri") or None,
        no_mlflow=bool(config.getoption("promptab_no_mlflow")),
        mlflow_traces=max(0, int(config.getoption("promptab_mlflow_traces"))),
        verbose=config.option.verbose,
        no_history=bool(config.getoption("promptab_no_history")),
        compare=bool(config.getoption("promptab_compare")) or bool(compare_to) or bool(compare_fail),
        compare_to=compare_to,
        compare_fail=compare_fail,
        provider=str(pick("promptab_provider", "promptab_provider") or "") or None,
        registry_alias=alias,
        run_uid=getattr(config, "workerinput", {}).get("testrunuid"),
    )


def _compare_options(config: pytest.Config) -> tuple[str | None, list[tuple[str, Any]]]:
    """``--promptab-compare-to`` / ini ``promptab_compare_to`` (checked now:
    a bad reference is a usage error) and the ``--promptab-compare-fail`` gates."""
    from .errors import PromptabError
    from .workflow.regression_spec import parse_compare_fail

    try:
        compare_fail = [parse_compare_fail(spec) for spec in config.getoption("promptab_compare_fail") or []]
    except ValueError as exc:
        raise pytest.UsageError(f"promptab: {exc}") from None
    ref = config.getoption("promptab_compare_to") or config.getini("promptab_compare_to") or None
    if ref is None:
        return None, compare_fail
    if str(ref).startswith("mlflow:"):
        return _mlflow_reference(config, str(ref)), compare_fail
    path = Path(ref)
    if not path.is_absolute():
        path = (Path.cwd() / path) if config.getoption("promptab_compare_to") else config.rootpath / path
    from .report.history import load_saved

    try:
        load_saved(path, what="--promptab-compare-to")
    except PromptabError as exc:
        raise pytest.UsageError(f"promptab: {exc}") from None
    return str(path), compare_fail


def _mlflow_reference(config: pytest.Config, ref: str) -> str:
    """``mlflow:<run id>`` / ``mlflow:branch=<name>``, read now (in this
    process: mlflow is imported for it) from the session's tracking URI; an
    unknown run, no run from that branch or an unreachable store is a usage
    error. xdist workers leave it to the controller, which compares."""
    if _is_worker(config):
        return ref
    import os

    from .errors import PromptabError
    from .references import checked
    from .tracking.log import resolve_tracking_uri

    uri = resolve_tracking_uri(config.getoption("promptab_mlflow_uri"), config.getini("promptab_mlflow_uri") or None,
                               os.environ, config.rootpath)
    try:
        checked(ref, what="--promptab-compare-to", tracking_uri=uri)
    except PromptabError as exc:
        raise pytest.UsageError(f"promptab: {exc.message}") from None
    return ref


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix not in (".yaml", ".yml"):
        return None
    if _session(parent.config) is None:  # promptab is off: remember it for the hint at the end
        parent.config.stash.setdefault(YAML_SEEN_KEY, []).append(file_path)
        return None
    from .workflow.loader import is_promptab_file

    if not is_promptab_file(file_path):
        return None
    from .items import WorkflowFile

    return WorkflowFile.from_parent(parent, path=file_path)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Without --promptab: one line on how to turn it on, when YAML files pytest
    walked past look like promptab workflows (a text scan, no YAML parser)."""
    seen = config.stash.get(YAML_SEEN_KEY, None)
    if seen and _session(config) is None:
        from .offhint import hint

        given = config.args_source == pytest.Config.ArgsSource.ARGS
        line = hint(seen, collected_nothing=exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED, paths_given=given)
        if line:
            terminalreporter.write_line(line, yellow=True)


class PromptabHooks:
    """The hooks of a ``--promptab`` session, registered only when it is on."""

    def __init__(self, config: pytest.Config, psession: PromptabSession) -> None:
        self.config = config
        self.psession = psession
        self.controller = not _is_worker(config)
        self.runs_reported = 0
        option = config.option
        if (
            self.controller
            and not psession.options.no_mlflow
            and not option.collectonly
            and not getattr(option, "help", False)
        ):
            # imports mlflow and opens the store while the tests run; logs at session end
            psession.start_mlflow_process()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, Any, Any]:
        from .gcfreeze import freeze_collected
        from .items import jobs_to_prefetch

        freeze_collected()  # the collected tree lives until the end: the collector stops walking it
        psession = self.psession
        if self.controller:
            jobs = jobs_to_prefetch(session)
            psession.prefetch(jobs)
            xdist = self.config.pluginmanager.has_plugin("dsession") and not self.config.option.collectonly
            if jobs or xdist:  # runs will come (under xdist: from the workers)
                from .session_end import start_journal

                start_journal(self.config, psession)
        try:
            result = yield
        except (session.Failed, session.Interrupted):
            # -x, --maxfail, --sw stopped the loop after an item: when every
            # selected run had reported (a gate item tripped it), the session counts
            self._end_loop(session, stopped=self._runs_missing(session))
            raise
        except BaseException:
            psession.stopped = True
            raise
        finally:
            psession.runner.shutdown()
        self._end_loop(session, stopped=bool(session.shouldfail or session.shouldstop) and self._runs_missing(session))
        return result

    @pytest.hookimpl(tryfirst=True, specname="pytest_collection_modifyitems")
    def pytest_collection_modifyitems_stepwise(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        from .selection import stepwise_from_first_run

        stepwise_from_first_run(config, items)

    @pytest.hookimpl(trylast=True, specname="pytest_collection_modifyitems")
    def pytest_collection_modifyitems_lf(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        from .selection import rerun_runs_of_failed_gates

        rerun_runs_of_failed_gates(config, items)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # after every modifyitems hook (--ff's and --sw's run in wrappers)
        from .selection import order_gates

        order_gates(session.items)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report = yield
        if call.when == "call" and report.passed:
            from .items import GateItem, RunItem

            if isinstance(item, RunItem) and item.xfail_reason is not None:
                # a failed check is an XFAIL, marked as pytest's skipping plugin marks
                # one: no exception raised, so no traceback formatted
                if self.config.option.runxfail:
                    from .gatereports import ShortFailure

                    path, lineno = report.location[0], report.location[1] or 0
                    report.outcome, report.longrepr = "failed", ShortFailure(item.xfail_reason, path, lineno)
                else:
                    report.outcome, report.wasxfail = "skipped", item.xfail_reason
            elif isinstance(item, GateItem) and item.verdict is not None:
                from .gatereports import mark_report, record_gate_warning

                mark_report(report, item.verdict)
                record_gate_warning(self.config, item.nodeid, item.verdict, report.location[0], report.location[1] or 0)
        return report

    @pytest.hookimpl(wrapper=True, specname="pytest_runtest_logreport")
    def pytest_runtest_logreport_gates(self, report: pytest.TestReport) -> Generator[None, Any, Any]:
        # xdist controller: a worker's gate report gets its verdict before any
        # other plugin (terminal, junitxml, --lf) sees it
        if self.controller and report.user_properties and report.when != "setup" and any(
            name == "promptab_gate_pending" for name, _ in report.user_properties
        ):
            from .gatereports import judge_worker_report

            judge_worker_report(self.config, self.psession, report)
        return (yield)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        # one work unit per A/B test, so that its gates run after its runs
        if config.getvalue("dist") in ("load", "loadgroup", "worksteal"):
            from .xdist_units import ABTestScheduling

            return ABTestScheduling(config, log)
        return None

    def _end_loop(self, session: pytest.Session, *, stopped: bool) -> None:
        if not self.controller:
            return
        self.psession.stopped = stopped
        if not stopped:
            from .session_end import end_test_loop

            end_test_loop(self.config, session, self.psession)

    def _runs_missing(self, session: pytest.Session) -> bool:
        if not session.items:  # the xdist controller has no items: it cannot tell
            return True
        from .items import RunItem

        return self.runs_reported < sum(1 for item in session.items if isinstance(item, RunItem))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not self.controller or report.when != "call" or not report.user_properties:
            return
        for name, value in report.user_properties:
            if name == "promptab_run":
                self.runs_reported += 1
                self.psession.add_record(value)  # type: ignore[arg-type]

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.controller:
            from .session_end import finish_session

            finish_session(self.config, session, self.psession, exitstatus)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.controller and self.psession.summary is not None:
            from .session_end import write_terminal_summary

            write_terminal_summary(terminalreporter, self.psession)

    def pytest_unconfigure(self) -> None:
        try:
            self.psession.close()
        finally:
            self.psession.stop_mlflow_process()
            from .gcfreeze import release_frozen

            release_frozen()
