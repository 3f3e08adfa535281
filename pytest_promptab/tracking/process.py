"""The controller's side of the MLflow logging process.

Importing mlflow and opening its tracking store take seconds; a child process
(:mod:`pytest_promptab.tracking.child`) does both while the tests run, then
waits. At session end :meth:`MlflowProcess.log` sends it the summary and gets
back what was logged. A thread in the pytest process would race with the
user's own imports and warnings; a process cannot.

Nothing here raises into the session and nothing waits forever: a process
that would not start, died, or did not answer within :data:`TIMEOUT_S` gives
an answer with ``ok: False`` and a message saying so (with the last line the
process wrote to its stderr). Ctrl-C while :meth:`MlflowProcess.log` waits
stops the process, then goes on to the caller as KeyboardInterrupt (the
session ends without logging, with its table and pytest's exit code 2). The process is stopped by :meth:`close` (the
plugin calls it at unconfigure, on every exit path), at interpreter exit, or
by itself when its stdin closes (the controller died). Its stderr goes to an
anonymous temporary file, never to the terminal. The tracking URI, which may
hold credentials, goes through the pipe, not argv or the environment.
"""

from __future__ import annotations

import atexit
import json
import subprocess
import sys
import tempfile
import weakref
from pathlib import Path
from typing import IO, Any

import pytest_promptab

__all__ = ["TIMEOUT_S", "MlflowProcess", "child_command"]

TIMEOUT_S = 120.0
"""How long session end waits for the logging process's answer."""

_LIVE: weakref.WeakSet[MlflowProcess] = weakref.WeakSet()


def child_command() -> list[str]:
    """The command of the logging process: this interpreter, without the
    current directory on ``sys.path`` (a user's ``mlflow.py`` must not shadow
    mlflow), and with this copy of pytest_promptab importable. Its garbage
    collector is off until mlflow is imported (a quarter of the import's CPU,
    which competes with the tests; see :func:`~.child.serve`)."""
    package_parent = str(Path(pytest_promptab.__file__).resolve().parent.parent)
    code = (
        "import gc; gc.disable(); "
        "import sys; sys.path.pop(0); "
        f"sys.path.append({package_parent!r}); "
        "from pytest_promptab.tracking.child import main; raise SystemExit(main())"
    )
    return [sys.executable, "-c", code]


class MlflowProcess:
    """A running (or failed to start) MLflow logging process."""

    def __init__(self, tracking_uri: str, *, command: list[str] | None = None, traces: int = 0) -> None:
        """Start the process and tell it the tracking URI. Never raises: a
        start failure is remembered and reported by :meth:`log`."""
        self.tracking_uri = tracking_uri
        self.proc: subprocess.Popen[bytes] | None = None
        self.error: str | None = None
        self._stderr: IO[bytes] | None = None
        try:
            self._stderr = tempfile.TemporaryFile(prefix="promptab-mlflow-")
            self.proc = subprocess.Popen(
                command or child_command(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                start_new_session=True,  # Ctrl-C at the terminal is for pytest, not for it
            )
        except (OSError, ValueError) as exc:
            self.error = f"the MLflow logging process could not be started ({type(exc).__name__}: {exc})"
            return
        _LIVE.add(self)
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"tracking_uri": tracking_uri, "traces": traces}).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            pass  # it died already: log() says so, with what it wrote to stderr

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def resolve(self, references: list[str], *, timeout: float | None = None) -> dict[str, Any]:
        """Ask the process for prompt registry texts (the ``resolve`` request
        of :mod:`.child`) and wait for its one-line answer; the process stays
        up for :meth:`log`. Never raises (but KeyboardInterrupt); a process
        that does not answer within ``timeout`` is stopped, and :meth:`log`
        then says so."""
        import queue
        import threading

        timeout = TIMEOUT_S if timeout is None else timeout
        if self.error is not None or self.proc is None or not self.running:
            return {"ok": False, "message": self.error or "the MLflow logging process is not running", "prompts": {}}
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps({"resolve": references, "tracking_uri": self.tracking_uri}).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError as exc:
            return {"ok": False, "message": f"could not talk to the MLflow logging process ({exc})", "prompts": {}}
        lines: queue.Queue[bytes] = queue.Queue()
        stdout = self.proc.stdout
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            self._stop()
            self.error = (f"the MLflow logging process did not answer the prompt registry within {timeout:g} s "
                          "and was stopped")
            return {"ok": False, "message": self.error, "prompts": {}}
        try:
            answer = json.loads(line) if line.strip() else None
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or "prompts" not in answer:
            return {"ok": False, "message": f"the MLflow logging process gave no answer{self._stderr_tail()}",
                    "prompts": {}}
        return answer

    def log(self, request: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """Send the session-end request; return the process's answer, or a
        failed one saying what went wrong. Never raises (but KeyboardInterrupt,
        after the process was stopped), never waits more than ``timeout``
        (default :data:`TIMEOUT_S`). The process is gone after."""
        timeout = TIMEOUT_S if timeout is None else timeout
        try:
            if self.error is not None or self.proc is None:
                return _failed(self.error or "the MLflow logging process was not started")
            payload = json.dumps(request).encode() + b"\n"
            try:
                out, _ = self.proc.communicate(payload, timeout=timeout)
            except subprocess.TimeoutExpired:
                self._stop()
                return _failed(
                    f"the MLflow logging process did not answer within {timeout:g} s and was stopped"
                    f"{self._stderr_tail()}"
                )
            except (OSError, ValueError) as exc:
                self._stop()
                return _failed(f"could not talk to the MLflow logging process ({type(exc).__name__}: {exc})")
            return self._answer(out)
        finally:
            self.close()

    def _answer(self, out: bytes) -> dict[str, Any]:
        assert self.proc is not None
        line = next((raw for raw in out.splitlines() if raw.strip()), b"")
        try:
            answer = json.loads(line) if line else None
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or "ok" not in answer:
            code = self.proc.returncode
            how = f"died (signal {-code})" if code is not None and code < 0 else f"ended (exit code {code})"
            return _failed(f"the MLflow logging process {how} without an answer{self._stderr_tail()}")
        return answer

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0)
            lines = [line.strip() for line in self._stderr.read().decode("utf-8", "replace").splitlines()]
        except (OSError, ValueError):
            return ""
        last = next((line for line in reversed(lines) if line), "")
        if not last:
            return ""
        from .connect import redact_uri

        return f"; it said: {redact_uri(last)[:300]}"

    def close(self) -> None:
        """Stop the process if it still runs, reap it, drop its stderr. Idempotent."""
        self._stop()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _stop(self) -> None:
        proc = self.proc
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - a kill that did not take
                pass
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    try:
                        pipe.close()
                    except OSError:
                        pass
        _LIVE.discard(self)


def _failed(message: str) -> dict[str, Any]:
    return {"ok": False, "message": message, "run_ids": {}, "variant_run_ids": {}, "registered": {}, "problems": []}


@atexit.register
def _close_all() -> None:
    for process in list(_LIVE):
        process.close()
