"""Prompts a node takes from MLflow's prompt registry (``prompt: {registry:
"name@alias"}`` or ``{registry: "name/3"}``): resolved once per session, and
cached under ``<rootdir>/.promptab/registry/``.

One JSON file per reference: ``<name>/@<alias>.json`` or
``<name>/<version>.json`` (``reference``, ``name``, ``version``, ``text``),
written atomically and only when its content changes, so a committed cache
diffs only when the registry moved. The policy:

- MLflow on (the default): every reference is read from the registry once
  per session and its cache file refreshed: an alias moves, and a numbered
  version, which never changes in one registry, may be another text in
  another store (the tracking URI changed) or gone (deleted). When the
  registry cannot be reached (a server down, no sqlite database), the cached
  text is used (with a warning for an alias, which may have moved since); a
  reference the registry does not
  have is an error even when a stale copy is cached (the file asks for
  something that is not there).
- ``--promptab-no-mlflow``: only the cache is read; nothing is refreshed.
- pytest-xdist: each worker collects the file; the first to get here asks
  the registry (the workers of one run share its ``testrunuid``, kept in
  ``.promptab/registry.lock``, taken with ``flock`` on POSIX), the others
  read what it wrote. The lock sits outside the folder, so a committed
  ``.promptab/registry/`` holds prompt texts only.

Asking goes through the MLflow logging process (``resolve`` in
:mod:`.child`): the session's own when it runs, else one started here (a
worker, ``--collect-only``) and stopped with the session. No mlflow import here.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..fileio import atomic_write_text
from ..workflow.loader import LoadedWorkflow, RegistryAnswer
from ..workflow.schema import RegistryPrompt, ResolvedPrompt

if TYPE_CHECKING:
    from ..analysis.summary import ABTestSummary
    from .process import MlflowProcess

__all__ = ["RegistryPrompts", "cache_dir", "cache_path", "read_entry", "registry_links", "registry_nodes", "store_moved",
           "write_entry"]


def cache_dir(rootdir: Path) -> Path:
    return Path(rootdir) / ".promptab" / "registry"


def cache_path(folder: Path, reference: str) -> Path:
    """The cache file of ``name@alias`` (``name/@alias.json``) or ``name/3``
    (``name/3.json``). Names and aliases are validated by the schema: letters,
    digits, ``_ - .``, never starting with a dot, so never a path of their own."""
    name, sep, alias = reference.partition("@")
    if sep:
        return folder / name / f"@{alias}.json"
    name, _, version = reference.rpartition("/")
    return folder / name / f"{version}.json"


def read_entry(folder: Path, reference: str) -> dict[str, Any] | None:
    """The cached ``{"reference", "name", "version", "text"}``, or None when
    absent or unreadable (a broken file counts as absent)."""
    try:
        data = json.loads(cache_path(folder, reference).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("text"), str) or not isinstance(data.get("version"), int):
        return None
    return data


def write_entry(folder: Path, reference: str, *, name: str, version: int, text: str) -> None:
    """Cache ``text`` (version ``version``) for ``reference``, atomically;
    untouched when it already holds exactly that. Raises OSError."""
    path = cache_path(folder, reference)
    content = json.dumps({"reference": reference, "name": name, "version": version, "text": text},
                         indent=2, ensure_ascii=False) + "\n"
    try:
        if path.read_text(encoding="utf-8") == content:
            return
    except (OSError, ValueError):
        pass
    atomic_write_text(path, content)


class RegistryPrompts:
    """The session's registry resolver (a ``RegistryResolver`` for
    :func:`pytest_promptab.workflow.loader.load_workflow`): answers are kept
    for the session, so a reference is asked for once."""

    def __init__(
        self,
        rootdir: Path,
        *,
        tracking_uri: str | None,
        run_uid: str | None = None,
        process: Callable[[], MlflowProcess | None] = lambda: None,
        shown_uri: str | None = None,
    ) -> None:
        """``tracking_uri`` None: ``--promptab-no-mlflow``, the cache only.
        ``run_uid``: the xdist run's id (shared by its workers), else one of
        this session's. ``process``: the session's logging process, when it
        runs. ``shown_uri``: the URI as messages may show it (no credentials)."""
        self.rootdir = Path(rootdir)
        self.folder = cache_dir(rootdir)
        self.tracking_uri = tracking_uri
        self.run_uid = run_uid or uuid.uuid4().hex
        self._session_process = process
        self._own: MlflowProcess | None = None
        self._answers: dict[str, RegistryAnswer] = {}
        self._unreachable: str | None = None
        """Why the registry could not be read, once it could not: not asked again this session."""
        self.shown_uri = shown_uri or "MLflow"

    def __call__(self, refs: list[RegistryPrompt]) -> dict[str, RegistryAnswer]:
        todo = [ref for ref in refs if ref.registry not in self._answers]
        if todo:
            self._resolve(todo)
        return {ref.registry: self._answers[ref.registry] for ref in refs}

    def close(self) -> None:
        """Stop the logging process started for resolving, if any."""
        if self._own is not None:
            self._own.close()
            self._own = None

    # ---------------------------------------------------------------- internals
    def _resolve(self, refs: list[RegistryPrompt]) -> None:
        if self.tracking_uri is None:
            for ref in refs:
                self._answers[ref.registry] = self._from_cache(ref, None)
            return
        with _locked(self.folder) as lock:
            stamp = _read_stamp(lock)
            fresh = set(stamp.get("refs") or []) if stamp.get("run") == self.run_uid else set()
            ask: list[RegistryPrompt] = []
            for ref in refs:
                entry = read_entry(self.folder, ref.registry)
                if entry is not None and ref.registry in fresh:  # this run (an xdist peer) read it already
                    self._answers[ref.registry] = RegistryAnswer(text=entry["text"], version=entry["version"])
                else:
                    ask.append(ref)
            if not ask:
                return
            reply = self._ask([ref.registry for ref in ask]) if self._unreachable is None else {}
            if not reply.get("ok"):
                why = self._unreachable = self._unreachable or str(reply.get("message") or "no answer")
                for ref in ask:
                    self._answers[ref.registry] = self._from_cache(ref, why)
                return
            prompts = reply.get("prompts") or {}
            for ref in ask:
                got = prompts.get(ref.registry) or {"missing": "no answer"}
                if isinstance(got.get("text"), str):
                    self._answers[ref.registry] = RegistryAnswer(text=got["text"], version=int(got["version"]))
                    with contextlib.suppress(OSError):  # an unwritable cache only costs the offline copy
                        write_entry(self.folder, ref.registry, name=str(got.get("name") or ref.name),
                                    version=int(got["version"]), text=got["text"])
                        fresh.add(ref.registry)
                else:
                    self._answers[ref.registry] = RegistryAnswer(
                        problem=f"{got.get('missing') or 'not found'} in the registry at {self.shown_uri}",
                        hint=_register_hint(ref),
                    )
            _write_stamp(lock, {"run": self.run_uid, "refs": sorted(fresh)})

    def _ask(self, references: list[str]) -> dict[str, Any]:
        process = self._session_process()
        if process is None or not process.running:
            if self._own is None:
                from .process import MlflowProcess

                assert self.tracking_uri is not None
                self._own = MlflowProcess(self.tracking_uri)
            process = self._own
        return process.resolve(references)

    def _from_cache(self, ref: RegistryPrompt, unreachable: str | None) -> RegistryAnswer:
        entry = read_entry(self.folder, ref.registry)
        shown = self._shown(ref)
        if entry is not None:
            note = None
            if unreachable is not None and ref.version is None:
                note = (f"registry prompt {ref.registry!r}: {unreachable}; using the cached text of version "
                        f"{entry['version']} ({shown}), which may be behind the alias")
            return RegistryAnswer(text=entry["text"], version=entry["version"], source="cache", note=note)
        if unreachable is None:
            return RegistryAnswer(
                problem=f"not cached ({shown} does not exist), and --promptab-no-mlflow reads only the cache",
                hint="run once without --promptab-no-mlflow, with MLflow reachable, to cache it "
                     "(commit .promptab/registry/ for offline CI)",
            )
        return RegistryAnswer(
            problem=f"MLflow's prompt registry cannot be read ({unreachable}), and the prompt is not cached ({shown})",
            hint="start the tracking server or fix the tracking URI (--promptab-mlflow-uri, MLFLOW_TRACKING_URI), "
                 "then run once to cache the text",
        )

    def _shown(self, ref: RegistryPrompt) -> str:
        path = cache_path(self.folder, ref.registry)
        try:
            return path.relative_to(self.rootdir).as_posix()
        except ValueError:
            return str(path)


def _register_hint(ref: RegistryPrompt) -> str:
    if ref.alias is not None:
        return (f"register it (MlflowClient().register_prompt(name={ref.name!r}, template=...)) and point the alias "
                f"at a version (set_prompt_alias({ref.name!r}, {ref.alias!r}, <version>)), or fix the reference")
    return f"name a version that exists (MlflowClient().search_prompt_versions({ref.name!r})), or fix the reference"


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[IO[str] | None]:
    """``<folder>.lock`` (``.promptab/registry.lock``), open and held
    (``flock``; a platform without it, or a folder that cannot be written,
    goes unlocked: a duplicate read is harmless)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder.with_name(folder.name + ".lock"), "a+", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError:
        yield None
        return
    try:
        try:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        except (ImportError, OSError):
            pass
        yield handle
    finally:
        handle.close()  # releases the lock


def _read_stamp(lock: IO[str] | None) -> dict[str, Any]:
    if lock is None:
        return {}
    try:
        lock.seek(0)
        data = json.loads(lock.read() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_stamp(lock: IO[str] | None, stamp: dict[str, Any]) -> None:
    if lock is None:
        return
    with contextlib.suppress(OSError):
        lock.seek(0)
        lock.truncate()
        lock.write(json.dumps(stamp) + "\n")
        lock.flush()


def registry_nodes(workflows: Mapping[str, LoadedWorkflow], abtests: list[ABTestSummary]) -> dict[str, Any]:
    """A/B test node id -> node -> ``{"prompt": "name@alias", "system": ...}``:
    the texts of each A/B test's file that come from the registry (what
    apply-best registers under their own names, see :func:`.registry.registrations`)."""
    out: dict[str, Any] = {}
    for ab in abtests:
        loaded = workflows.get(ab.file)
        if loaded is None:
            continue
        refs = {node.id: {key: ref.registry for key, ref in node.registry_refs.items()}
                for node in loaded.config.nodes if node.registry_refs}
        if refs:
            out[ab.nodeid] = refs
    return out


def registry_links(workflows: Mapping[str, LoadedWorkflow], abtests: list[ABTestSummary]) -> dict[str, Any]:
    """A/B test node id -> variant -> ``[[name, version], ...]``: the registry
    versions each variant ran (a text it did not override), which its MLflow
    run links (``mlflow.linkedPrompts``)."""
    out: dict[str, Any] = {}
    for ab in abtests:
        loaded = workflows.get(ab.file)
        if loaded is None:
            continue
        for v in ab.variants:
            pairs = []
            for node in loaded.config.nodes:
                for key, ref in node.registry_refs.items():
                    ran = (v.prompts if key == "prompt" else v.system).get(node.id)
                    if isinstance(ref, ResolvedPrompt) and ref.resolved_version is not None and ran == ref.text:
                        pairs.append([ref.name, str(ref.resolved_version)])
            if pairs:
                out.setdefault(ab.nodeid, {})[v.name] = pairs
    return out


def store_moved(rootdir: Path, moved: Mapping[str, Any]) -> None:
    """Cache what the aliases apply-best moved now hold (``name@alias`` ->
    ``{"name", "version", "text"}``), so an offline session runs the winner."""
    for reference, entry in moved.items():
        with contextlib.suppress(OSError, KeyError, TypeError, ValueError):
            write_entry(cache_dir(rootdir), reference, name=str(entry["name"]), version=int(entry["version"]),
                        text=str(entry["text"]))
