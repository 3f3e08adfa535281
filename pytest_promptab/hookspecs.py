"""promptab's own pluggy hook specifications, added with ``pytest_addhooks``.

Implement them in a ``conftest.py`` or a plugin to add provider types and check
types, see each finished run, or see the session's summary before it is
logged. Names start with ``pytest_`` because pytest only registers hook
implementations with that prefix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .analysis.summary import SessionSummary
    from .checks.registry import CheckRegistry
    from .providers.registry import ProviderRegistry
    from .run.records import RunRecord


@pytest.hookspec
def pytest_promptab_register_providers(registry: ProviderRegistry) -> None:
    """Add provider types: ``registry.register("name", factory)`` where
    ``factory(config: ProviderConfig, base_dir: Path) -> Provider``."""


@pytest.hookspec
def pytest_promptab_register_checks(registry: CheckRegistry) -> None:
    """Add check types: ``registry.register("name", fn)`` where
    ``fn(check: CheckConfig, ctx: CheckContext) -> CheckResult``."""


@pytest.hookspec
def pytest_promptab_run_finished(record: RunRecord) -> None:
    """Called in the process that ran it, after each run of a workflow. The
    record is final (already shipped to the controller as JSON): read it,
    do not change it."""


@pytest.hookspec
def pytest_promptab_session_summary(summary: SessionSummary) -> None:
    """Called once on the controller at session end, after the statistics,
    apply-best and the gates, before the gate reports, the final results file
    and MLflow (after an interrupted session: statistics only). The summary
    may be read (and annotated), not restructured; its run records are
    final (results.json holds them as they were shipped)."""
