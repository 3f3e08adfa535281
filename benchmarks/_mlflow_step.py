"""Helper of bench_mlflow.py: the logging step alone, in one process.

``python _mlflow_step.py RESULTS_JSON TRACKING_URI ROOTDIR REPEATS CAP``
reads a session's summary from its results file, warms up as the logging
process does, then logs it ``REPEATS`` times in each mode, interleaved:

- ``no traces``: runs, metrics, params, artifacts;
- ``traces``: the same and ``CAP`` traces, as promptab writes them (straight
  to the SQL store, in the session's one transaction);
- ``traces (client API)``: the same, the traces through MlflowClient's trace
  API instead (what promptab does with an MLflow server), still in one
  transaction;
- ``before (client API, a commit per call)``: the traces through the client
  API and every store call its own transaction, as promptab 0.1 logged.

Prints one JSON document: per mode, the wall and CPU seconds of each repeat
(the first, which pays for lazy imports and cold caches, apart) and the
traces logged.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main() -> int:
    results, uri, rootdir, repeats, cap = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    from pytest_promptab.analysis.summary import SessionSummary
    from pytest_promptab.tracking import onewrite, traces
    from pytest_promptab.tracking.child import run_logging, warm_up

    summary = SessionSummary.from_dict(json.loads(Path(results).read_text(encoding="utf-8")))
    warm_up(uri, cap)
    build_all, sql_store = traces._build_all, onewrite.sql_store
    client_api, before = "traces (client API)", "before (client API, a commit per call)"
    modes = {"no traces": 0, "traces": cap, client_api: cap, before: cap}
    out: dict[str, dict[str, list[float] | int]] = {m: {"wall": [], "cpu": [], "traces": 0} for m in modes}
    for _ in range(repeats):
        for mode, n in modes.items():
            traces._build_all = (lambda *a: None) if mode in (client_api, before) else build_all  # type: ignore[assignment]
            onewrite.sql_store = (lambda client: None) if mode == before else sql_store  # type: ignore[assignment]
            wall, cpu = time.perf_counter(), time.process_time()
            answer = run_logging(summary, tracking_uri=uri, rootdir=rootdir, results_path=Path(results), applied={},
                                 traces=n)  # fmt: skip
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if not answer["ok"]:
                print(json.dumps({"error": answer["message"]}))
                return 1
            out[mode]["wall"].append(wall)  # type: ignore[union-attr]
            out[mode]["cpu"].append(cpu)  # type: ignore[union-attr]
            out[mode]["traces"] = answer.get("traces", 0)
    traces._build_all, onewrite.sql_store = build_all, sql_store  # type: ignore[assignment]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
