"""Shared fixtures: pytester helpers for end-to-end runs, and the real
servers (fake OpenAI-compatible server, mlflow server) as plugins."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

pytest_plugins = ["tests.fake_openai", "tests.mlflow_server"]

# A deterministic provider for end-to-end tests: the answer is the last line of
# the prompt, unless the prompt says otherwise.
ECHO_PROVIDER = '''
from pytest_promptab.providers.base import ProviderResponse

def echo(request):
    text = request.prompt.strip().splitlines()[-1]
    if text.startswith("FAIL"):
        raise RuntimeError("the model is down")
    return ProviderResponse(text=text, tokens_in=len(request.prompt.split()), tokens_out=len(text.split()))
'''


@pytest.fixture
def examples_dir(pytester: pytest.Pytester) -> Path:
    """A copy of examples/ in the pytester directory."""
    target = pytester.path / "examples"
    shutil.copytree(EXAMPLES, target, ignore=shutil.ignore_patterns("__pycache__", "*.bak"))
    return target


@pytest.fixture
def echo_workflow(pytester: pytest.Pytester):
    """Write ``name.yaml`` next to an echo provider; returns a writer."""
    pytester.makepyfile(echo_provider=ECHO_PROVIDER)

    def write(name: str, text: str) -> Path:
        path = pytester.path / f"{name}.yaml"
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session", autouse=True)
def _heavy_modules_imported_once() -> None:
    """Import numpy, scipy and mlflow in the test process up front. pytester's
    in-process runs snapshot sys.modules and drop what they imported; a module
    with C extensions (numpy) cannot be imported a second time, so it must be
    in the snapshot already."""
    import importlib
    import pkgutil
    import warnings

    import numpy  # noqa: F401
    import scipy.stats  # noqa: F401

    import pytest_promptab

    # every promptab module, and httpcore: httpx maps the exceptions of the
    # httpcore it saw first, so a second copy would break its retries
    for module in pkgutil.walk_packages(pytest_promptab.__path__, "pytest_promptab."):
        importlib.import_module(module.name)
    importlib.import_module("httpcore")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
        import mlflow.tracking  # noqa: F401

