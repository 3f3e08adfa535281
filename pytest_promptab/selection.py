"""Where gate items stand in the session, and what pytest's selection habits
(``--lf``, ``--ff``, ``--sw``) select around them.

- Gate items run after every selected run of their A/B test, whatever
  reordered the items (``--ff``, ``--sw``, other plugins): :func:`order_gates`
  runs at ``pytest_collection_finish``, after every ``modifyitems`` hook,
  wrappers included, and moves each gate just after its A/B test's last run,
  keeping every other item's order.
- A gate needs its runs: when ``--lf``/``--ff`` reruns a failed gate, its A/B
  test's runs (those ``-k``/``--deselect`` kept) are rerun with it
  (:func:`rerun_runs_of_failed_gates`); when ``--sw`` would resume at a failed
  gate, it resumes at the first run of its A/B test
  (:func:`stepwise_from_first_run`).

pytest 8.4 to 9.1 key their caches by node id strings, 9.2 by structured node ids
(``Item.id``); both are handled.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from .items import GateItem, RunItem


def order_gates(items: list[pytest.Item]) -> None:
    """In place: each gate item just after the last selected run of its A/B
    test (where it stands when none is selected); record on each gate how
    many of its A/B test's runs are selected."""
    selected = Counter(_abtest(item) for item in items if isinstance(item, RunItem))
    left = Counter(selected)
    waiting: dict[str, list[pytest.Item]] = {}
    ordered: list[pytest.Item] = []
    for item in items:
        if isinstance(item, GateItem):
            item.selected_runs = selected[item.abtest_nodeid]
            if left[item.abtest_nodeid]:
                waiting.setdefault(item.abtest_nodeid, []).append(item)
                continue
        ordered.append(item)
        if isinstance(item, RunItem):
            key = _abtest(item)
            left[key] -= 1
            if not left[key]:
                ordered.extend(waiting.pop(key, []))
    items[:] = ordered


def rerun_runs_of_failed_gates(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--lf``/``--ff``: mark the runs of an A/B test whose gate failed last
    time as failed too, so that pytest's last-failed plugin selects them
    (and forgets them again once they pass or XFAIL)."""
    lf = config.pluginmanager.get_plugin("lfplugin")
    lastfailed: dict[Any, bool] | None = getattr(lf, "lastfailed", None)
    if not getattr(lf, "active", False) or not lastfailed:
        return
    failed = {str(key) for key in lastfailed}
    abtests = {item.abtest_nodeid for item in items if isinstance(item, GateItem) and item.nodeid in failed}
    for item in items:
        if isinstance(item, RunItem) and _abtest(item) in abtests:
            lastfailed[_cache_key(item, lastfailed)] = True


def stepwise_from_first_run(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--sw``: resume at the first run of a failed gate's A/B test, not at
    the gate alone (which would be skipped as a partial selection)."""
    stepwise = config.pluginmanager.get_plugin("stepwiseplugin")
    info = getattr(stepwise, "cached_info", None)
    last = getattr(info, "last_failed", None)
    if last is None:
        return
    gate = next((item for item in items if isinstance(item, GateItem) and item.nodeid == str(last)), None)
    if gate is None:
        return
    first = next((item for item in items if isinstance(item, RunItem) and _abtest(item) == gate.abtest_nodeid), None)
    if first is not None:
        info.last_failed = first.nodeid if isinstance(last, str) else getattr(first, "id", first.nodeid)  # type: ignore[union-attr]


def _abtest(item: pytest.Item) -> str:
    return item.parent.nodeid  # type: ignore[union-attr]


def _cache_key(item: pytest.Item, cache: dict[Any, bool]) -> Any:
    structured = getattr(item, "id", None)
    if structured is not None and any(not isinstance(key, str) for key in cache):
        return structured
    return item.nodeid
