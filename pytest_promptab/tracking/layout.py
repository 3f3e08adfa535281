"""What promptab writes to MLflow, as plain data: the params, metrics, tags
and artifact files of an A/B test's parent run and of each variant's child
run, the ``runs.json`` table, the run description, and the split of all of it
into ``log_batch`` calls within MLflow's limits.

Pure builders over :mod:`pytest_promptab.analysis.summary` objects: no mlflow import
and no client call (those are :mod:`pytest_promptab.tracking.log`'s). Keys are
sanitized to what MLflow accepts, long values are capped, and settings named
like keys, tokens or credentials, or whose value looks like one, are dropped.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import __version__
from ..analysis.summary import ABTestSummary, VariantSummary
from ..gitinfo import git_info

MAX_PARAM_VALUE, MAX_TAG_VALUE, MAX_KEY = 6000, 8000, 250
MAX_METRICS, MAX_PARAMS, MAX_TAGS, MAX_ENTITIES = 1000, 100, 100, 1000  # per log_batch call
MAX_BATCH_BYTES = 800_000  # MLflow refuses log_batch requests over 1 MB

TABLE_TAG = json.dumps([{"path": "runs.json", "type": "table"}])
"""``mlflow.loggedArtifacts``: what ``log_table`` sets so the UI shows a table."""
TABLES_TAG = json.dumps([{"path": "runs.json", "type": "table"}, {"path": "aggregates.json", "type": "table"}])
TRUNCATED = "\n[... truncated by promptab: {n} characters in all; the full text is the artifact {path}]"

_SECRET_NAME = re.compile(
    r"(?i)(api[_-]?key|secret|passw(or)?d|authori[sz]ation|credential|cookie|bearer|private"
    r"|(^|[_\-.])(key|token|auth)$|^headers?$|_headers$)"
)
_SECRET_VALUE = re.compile(r"(?i)^(sk-\w|bearer\s|ghp_|github_pat_|xox[abp]-|AKIA[0-9A-Z]{12})")

Batch = tuple[list[tuple[str, float]], list[tuple[str, str]], list[tuple[str, str]]]
"""One ``log_batch`` call: (metrics, params, tags) as (key, value) pairs."""


# ------------------------------------------------------------ run contents


def session_tags(rootdir: Path) -> dict[str, str]:
    """Tags every run of the session carries: promptab version, CI, git, user."""
    ci = os.environ.get("CI", "").strip().lower()
    tags = {
        "promptab.version": __version__,
        "promptab.ci": "true" if ci and ci not in ("0", "false", "no") else "false",
        "mlflow.source.type": "LOCAL",
    }
    git = git_info(rootdir)
    for key, tag in (("commit", "mlflow.source.git.commit"), ("branch", "mlflow.source.git.branch"),
                     ("dirty", "promptab.git_dirty")):  # fmt: skip
        if key in git:
            tags[tag] = git[key]
    with contextlib.suppress(Exception):
        tags["mlflow.user"] = getpass.getuser()
    return tags


def abtest_common_tags(ab: ABTestSummary, common: dict[str, str]) -> dict[str, str]:
    """``common`` plus the tags every run of this A/B test carries."""
    return {**common, "mlflow.source.name": ab.file, "promptab.ab_test": ab.name, "promptab.file": ab.file}


def parent_tags(
    ab: ABTestSummary, common: dict[str, str], *, candidate: str | None = None, interrupted: bool = False
) -> dict[str, str]:
    """The A/B test's parent run tags (``common``: :func:`abtest_common_tags`).
    ``candidate`` is the deploy candidate (the applied winner, else the
    baseline); with ``promptab.accepted`` it is what an ``mlflow:`` reference
    reads (SPEC 12) and what ``search_runs`` filters on."""
    from ..analysis.regression import accepted

    candidate = candidate or ab.baseline
    return {
        **common,
        "promptab.nodeid": ab.nodeid,
        "promptab.file_sha256": ab.file_sha256,
        "promptab.winner": ab.winner or "",
        "promptab.winner_reason": ab.winner_reason,
        "promptab.complete": bool_text(ab.complete),
        "promptab.deploy_candidate": candidate,
        "promptab.accepted": bool_text(accepted(ab, candidate, interrupted)),
        "mlflow.note.content": note(ab),
        "mlflow.loggedArtifacts": TABLE_TAG,
    }


def parent_params(ab: ABTestSummary) -> dict[str, Any]:
    return {
        "workflow": ab.workflow, "ab_test": ab.name, "file": ab.file, "baseline": ab.baseline,
        "objective": ab.objective, "goal": ab.goal, "alpha": ab.alpha,
        "variants": ",".join(v.name for v in ab.variants),
    }  # fmt: skip


def parent_metrics(ab: ABTestSummary) -> dict[str, Any]:
    return {"runs": len(ab.runs), "failed_runs": ab.failed_runs, "variants": len(ab.variants)}


def variant_params(ab: ABTestSummary, v: VariantSummary) -> dict[str, Any]:
    """Identity, model, flattened settings (no secrets), each node's prompt
    and system text (cut at MLflow's param limit, with a marker) and hashes."""
    params: dict[str, Any] = {"variant": v.name, "role": v.role, "ab_test": ab.name, "workflow": ab.workflow}
    params.update({"model": v.model, "provider.type": v.provider.get("type")})
    for node, settings in v.settings.items():
        flatten(f"settings.{node}", settings, params)
    for node, text in v.prompts.items():
        params[f"prompt.{node}"] = param_text(text, f"prompts/{file_name(node)}.txt")
    for node, text in v.system.items():
        params[f"system.{node}"] = param_text(text, f"prompts/{file_name(node)}.system.txt")
    params.update({f"prompt_hash.{node}": short_hash(text) for node, text in v.prompts.items()})
    params.update({f"system_hash.{node}": short_hash(text) for node, text in v.system.items()})
    return params


KEPT_STATS = ("mean", "p50", "p95")
"""The per-metric statistics kept as MLflow metrics; the rest go to ``aggregates.json``."""
TABLE_STATS = ("n", "mean", "std", "min", "max", "p50", "p95", "p99")


def variant_metrics(v: VariantSummary) -> dict[str, Any]:
    """What a person reads and a ``search_runs`` filter needs, rounded to 6
    significant digits: ``<metric>.mean|p50|p95``, ``pass_rate`` and its
    interval, ``error_rate``, and against the baseline ``diff``, its interval,
    ``p_value`` and ``p_adjusted``. n, std, min, max: :func:`aggregates_table`."""
    metrics: dict[str, Any] = {"pass_rate": v.pass_rate}
    if v.pass_rate_ci:
        metrics["pass_rate_ci_low"], metrics["pass_rate_ci_high"] = v.pass_rate_ci
    if v.comparison is not None:
        c = v.comparison
        metrics.update(diff=c.diff, diff_ci_low=c.ci_low, diff_ci_high=c.ci_high, p_value=c.p_value)
        metrics.update(p_adjusted=c.p_adjusted)
    error_rate = getattr(v, "error_rate", None)
    if error_rate is None and v.runs:
        error_rate = v.failed_runs / v.runs
    metrics.update(error_rate=error_rate, runs=v.runs, failed_runs=v.failed_runs)
    for metric, stats in v.aggregates.items():
        for stat in KEPT_STATS:
            if stat in stats:
                metrics[f"{metric}.{stat}"] = stats[stat]
    return {k: round6(value) for k, value in metrics.items()}


def aggregates_table(v: VariantSummary) -> str:
    """Every metric's n, mean, std, min, max and percentiles as a table
    artifact (``aggregates.json``, columns without dots so MLflow renders them)."""
    columns = ["metric", *TABLE_STATS]
    data = [
        [metric, *(round6(stats.get(stat)) if finite(stats.get(stat)) else None for stat in TABLE_STATS)]
        for metric, stats in v.aggregates.items()
    ]
    return json.dumps({"columns": columns, "data": data}, ensure_ascii=False)


def gate_text(g: Any) -> str:
    """A gate tag's value: the action and the outcome, e.g.
    ``BLOCK_DEPLOY violated: xfailed`` or ``WARN met: passed``."""
    return f"{g.action} {'met' if g.met else 'violated'}: {g.outcome}"


def variant_tags(ab: ABTestSummary, v: VariantSummary, common: dict[str, str]) -> dict[str, str]:
    """Role, winner, comparison, one ``gate.<gate>`` tag per gate, violations."""
    tags = {**common, "role": v.role, "variant": v.name, "winner": bool_text(v.winner), "mlflow.loggedArtifacts": TABLES_TAG}
    if v.comparison is not None:
        c = v.comparison
        tags.update({"comparison.metric": c.metric, "comparison.test": c.test})
        tags.update(significant=bool_text(c.significant), better=bool_text(c.better))
    tags.update({"gate." + gate_key(g.gate): gate_text(g) for g in ab.gates if g.variant == v.name})
    if v.violated:
        tags["violated"] = ", ".join(v.violated)
    warned = [g.gate for g in ab.gates if g.variant == v.name and not g.met and g.action == "WARN"]
    if warned:
        tags["warned"] = ", ".join(warned)
    return tags


def variant_files(ab: ABTestSummary, v: VariantSummary) -> dict[str, str]:
    """Artifact path -> text: the full prompts and systems, ``runs.json`` and
    ``aggregates.json``."""
    files = {f"prompts/{file_name(node)}.txt": text for node, text in v.prompts.items()}
    files.update({f"prompts/{file_name(node)}.system.txt": text for node, text in v.system.items()})
    files["runs.json"] = runs_table(ab, v.name)
    files["aggregates.json"] = aggregates_table(v)
    return files


def runs_table(ab: ABTestSummary, variant: str | None) -> str:
    """The runs as pandas' ``orient="split"`` JSON: what ``log_table`` writes
    and what the MLflow UI and ``MlflowClient.load_table`` read."""
    runs = [r for r in ab.runs if variant is None or r.variant == variant]
    # a check's score is in its check_<name> column already
    metric_names = sorted({k for r in runs for k in r.metrics if not k.startswith("check.")})
    check_names = list(dict.fromkeys(c.name for r in runs for c in r.checks))
    output_names = list(dict.fromkeys(k for r in runs for k in r.outputs))
    columns = ["variant", "case", "run", "status", *(column(f"output_{n}") for n in output_names)]
    columns += [*(column(f"check_{n}") for n in check_names), "failed_checks", *map(column, metric_names)]
    columns += ["error", "error_node"]
    columns = unique(columns)
    data = []
    for r in runs:
        checks = {c.name: c for c in r.checks}
        row: list[Any] = [r.variant, r.case, r.run, r.status]
        row += [_text(r.outputs[n]) if n in r.outputs else None for n in output_names]
        row += [_check_text(checks[n]) if n in checks else None for n in check_names]
        row += [", ".join(c.name for c in r.failed_checks()) or None]
        row += [round6(r.metrics[n]) if finite(r.metrics.get(n)) else None for n in metric_names]
        row += [r.error, r.error_node]
        data.append(row)
    return json.dumps({"columns": columns, "data": data}, ensure_ascii=False, default=str)


def column(name: str) -> str:
    """A table column name MLflow's table view renders: no dots (it reads a
    dotted name as a path into the row)."""
    return name.replace(".", "_")


def unique(names: list[str]) -> list[str]:
    """``names`` with repeats suffixed ``_2``, ``_3``..."""
    out: list[str] = []
    for name in names:
        new, n = name, 2
        while new in out:
            new, n = f"{name}_{n}", n + 1
        out.append(new)
    return out


def _check_text(c: Any) -> str:
    score = "" if c.score is None or c.score in (0, 1) else f" ({c.score:.3g})"
    return ("pass" if c.passed else "FAIL") + score


def round6(value: Any) -> Any:
    """A finite number at 6 significant digits (``0.000030349999999999996`` ->
    ``3.035e-05``); anything else unchanged."""
    if isinstance(value, bool) or not finite(value):
        return value
    return float(f"{value:.6g}")


def param_text(text: str, artifact: str) -> str:
    """``text`` as a param value: cut at MLflow's limit, with a marker naming
    the artifact that holds it whole."""
    if len(text) <= MAX_PARAM_VALUE:
        return text
    marker = TRUNCATED.format(n=len(text), path=artifact)
    return text[: MAX_PARAM_VALUE - len(marker)] + marker


def experiment_tags(ab: ABTestSummary) -> dict[str, str]:
    """The experiment's description and the kind that opens its runs view."""
    tags = {"mlflow.experimentKind": "custom_model_development"}
    if ab.description:
        tags["mlflow.note.content"] = cap(ab.description, MAX_TAG_VALUE)
    return tags


def parent_run_name(ab: ABTestSummary, common: dict[str, str], now_ms: int) -> str:
    """``12-01 09:50:12Z reply-tone main@1a2b3c4``: two sessions differ at a
    glance, in the few characters the runs list shows (the time first; the
    run's Created column has the year)."""
    import time

    stamp = time.strftime("%m-%d %H:%M:%SZ", time.gmtime(now_ms / 1000))
    branch = common.get("mlflow.source.git.branch")
    commit = common.get("mlflow.source.git.commit", "")[:7]
    where = "@".join(p for p in (branch, commit) if p)
    if where and common.get("promptab.git_dirty") == "true":
        where += "+dirty"
    return " ".join(p for p in (stamp, ab.name, where) if p)


def note(ab: ABTestSummary) -> str:
    """The parent run's description (markdown) in the MLflow UI."""
    lines = [
        f"**{ab.name}** ({ab.file}): objective `{ab.objective}` ({ab.goal}), alpha {ab.alpha}",
        "",
        f"Winner: **{ab.winner or 'none'}**. {ab.winner_reason}".strip(),
        "",
        "| variant | role | runs | pass rate | diff | p (adj.) | gates violated |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in ab.variants:
        c = v.comparison
        broken = [f"{g.gate} ({g.action})" for g in ab.gates if g.variant == v.name and not g.met]
        if not ab.gates:  # gates not judged yet: the FAIL/BLOCK_DEPLOY violations known at summary time
            broken = list(v.violated)
        lines.append(
            f"| {v.name}{' (winner)' if v.winner else ''} | {v.role} | {v.runs} | {_fmt(v.pass_rate)} | "
            f"{_fmt(c.diff if c else None)} | {_fmt(c.p_adjusted if c else None)} | {', '.join(broken) or '-'} |"
        )
    if not ab.complete:
        lines += ["", "Incomplete: some runs are missing (deselected, -x, or interrupted)."]
    return "\n".join(lines)


# ------------------------------------------------------- limits and batches


def batches(params: dict[str, Any], metrics: dict[str, Any], tags: dict[str, Any]) -> list[Batch]:
    """Sanitized, capped entries in as few ``log_batch`` calls as MLflow's
    per-call limits allow (non-finite metrics and None values are left out)."""
    m = [(k, float(v)) for k, v in keyed(metrics).items() if finite(v)]
    p = [(k, cap(str(v), MAX_PARAM_VALUE)) for k, v in keyed(params).items() if v is not None]
    t = [(k, cap(str(v), MAX_TAG_VALUE)) for k, v in keyed(tags).items() if v is not None]
    out: list[Batch] = []
    while m or p or t:
        size = 0
        params_now: list[tuple[str, str]] = []
        tags_now: list[tuple[str, str]] = []
        for source, batch, limit in ((p, params_now, MAX_PARAMS), (t, tags_now, MAX_TAGS)):
            while source and len(batch) < limit and size + len(source[0][1]) + MAX_KEY < MAX_BATCH_BYTES:
                size += len(source[0][1]) + MAX_KEY
                batch.append(source.pop(0))
        room = min(MAX_METRICS, MAX_ENTITIES - len(params_now) - len(tags_now))
        metrics_now, m = m[:room], m[room:]
        out.append((metrics_now, params_now, tags_now))
    return out


def flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    """Nested settings as ``prefix.key.subkey`` params, minus anything secret."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not _SECRET_NAME.search(str(key)):
                flatten(f"{prefix}.{key}", item, out)
        return
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if not _SECRET_VALUE.match(text):
        out[prefix] = text


def key(name: str) -> str:
    """A valid MLflow key: letters, digits, ``_ - . / space``, no empty or
    relative path segments, at most 250 characters."""
    cleaned = re.sub(r"[^A-Za-z0-9_.\- /]", "_", name)
    parts = [p for p in cleaned.split("/") if p.strip() not in ("", ".", "..")]
    return "/".join(parts)[:MAX_KEY] or "_"


def keyed(values: dict[str, Any]) -> dict[str, Any]:
    """Sanitized keys; two names that sanitize alike get ``_2``, ``_3``..."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        new = base = key(name)
        n = 2
        while new in out:
            new, n = f"{base[: MAX_KEY - 6]}_{n}", n + 1
        out[new] = value
    return out


def gate_key(label: str) -> str:
    """``pass_rate>=0.8`` -> ``pass_rate_ge_0.8`` (``<``, ``>``, ``=`` and ``,``
    are not allowed in MLflow keys)."""
    for op, word in ((">=", "_ge_"), ("<=", "_le_"), (">", "_gt_"), ("<", "_lt_"), (",", "_and_")):
        label = label.replace(op, word)
    return label


def file_name(node: str) -> str:
    """A node id as a safe artifact file name."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", node).lstrip(".") or "node"


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def finite(value: Any) -> bool:
    """A number MLflow stores and the UI plots (booleans count as 0/1)."""
    return isinstance(value, (int, float)) and math.isfinite(value)


def cap(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending in ``...`` when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def bool_text(value: bool) -> str:
    return "true" if value else "false"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
