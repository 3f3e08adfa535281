"""A reference session, named (SPEC 12): one resolver for
``--promptab-compare-to`` / ini ``promptab_compare_to``, ``promptab compare``
and ``promptab apply``, without pytest.

A reference is a history file or a results file (a path), ``mlflow:<run id>``
or ``mlflow:branch=<name>`` (read through
:mod:`pytest_promptab.tracking.reference`; mlflow is imported only for
these). :meth:`Reference.check` reads it once, so that a bad reference is an
error before anything runs; :meth:`Reference.for_abtest` gives the session
an A/B test is held against, :meth:`Reference.session` the whole session.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .tracking.reference import MlflowReferenceError

if TYPE_CHECKING:
    from .report.history import SavedSession
    from .tracking.reference import MlflowReader, MlflowRef, MlflowSession

_CHECKED: dict[tuple[str, str], Reference] = {}
"""References checked when the options were read, handed on to the session
(:func:`checked`): an MLflow reference is read once per session."""


class Reference:
    def __init__(self, text: str, *, what: str = "reference", tracking_uri: str | None = None) -> None:
        """``text``: a path (absolute, or relative to the current folder) or an
        ``mlflow:`` reference, read from the store at ``tracking_uri``."""
        from .tracking.reference import is_mlflow_ref

        self.text = text
        self.what = what
        self.tracking_uri = tracking_uri
        self.mlflow = is_mlflow_ref(text)
        self._saved: SavedSession | None = None
        self._by_run: dict[str, SavedSession] = {}
        self._reader: MlflowReader | None = None
        self._ref: MlflowRef | None = None

    # -- MLflow ---------------------------------------------------------
    @contextlib.contextmanager
    def _named(self) -> Iterator[None]:
        """An MLflow failure, as one line naming the reference."""
        try:
            yield
        except MlflowReferenceError as exc:
            raise MlflowReferenceError(f"{self.what} {self.text}: {exc.message}") from None

    def _mlflow(self) -> tuple[MlflowReader, MlflowRef]:
        from .tracking.reference import MlflowReader, parse_ref

        if self._ref is None:
            self._ref = parse_ref(self.text)
        if self._reader is None:
            if not self.tracking_uri:
                raise MlflowReferenceError("no MLflow tracking URI")
            self._reader = MlflowReader(self.tracking_uri)
        return self._reader, self._ref

    def _from_mlflow(self, found: MlflowSession) -> SavedSession:
        from .report.history import saved_from_data

        if found.run_id not in self._by_run:
            self._by_run[found.run_id] = saved_from_data(
                found.data, Path(found.label), what=f"{self.what} {found.label}", label=found.label,
                candidates=found.candidates,
            )
        return self._by_run[found.run_id]

    # -- what callers use -----------------------------------------------
    @property
    def by_branch(self) -> bool:
        """``mlflow:branch=``: each A/B test may have its own reference session."""
        with self._named():
            return self.mlflow and self._mlflow()[1].branch is not None

    def check(self) -> None:
        """Read the reference now; raises :class:`PromptabError` (one line)."""
        with self._named():
            self._check()

    def session(self) -> SavedSession:
        """The whole reference session (for ``mlflow:branch=``: the latest
        accepted one from that branch, of any A/B test)."""
        with self._named():
            return self._session()

    def for_abtest(self, nodeid: str) -> tuple[SavedSession | None, str]:
        """The session ``nodeid`` is held against and its label, or None and
        why there is nothing to compare (raises :class:`PromptabError` when
        the reference cannot be read)."""
        with self._named():
            return self._for_abtest(nodeid)

    def _check(self) -> None:
        if not self.mlflow:
            self._session()
            return
        reader, ref = self._mlflow()
        if ref.run_id is not None:
            self._session()
        else:
            assert ref.branch is not None
            reader.check_branch(ref.branch)

    def _session(self) -> SavedSession:
        if self._saved is not None:
            return self._saved
        if not self.mlflow:
            from .report.history import load_saved

            self._saved = load_saved(self.text, what=self.what)
            return self._saved
        reader, ref = self._mlflow()
        if ref.run_id is not None:
            self._saved = self._from_mlflow(reader.session_of_run(ref.run_id))
            return self._saved
        assert ref.branch is not None
        found = reader.branch_session(ref.branch)
        if found is None:
            reader.check_branch(ref.branch)  # raises, saying why
            raise MlflowReferenceError(f"no accepted MLflow run from branch {ref.branch!r}")
        self._saved = self._from_mlflow(found)
        return self._saved

    def _for_abtest(self, nodeid: str) -> tuple[SavedSession | None, str]:
        if self.mlflow:
            reader, ref = self._mlflow()
            if ref.branch is not None:
                found = reader.branch_session(ref.branch, nodeid)
                if found is None:
                    return None, (f"nothing to compare: no accepted MLflow run of {nodeid} "
                                  f"from branch {ref.branch!r}")
                saved = self._from_mlflow(found)
                return saved, saved.shown
        saved = self._session()
        if saved.abtest(nodeid) is None:
            return None, f"nothing to compare: {saved.shown} has no A/B test {nodeid}"
        return saved, saved.shown


def checked(text: str, *, what: str, tracking_uri: str | None) -> Reference:
    """Check ``text`` now and keep it for :func:`handed_on`."""
    ref = Reference(text, what=what, tracking_uri=tracking_uri)
    ref.check()
    _CHECKED[(text, tracking_uri or "")] = ref
    return ref


def handed_on(text: str, *, what: str, tracking_uri: str | None) -> Reference:
    """The reference :func:`checked` read for this session, else a new one."""
    return _CHECKED.pop((text, tracking_uri or ""), None) or Reference(text, what=what, tracking_uri=tracking_uri)


def cli_tracking_uri(option: str | None, rootdir: Path) -> str:
    """The console script's tracking URI: ``--mlflow-uri``, else
    ``MLFLOW_TRACKING_URI``, else ``sqlite:///<rootdir>/mlflow.db``, as a session's."""
    import os

    from .tracking.log import resolve_tracking_uri

    return resolve_tracking_uri(option, None, os.environ, rootdir)
