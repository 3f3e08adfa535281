"""The promptab session: state carried between pytest hooks, without pytest.

One :class:`PromptabSession` is registered per pytest process in
``pytest_configure``. Worker side it loads files and runs items; controller
side it receives run records from reports (appending each to the journal of
finished runs), and at session end builds the summary, writes the results
file, applies winners and logs to MLflow.
"""

from __future__ import annotations

import functools
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .analysis.summary import ABTestSummary, GateJudgement, SessionSummary
from .errors import PromptabError
from .report.journal import RunJournal, describe_os_error, journal_path
from .run.prefetch import Prefetcher
from .run.records import RunRecord, received_record
from .session_data import GateVerdict, PromptabOptions, RunJob
from .workflow.loader import LoadedWorkflow, load_workflow

if TYPE_CHECKING:
    from .apply.best import ApplyDecision
    from .checks.registry import CheckRegistry
    from .providers.registry import ProviderRegistry
    from .run.engine import Engine, ProviderWrapper
    from .run.runner import Runner
    from .tracking.process import MlflowProcess
    from .tracking.prompt_cache import RegistryPrompts
    from .workflow.loader import RegistryAnswer
    from .workflow.schema import RegistryPrompt

@dataclass
class PromptabSession:
    options: PromptabOptions
    register_providers: Callable[[ProviderRegistry], None] = lambda registry: None
    register_checks: Callable[[CheckRegistry], None] = lambda registry: None
    workflows: dict[str, LoadedWorkflow] = field(default_factory=dict)
    load_errors: dict[str, PromptabError] = field(default_factory=dict)
    records: dict[str, list[RunRecord]] = field(default_factory=lambda: defaultdict(list))
    summary: SessionSummary | None = None
    applied: dict[str, str] = field(default_factory=dict)
    """A/B test node id -> the variant apply-best wrote into its file."""
    collected_sha: dict[str, str] = field(default_factory=dict)
    """File -> sha256 when collected elsewhere (xdist workers)."""
    stopped: bool = False
    """The test loop ended early (-x, --maxfail, Ctrl-C): no gates, no apply."""
    judged: dict[str, ABTestSummary] = field(default_factory=dict)
    """File -> its A/B test's summary, made when its first gate item ran."""
    judgements: dict[str, GateJudgement] = field(default_factory=dict)
    """Gate item node id -> its judgement (every gate of a judged A/B test)."""
    reported_gates: set[str] = field(default_factory=set)
    """Node ids of the gate items that reported a judgement."""
    apply_candidates: dict[str, str] = field(default_factory=dict)
    """A/B test node id -> the winner apply-best will write (decided when its
    gates were judged, written at session end unless it was interrupted)."""
    worker_verdicts: dict[str, GateVerdict] = field(default_factory=dict)
    """xdist controller: gate node id -> the verdict given to its worker's report."""
    _engine: Engine | None = None
    _runner: Runner | None = None
    _shipped: dict[int, tuple[str, RunRecord]] = field(default_factory=dict)
    """``id(text)`` -> (text, record) of runs shipped here, until taken in."""
    _mlflow_process: MlflowProcess | None = None
    _registry: RegistryPrompts | None = None
    """Prompt registry texts, resolved once per session (:mod:`.tracking.prompt_cache`)."""
    history_path: str | None = None
    """Where this session was saved (.promptab/history/...), once it was."""
    started_at: float = field(default_factory=time.time)
    """When the session started (seconds since the epoch)."""
    journal: RunJournal | None = None
    """The journal of finished runs (controller), from the test loop's start."""
    results_error: str | None = None
    """Why the results file could not be written, when its last write failed."""
    mlflow_interrupted: bool = False
    """Ctrl-C stopped the wait for MLflow at session end."""

    def __post_init__(self) -> None:
        from .workflow.callables import clear_cache

        clear_cache()

    # -- worker side: loading and running ---------------------------------
    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from .checks.registry import CheckRegistry
            from .providers.registry import ProviderRegistry
            from .run.engine import Engine

            providers = ProviderRegistry()
            checks = CheckRegistry()
            self.register_providers(providers)
            self.register_checks(checks)
            self._engine = Engine(providers, checks, wrap_provider=self._cache_wrapper())
        return self._engine

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            from .run.runner import Runner

            self._runner = Runner(self.options.concurrency)
        return self._runner

    def _cache_wrapper(self) -> ProviderWrapper | None:
        mode = self.options.cache
        if mode == "off":
            return None
        from .providers.cache import CachingProvider, ResponseCache

        cache = ResponseCache(self.options.rootdir / ".promptab" / "cache")
        return lambda factory, config: CachingProvider(factory, cache, mode, config.type, config=config)

    def load(self, path: Path, display: str) -> LoadedWorkflow:
        """Load and validate a workflow file once (raises PromptabError)."""
        if display in self.workflows:
            return self.workflows[display]
        from .run.validate import validate_workflow

        loaded = load_workflow(path, display=display, provider=self.provider_override(), registry=self.resolve_registry)
        engine = self.engine
        validate_workflow(loaded, display, providers=engine.providers, checks=engine.checks, renderer=engine.renderer)
        self.workflows[display] = loaded
        return loaded

    def resolve_registry(self, refs: list[RegistryPrompt]) -> dict[str, RegistryAnswer]:
        """The texts of ``{registry: ...}`` prompts (only files that have some
        call this): through the logging process, cached under .promptab/registry/."""
        if self._registry is None:
            from .tracking.log import redact_uri, resolve_tracking_uri
            from .tracking.prompt_cache import RegistryPrompts

            opts = self.options
            uri = None if opts.no_mlflow else resolve_tracking_uri(opts.mlflow_uri, opts.mlflow_ini, os.environ, opts.rootdir)
            self._registry = RegistryPrompts(opts.rootdir, tracking_uri=uri, run_uid=opts.run_uid,
                                             process=lambda: self._mlflow_process, shown_uri=uri and redact_uri(uri))
        return self._registry(refs)

    def provider_override(self) -> dict[str, Any] | None:
        """``--promptab-provider`` parsed once; a relative ``callable`` path is
        relative to the rootdir."""
        if self.options.provider is None:
            return None
        cached = getattr(self, "_provider_override", None)
        if cached is None:
            from .workflow.loader import parse_provider_spec

            cached = parse_provider_spec(self.options.provider)
            target = cached.get("callable")
            if isinstance(target, str) and ".py:" in target and not Path(target.split(":", 1)[0]).is_absolute():
                cached["callable"] = str(self.options.rootdir / target)
            self._provider_override: dict[str, Any] | None = cached
        return cached

    def runs_per_case(self, loaded: LoadedWorkflow) -> int:
        return self.options.runs or loaded.config.ab_test.runs

    def jobs(self, loaded: LoadedWorkflow, display: str) -> list[RunJob]:
        """Every run of the file: variant x case x run, in report order."""
        return [
            RunJob(display, variant, case_index, run)
            for variant in loaded.config.ab_test.variant_names
            for case_index in range(len(loaded.cases))
            for run in range(1, self.runs_per_case(loaded) + 1)
        ]

    def execute(self, job: RunJob) -> RunRecord:
        loaded = self.workflows[job.display]
        return self.engine.run(loaded, job.display, job.variant, loaded.cases[job.case_index], job.run)

    def result(self, job: RunJob) -> RunRecord:
        """The job's record: prefetched by the runner, or run now."""
        return self._prefetcher.result(job)

    def prefetch(self, jobs: list[RunJob]) -> None:
        """Send the runs of ``jobs`` (the selected items' runs, in report
        order) to the runner ahead of their items, a window at a time
        (:mod:`.run.prefetch`)."""
        self._prefetcher.start(jobs)

    @functools.cached_property
    def _prefetcher(self) -> Prefetcher[RunJob]:
        return Prefetcher(lambda: self.runner, self.execute, self.options.concurrency)

    def close(self) -> None:
        """At ``pytest_unconfigure``: close the journal, the runner and the
        providers, and drop the runs and the summary. Freed now, by reference
        counting, they are not walked by every collection until the
        interpreter exits (pytest's cleanup collects five times)."""
        self.close_journal()
        if self._registry is not None:
            self._registry.close()
        if self._runner is not None:
            self._runner.shutdown()
        if self._engine is not None:
            self._engine.providers.close_all()
        self.records.clear()
        self._shipped.clear()
        self.judged.clear()
        self.judgements.clear()
        self.summary = None
        self.__dict__.pop("_prefetcher", None)

    # -- controller side: results ------------------------------------------
    def start_journal(self) -> str | None:
        """Open the journal of finished runs (truncated, with its header
        line) beside the results file; returns why it cannot be written."""
        if self.journal is None:
            self.journal = RunJournal(journal_path(self.options.results_path))
            self.journal.start(self.started_at)
        return self.journal.error

    def close_journal(self) -> None:
        if self.journal is not None:
            self.journal.close()

    def ship(self, record: RunRecord, *, here: bool) -> str:
        """The ``user_properties`` value of a run: its record's compact JSON
        text. ``here``: the controller runs the item itself (no xdist), so
        the record is kept with its text and :meth:`add_record` takes it
        back as it is, without parsing the text."""
        text = record.to_json()
        if here:
            self._shipped[id(text)] = (text, record)
        return text

    def add_record(self, value: Any) -> None:
        """Take in a run from its report's ``user_properties`` value: the
        record itself when it ran here, else read from its JSON text."""
        shipped = self._shipped.pop(id(value), None)
        record = shipped[1] if shipped is not None and shipped[0] is value else received_record(value)
        self.records[record.file].append(record)
        if self.journal is not None:
            self.journal.append(record.to_json())  # flushed now: survives a kill

    def summarize(self, *, interrupted: bool) -> SessionSummary:
        """Statistics and winners of every A/B test that ran (no gates yet)."""
        from .analysis import (
            summarize as analysis,  # numpy and scipy: only when there is something to summarize
        )

        summary = SessionSummary(interrupted=interrupted, results_path=str(self.options.results_path))
        for display in sorted(self.records):
            ab = self.judged.get(display)
            if ab is not None:
                # only the judgements that were reported as gate items count
                ab.gates = [j for j in ab.gates if j.nodeid in self.reported_gates]
            else:
                ab = self._summarize_one(display, analysis)
                if ab is not None and not interrupted:
                    self.compare(ab, ab.baseline, judge=False)
            if ab is not None:
                summary.abtests.append(ab)
        self.summary = summary
        return summary

    def _summarize_one(self, display: str, analysis: Any) -> ABTestSummary | None:
        records = self.records[display]
        loaded = self.workflows.get(display)
        if loaded is None:  # the xdist controller never collects: it reads the file now
            from .tracking.prompt_cache import RegistryPrompts

            try:  # registry texts: the cache the workers filled
                loaded = load_workflow(self.options.rootdir / display, display=display, provider=self.provider_override(),
                                       registry=RegistryPrompts(self.options.rootdir, tracking_uri=None))
            except PromptabError:
                return None  # the file changed or vanished since its runs: nothing to judge it by
            self.workflows[display] = loaded
            # the file as the workers collected it: apply-best must see a change since then
            self.collected_sha[display] = next((r.file_sha256 for r in records if r.file_sha256), loaded.sha256)
        return analysis.summarize(loaded, display, records, expected=analysis.expected_runs(loaded, self.options.runs))

    # -- gates: judged when their items run --------------------------------
    def gate_verdict(self, nodeid: str, pending: dict[str, Any]) -> GateVerdict:
        """The verdict of the gate item ``nodeid``. ``pending`` says which A/B
        test (``file``), and how many of its runs were selected of the total;
        every selected run has reported by now (gate items run after them)."""
        selected, total = int(pending["selected"]), int(pending["total"])
        if selected < total:
            return GateVerdict("skipped", f"partial selection: {selected} of {total} runs")
        ab = self.judge_abtest(str(pending["file"]))
        judgement = self.judgements.get(nodeid)
        if judgement is None and ab is not None and ab.compare_note and "::regression[" in nodeid:
            return GateVerdict("skipped", ab.compare_note)
        if ab is None or judgement is None:
            return GateVerdict("skipped", f"no completed run of {pending.get('variant')!r} to judge")
        self.reported_gates.add(nodeid)
        return GateVerdict(judgement.outcome, judgement.message, judgement)

    def judge_abtest(self, display: str) -> ABTestSummary | None:
        """Summarize the file's A/B test, decide which winner apply-best will
        write (the deploy candidate), then judge its gates; once, at its first
        gate item. The file is written at session end (:meth:`apply_best`),
        never after an interrupted session."""
        if display in self.judged:
            return self.judged[display]
        if not self.records.get(display):
            return None
        from .analysis import summarize as analysis

        ab = self._summarize_one(display, analysis)
        if ab is None:
            return None
        self.keep_regressed_out(ab)
        candidate = ab.baseline
        if self.options.apply_best:
            decision = self._apply_one(ab, interrupted=False, write=False)
            if decision.applied and decision.variant:
                candidate = self.apply_candidates[ab.nodeid] = decision.variant
        analysis.judge_gates(ab, self.workflows[display], candidate)
        self.compare(ab, candidate, judge=True)
        self.judgements.update((j.nodeid, j) for j in ab.gates)
        self.judged[display] = ab
        return ab

    # -- history and regression (SPEC 12): see .history ------------------
    def compare(self, ab: ABTestSummary, candidate: str, *, judge: bool) -> None:
        from .history import compare_abtest

        compare_abtest(self, ab, candidate, judge=judge)

    def keep_regressed_out(self, ab: ABTestSummary) -> None:
        """A challenger with a FAIL or BLOCK_DEPLOY regression loses: it is no winner."""
        from .history import keep_regressed_out

        keep_regressed_out(self, ab)

    def save_history(self) -> str | None:
        """Save the session under .promptab/history/ (unless turned off or
        interrupted); returns a warning text when it could not be written."""
        from .history import save_session

        return save_session(self)

    def write_results(self, summary: SessionSummary | None = None) -> str | None:
        """Write the results file (of ``summary``, default :attr:`summary`);
        returns why it could not be written (also kept in
        :attr:`results_error`), else None. Never raises OSError."""
        from .report.results_file import write_results

        summary = summary or self.summary
        assert summary is not None
        try:
            write_results(self.options.results_path, summary)
        except OSError as exc:
            self.results_error = describe_os_error(exc)
        else:
            self.results_error = None
        return self.results_error

    def apply_best(self, interrupted: bool) -> None:
        """Write each A/B test's winner into its file (when the rules allow)."""
        assert self.summary is not None
        for ab in self.summary.abtests:
            decision = self._apply_one(ab, interrupted)
            candidate = self.apply_candidates.get(ab.nodeid)
            if candidate is not None and not (decision.applied and decision.variant == candidate):
                ab.apply_decision = f"{decision.message}; its gates were judged with {candidate!r} as the deploy candidate"

    def _apply_one(self, ab: ABTestSummary, interrupted: bool, write: bool = True) -> ApplyDecision:
        from .apply.best import apply_winner

        loaded = self.workflows[ab.file]
        decision = apply_winner(
            loaded.path,
            loaded.config,
            ab,
            collected_sha256=self.collected_sha.get(ab.file, loaded.sha256),
            interrupted=interrupted,
            write=write,
            registry=not self.options.no_mlflow,
        )
        if write:
            ab.apply_decision = decision.message
            if decision.applied and decision.variant:
                self.applied[ab.nodeid] = decision.variant
        return decision

    def start_mlflow_process(self) -> None:
        """Start the MLflow logging process, which imports mlflow and opens
        the tracking store while the tests run (see :mod:`.mlflow_process`)."""
        from .tracking.log import resolve_tracking_uri
        from .tracking.process import MlflowProcess

        if self._mlflow_process is None:
            uri = resolve_tracking_uri(self.options.mlflow_uri, self.options.mlflow_ini, os.environ, self.options.rootdir)
            self._mlflow_process = MlflowProcess(uri, traces=self.options.mlflow_traces)

    def take_mlflow_process(self) -> MlflowProcess | None:
        """The logging process started for this session, handed over to
        session-end logging (which stops it), or None."""
        process, self._mlflow_process = self._mlflow_process, None
        return process

    def stop_mlflow_process(self) -> None:
        """Stop the logging process if it still runs (any exit path)."""
        if self._mlflow_process is not None:
            self._mlflow_process.close()
            self._mlflow_process = None

    def log_mlflow(self) -> str | None:
        """Log the summary, then register applied prompts; returns a warning
        text when MLflow failed (see :mod:`.session_mlflow`)."""
        from .session_mlflow import log_session

        return log_session(self)
