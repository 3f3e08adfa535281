"""pytest collectors and items for workflow files (imported only with --promptab).

``file.yaml`` -> ``file.yaml::<ab_test name>`` -> one item per variant x case x
run, named ``<variant>[<case>-run<n>]`` (``<variant>[run<n>]`` with no cases).
A file that does not load becomes a single failing item, so that one broken
file never stops the others from running.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from .errors import PromptabError
from .run.records import USER_PROPERTY, RunRecord
from .session import RunJob
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
        no_cases = len(self.loaded.cases) == 1 and self.loaded.config.cases is None
        for job in psession.jobs(self.loaded, self.display):
            case = self.loaded.cases[job.case_index]
            param = f"run{job.run}" if no_cases else f"{case.id}-run{job.run}"
            yield RunItem.from_parent(self, name=f"{job.variant}[{param}]", job=job)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, (self.loaded.line("ab_test") or 1) - 1, self.name


class RunItem(pytest.Item):
    def __init__(self, *, job: RunJob, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job = job
        self.add_marker(pytest.mark.promptab)

    def runtest(self) -> None:
        psession = self.config.stash[SESSION_KEY]
        record: RunRecord = psession.result(self.job)
        self.user_properties.append((USER_PROPERTY, psession.ship(record, here=not hasattr(self.config, "workerinput"))))
        self.config.hook.pytest_promptab_run_finished(record=record)
        if record.status == "error":
            raise RunFailed(record.error or "the run failed")
        failed = record.failed_checks()
        if failed:
            reasons = "; ".join(f"check {c.name!r} failed: {c.detail or f'expected {c.expected!r}, got {c.actual!r}'}" for c in failed)
            pytest.xfail(reasons)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, (RunFailed, PromptabError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        loaded: LoadedWorkflow = self.parent.loaded  # type: ignore[union-attr]
        variant_line = 0
        names = loaded.config.ab_test.variant_names
        if self.job.variant != names[0]:
            variant_line = (loaded.line("ab_test", "variants", names.index(self.job.variant) - 1) or 1) - 1
        return self.path, variant_line, f"promptab {self.name}"


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
