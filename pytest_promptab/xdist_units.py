"""promptab's pytest-xdist scheduler: one work unit per A/B test.

A gate item judges after every selected run of its A/B test has reported. The
controller judges it, when the worker's gate report arrives (see
:mod:`.gatereports`); that report must come after every run's. So the items
of one A/B test go, in their order, to one worker, as ``--dist loadscope``
sends a class's tests; every other item is a unit of its own (or of its
``xdist_group``), as with ``--dist load``/``loadgroup``. The runner still calls
the provider concurrently inside the worker (``--promptab-concurrency``).

Used for ``-n N`` with ``--dist load`` (xdist's default), ``loadgroup`` and
``worksteal``; ``loadscope`` and ``loadfile`` already keep an A/B test
together. Imported only under xdist.
"""

from __future__ import annotations

from xdist.scheduler import LoadGroupScheduling


class ABTestScheduling(LoadGroupScheduling):
    def _split_scope(self, nodeid: str) -> str:
        path, _, rest = nodeid.partition("::")
        if path.endswith((".yaml", ".yml")) and "::" in rest:
            return f"{path}::{rest.split('::', 1)[0]}"  # file::ab_test
        return super()._split_scope(nodeid)
