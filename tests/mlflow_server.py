"""A real ``mlflow server`` for the tests, and the pytest fixture that runs one.

``mlflow_server`` (session scope) starts ``mlflow server`` on a free port of
127.0.0.1 with a sqlite backend in a temporary directory, in its own process
group, waits for ``/health`` and kills the whole group at the end. A server
that cannot start fails the test with its log: it is never skipped.
``start_mlflow_server`` starts a private one (``mlflow server`` or ``mlflow
ui``), e.g. for a test that kills it; ``ensure_running`` brings a killed one
back on a new port, with the same store.

Load it with ``pytest_plugins = ["tests.mlflow_server"]``, or import the fixture.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

START_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MlflowServer:
    cwd: Path
    """The server's working directory (``mlflow ui`` keeps its store there)."""
    args: list[str]
    """``["server", "--backend-store-uri", ...]`` without host, port and workers."""
    log_path: Path
    uri: str = ""
    started_in_s: float = 0.0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def root(self) -> Path:
        return self.cwd

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-20_000:]
        except OSError as exc:
            return f"(no log: {exc})"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start on a free port and wait for ``/health``; ``pytest.fail`` with
        the server's log when it exits or does not answer in time."""
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        # No background job runner (8 more processes; it doubles the start-up
        # time on 2 cores) and no usage telemetry from tests.
        env.update(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true")
        cmd = [sys.executable, "-m", "mlflow", *self.args, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                cmd, cwd=self.cwd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self.uri = f"http://127.0.0.1:{port}"
        while time.monotonic() - started < timeout_s:
            if not self.alive:
                code = self.process.returncode
                pytest.fail(f"`mlflow {self.args[0]}` exited with code {code}; its log:\n{self.log()}", pytrace=False)
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2) as answer:
                    if answer.status == 200:
                        self.started_in_s = time.monotonic() - started
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"`mlflow {self.args[0]}` did not answer /health in {timeout_s:.0f} s; log:\n{self.log()}", pytrace=False)

    def ensure_running(self) -> None:
        if not self.alive:
            self.start()

    def kill(self) -> None:
        """SIGKILL the server's whole process group (uvicorn workers included)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self.kill()  # the group: workers that outlived the parent


def start_mlflow_server(root: Path, *, ui: bool = False, timeout_s: float = START_TIMEOUT_S) -> MlflowServer:
    """``mlflow server`` with a sqlite store and artifacts under ``root``; or,
    with ``ui=True``, plain ``mlflow ui`` started in ``root`` (its defaults:
    ``sqlite:///mlflow.db`` and ``./mlartifacts``), as a user would."""
    root.mkdir(parents=True, exist_ok=True)
    if ui:
        args = ["ui"]
    else:
        args = [
            "server",
            "--backend-store-uri", f"sqlite:///{(root / 'mlflow.db').as_posix()}",
            "--artifacts-destination", (root / "artifacts").as_posix(),
        ]  # fmt: skip
    server = MlflowServer(cwd=root, args=args, log_path=root / "server.log")
    server.start(timeout_s)
    return server


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real MLflow tracking server shared by the session's tests."""
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield server
    finally:
        server.stop()
