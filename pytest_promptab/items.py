"""pytest collectors and items for workflow files (imported only with --promptab).

``file.yaml`` -> ``file.yaml::<ab_test name>`` -> one item per variant x case x
run, named ``<variant>[<case>-run<n>]`` (``<variant>[run<n>]`` with no cases),
then one gate item per gate x variant, ``gate[<variant>:<gate label>]``.
A file that does not load becomes a single failing item, so that one broken
file never stops the others from running.

Node ids are built as pytest builds a parametrized test's: the name before the
bracket, the bracket as the parameters. pytest 9.2 keeps node ids as
structured values (path, names, params) and compares the cached ids of
``--lf``/``--sw`` with them; an id built from a name with the bracket glued on
never equals the cached one. A failed check does not raise: the item notes the
XFAIL reason and the plugin's makereport hook marks the report, as pytest's own
xfail does, so no traceback is formatted for it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterator

import pytest

from .errors import PromptabError, PromptabWarning
from .gatereports import PENDING_PROPERTY
from .run.records import USER_PROPERTY, RunRecord
from .session_data import GateVerdict, RunJob
from .stash import SESSION_KEY
from .workflow.loader import LoadedWorkflow


class RunFailed(Exception):
    """The run could not complete; the message says which node and why."""


def display_path(path: Path, rootdir: Path) -> str:
    try:
        return path.relative_to(rootdir).as_posix()
    except ValueError:
        return path.as_posix()


class WorkflowFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        psession = self.config.stash[SESSION_KEY]
        display = display_path(self.path, self.config.rootpath)
        try:
            loaded = psession.load(self.path, display)
        except PromptabError as exc:
            yield InvalidWorkflowItem.from_parent(self, name="workflow", error=exc)
            return
        yield ABTestCollector.from_parent(self, name=loaded.config.ab_test.name, loaded=loaded, display=display)


class ABTestCollector(pytest.Collector):
    def __init__(self, *, loaded: LoadedWorkflow, display: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.loaded = loaded
        self.display = display

    def collect(self) -> Iterator[pytest.Item]:
        psession = self.config.stash[SESSION_KEY]
        from .analysis.design import collection_warning

        too_few = collection_warning(self.loaded, psession.runs_per_case(self.loaded))
        first_worker = getattr(self.config, "workerinput", {}).get("workerid", "gw0") == "gw0"
        if too_few and first_worker:  # before any call: the design can never name a winner (said once under xdist)
            warnings.warn_explicit(
                PromptabWarning(f"{self.display}::{self.name}: {too_few}"),
                category=None, filename=str(self.path), lineno=self.loaded.line("ab_test") or 1,
            )  # fmt: skip
        for note in self.loaded.registry_notes if first_worker else ():  # registry unreachable: the cached text ran
            warnings.warn_explicit(PromptabWarning(f"{self.display}: {note}"), category=None,
                                   filename=str(self.path), lineno=1)
        if self.loaded.notes and first_worker and self.config.option.verbose > 0:  # a translated format's leftovers
            warnings.warn_explicit(
                PromptabWarning(f"{self.display}: {self.loaded.source_format} keys accepted, not used by promptab: "
                                + "; ".join(self.loaded.notes)),
                category=None, filename=str(self.path), lineno=1,
            )  # fmt: skip
        no_cases = len(self.loaded.cases) == 1 and self.loaded.config.cases is None
        jobs = psession.jobs(self.loaded, self.display)
        for job in jobs:
            case = self.loaded.cases[job.case_index]
            param = f"run{job.run}" if no_cases else f"{case.id}-run{job.run}"
            yield RunItem.from_parent(self, name=f"{job.variant}[{param}]", nodeid=child_id(self, job.variant, param), job=job)
        ab = self.loaded.config.ab_test
        for gate in ab.gates:
            for variant in ab.variant_names:
                if gate.variants is not None and variant not in gate.variants:
                    continue
                param = f"{variant}:{gate.label}"
                yield GateItem.from_parent(
                    self, name=f"gate[{param}]", nodeid=child_id(self, "gate", param), variant=variant, total_runs=len(jobs)
                )
        from .history import regression_specs

        for spec in regression_specs(psession, self.loaded):
            for variant in ab.variant_names:
                if spec.variants is not None and variant not in spec.variants:
                    continue
                param = f"{variant}:{spec.label}"
                yield RegressionItem.from_parent(
                    self, name=f"regression[{param}]", nodeid=child_id(self, "regression", param),
                    variant=variant, total_runs=len(jobs),
                )

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, (self.loaded.line("ab_test") or 1) - 1, self.name

    def variant_line(self, variant: str) -> int:
        """The 0-based line of ``variant`` in the file (the baseline: 0), once per variant."""
        lines: dict[str, int] = self.__dict__.setdefault("_variant_lines", {})
        line = lines.get(variant)
        if line is None:
            line = 0
            names = self.loaded.config.ab_test.variant_names
            if variant != names[0]:
                line = (self.loaded.line("ab_test", "variants", names.index(variant) - 1) or 1) - 1
            lines[variant] = line
        return line


def _promptab_mark() -> pytest.MarkDecorator:
    """``pytest.mark.promptab``, made once (each ``pytest.mark.<name>``
    lookup checks the registered markers again: 10,000 items, 10,000 times)."""
    global _MARK
    if _MARK is None:
        _MARK = pytest.mark.promptab
    return _MARK


_MARK: pytest.MarkDecorator | None = None


class RunItem(pytest.Item):
    def __init__(self, *, job: RunJob, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job = job
        self.add_marker(_promptab_mark())

    xfail_reason: str | None = None
    """Set when a check failed: the report becomes an XFAIL (see the plugin's
    ``pytest_runtest_makereport``)."""

    def runtest(self) -> None:
        psession = self.config.stash[SESSION_KEY]
        record: RunRecord = psession.result(self.job)
        self.user_properties.append((USER_PROPERTY, psession.ship(record, here=not hasattr(self.config, "workerinput"))))
        self.config.hook.pytest_promptab_run_finished(record=record)
        if record.status == "error":
            raise RunFailed(record.error or "the run failed")
        failed = record.failed_checks()
        if failed:
            self.xfail_reason = "; ".join(
                f"check {c.name!r} failed: {c.detail or f'expected {c.expected!r}, got {c.actual!r}'}" for c in failed
            )

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, (RunFailed, PromptabError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, self.parent.variant_line(self.job.variant), f"promptab {self.name}"  # type: ignore[union-attr]


class GateItem(pytest.Item):
    """One gate judged for one variant, after every selected run of its A/B
    test has reported. In a worker of pytest-xdist it only says how many runs
    were selected; the controller, which has received every run's report by
    then, judges it (see :mod:`.gatereports`)."""

    def __init__(self, *, variant: str, total_runs: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.variant = variant
        self.total_runs = total_runs
        self.selected_runs = 0
        """Runs of the A/B test left in the session's items (set at collection end)."""
        self.verdict: GateVerdict | None = None
        self.add_marker(_promptab_mark())

    @property
    def abtest_nodeid(self) -> str:
        return self.parent.nodeid  # type: ignore[union-attr]

    def runtest(self) -> None:
        psession = self.config.stash[SESSION_KEY]
        pending = {"abtest": self.abtest_nodeid, "file": self.parent.display,  # type: ignore[union-attr]
                   "variant": self.variant, "selected": self.selected_runs, "total": self.total_runs}
        if hasattr(self.config, "workerinput"):
            self.user_properties.append((PENDING_PROPERTY, pending))
            return
        self.verdict = psession.gate_verdict(self.nodeid, pending)
        self.user_properties.extend(self.verdict.properties())

    def reportinfo(self) -> tuple[Path, int | None, str]:
        loaded: LoadedWorkflow = self.parent.loaded  # type: ignore[union-attr]
        return self.path, (loaded.line("ab_test") or 1) - 1, f"promptab {self.name}"


class RegressionItem(GateItem):
    """One regression gate judged for one variant against the reference
    session's deploy candidate (SPEC 12): a gate in every other respect
    (ordered after the runs, judged when it runs, the same outcomes)."""


def child_id(parent: pytest.Collector, name: str, params: str) -> Any:
    """``<parent>::<name>[<params>]``, structured where pytest has structured
    node ids (9.2+: ``Node.id``), else the string."""
    parent_id = getattr(parent, "id", None)
    if parent_id is not None and hasattr(parent_id, "with_params"):
        return parent_id.child(name).with_params(params)
    return f"{parent.nodeid}::{name}[{params}]"


class InvalidWorkflowItem(pytest.Item):
    """Stands for a workflow file that could not be loaded; fails with why."""

    def __init__(self, *, error: PromptabError, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error = error

    def runtest(self) -> None:
        raise self.error

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, PromptabError):
            return f"invalid promptab workflow: {excinfo.value}"
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, (self.error.line or 1) - 1, "promptab workflow"


def jobs_to_prefetch(session: pytest.Session) -> list[RunJob]:
    """The runs of the selected items that will really run, in report order;
    none when nothing runs (--collect-only, --setup-only/-plan, or collection
    errors that stop the session before its first test)."""
    option = session.config.option
    if (
        option.collectonly
        or getattr(option, "setuponly", False)
        or getattr(option, "setupplan", False)
        or (session.testsfailed and not option.continue_on_collection_errors)
    ):
        return []
    return [item.job for item in session.items if isinstance(item, RunItem) and _will_run(item)]


def _will_run(item: pytest.Item) -> bool:
    """False for an item a skip mark skips (unconditionally, or with a bool
    condition that is true): its run is never sent."""
    if item.get_closest_marker("skip") is not None:
        return False
    for mark in item.iter_markers("skipif"):
        conditions = (*mark.args, mark.kwargs.get("condition", False))
        if any(isinstance(c, bool) and c for c in conditions):
            return False
    return True
