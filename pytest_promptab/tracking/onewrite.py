"""One sqlite transaction for a whole session's logging (in the logging process).

MLflow's SQL store opens a session and commits once per call: a session of 4
variants with 50 traces makes some 150 commits, and on sqlite each commit
waits for the disk (a few ms on a quiet machine, tens on a busy one). Inside
:func:`one_transaction` every store call of the block runs in one sqlite
transaction, committed once at the end:

- a connection of the store's own engine runs ``BEGIN IMMEDIATE`` (the write
  lock up front, waiting for another writer as MLflow does: 20 s);
- the store's session factory is replaced, for the block, by MLflow's own
  (its error handling and pragmas), bound to that connection with SQLAlchemy's
  ``join_transaction_mode="create_savepoint"``: a call's commit releases a
  savepoint, its rollback undoes that call only, as it would alone;
- the end of the block commits; an exception rolls everything back (nothing
  half-logged: no run is left "RUNNING") and goes on to the caller.

:func:`rehearse` makes the same kinds of writes once while the tests run, in
a transaction it rolls back (nothing stays): MLflow's and SQLAlchemy's first
calls (statements compiled, lazy imports) are paid then, not at session end.

It is used only for sqlite stores, and only when the store looks as expected
(``ManagedSessionMaker``, ``engine``); otherwise, or when the setup fails, the
block runs as before, one commit per call. A store other than the client's
(``_experiment_id`` creates experiments through its own) must not write inside
the block: it would wait for the lock held here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["one_transaction", "rehearse", "sql_store"]


def sql_store(client: Any) -> Any:
    """The client's MLflow SQL store when it is a sqlite one, else None."""
    try:
        store = client._tracking_client.store
        if getattr(store, "db_type", None) != "sqlite":
            return None
        if not callable(getattr(store, "ManagedSessionMaker", None)) or getattr(store, "engine", None) is None:
            return None
        return store
    except Exception:  # noqa: BLE001 - another MLflow: the plain path
        return None


@contextlib.contextmanager
def one_transaction(client: Any) -> Iterator[bool]:
    """Run the block's store calls in one transaction (see the module doc);
    yields whether it does (False: the plain path, one commit per call)."""
    store = sql_store(client)
    opened = _open(store) if store is not None else None
    if opened is None:
        yield False
        return
    conn, outer, raw, isolation, original = opened
    try:
        yield True
        outer.commit()
    except BaseException:
        with contextlib.suppress(Exception):
            outer.rollback()
        raise
    finally:
        store.ManagedSessionMaker = original
        with contextlib.suppress(Exception):
            raw.isolation_level = isolation
        with contextlib.suppress(Exception):
            conn.close()


def _open(store: Any) -> tuple[Any, Any, Any, Any, Any] | None:
    conn = None
    try:
        import sqlalchemy.orm
        from mlflow.store.db.utils import _get_managed_session_maker

        conn = store.engine.connect()
        raw = conn.connection.dbapi_connection
        isolation = raw.isolation_level
        # pysqlite begins transactions by itself and would commit at the first
        # RELEASE of a savepoint: take over (SQLAlchemy's documented recipe)
        raw.isolation_level = None
        outer = conn.begin()
        conn.exec_driver_sql("PRAGMA foreign_keys = ON")  # a no-op once a transaction is open
        conn.exec_driver_sql("PRAGMA busy_timeout = 20000")
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        maker = sqlalchemy.orm.sessionmaker(bind=conn, join_transaction_mode="create_savepoint")
        original = store.ManagedSessionMaker
        store.ManagedSessionMaker = _get_managed_session_maker(maker, store.db_type)
        return conn, outer, raw, isolation, original
    except Exception:  # noqa: BLE001 - the plain path
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.exec_driver_sql("ROLLBACK")
            with contextlib.suppress(Exception):
                conn.connection.dbapi_connection.isolation_level = ""
            with contextlib.suppress(Exception):
                conn.close()
        return None


def rehearse(client: Any) -> None:
    """An experiment, a run with a metric, a param and tags, and a trace with
    a span and an assessment, written in one transaction and rolled back (see
    the module doc). Never raises; does nothing but for a sqlite store."""
    store = sql_store(client)
    opened = _open(store) if store is not None else None
    if opened is None:
        return
    conn, outer, raw, isolation, original = opened
    try:
        import time
        import uuid
        from types import SimpleNamespace

        from mlflow.entities import Metric, Param, RunTag, Span

        from ..checks.result import CheckResult
        from ..run.records import TRACE_KEY, RunRecord
        from . import traces

        now = int(time.time() * 1000)
        exp_id = str(store.create_experiment(f"promptab-rehearsal-{uuid.uuid4().hex}", "file:///promptab-rehearsal"))
        client.set_experiment_tag(exp_id, "promptab.rehearsal", "true")
        run_id = client.create_run(exp_id, start_time=now, run_name="rehearsal", tags={"promptab.x": "x"}).info.run_id
        client.log_batch(run_id, metrics=[Metric("m", 1.0, now, 0)], params=[Param("p", "v")],
                         tags=[RunTag("t", "v")], synchronous=True)  # fmt: skip
        client.get_run(run_id)
        record = RunRecord(
            file="f.yaml", ab_test="ab", variant="v", case="c", run=1, status="passed",
            metrics={"latency_ms": 1.0, "node.n.latency_ms": 1.0}, outputs={"n": "ok"},
            checks=[CheckResult("check", "contains", True, 1.0, "ok", "ok")],
            extra={TRACE_KEY: [{"node": "n", "messages": [{"role": "user", "content": "hi"}], "output": "ok",
                                "tokens_in": 1, "tokens_out": 1}]},
        )  # fmt: skip
        ab: Any = SimpleNamespace(name="ab", file="f.yaml")
        info, span_dicts = traces._trace_parts(exp_id, run_id, ab, record, time.time_ns(), {})
        with traces._experiments_read_once(store):
            store.start_trace(info)
            store.log_spans(exp_id, [Span.from_dict(d) for d in span_dicts])
        client.set_terminated(run_id, "FINISHED")
    except Exception:  # noqa: BLE001 - a rehearsal only
        pass
    finally:
        with contextlib.suppress(Exception):
            outer.rollback()
        store.ManagedSessionMaker = original
        with contextlib.suppress(Exception):
            raw.isolation_level = isolation
        with contextlib.suppress(Exception):
            conn.close()
