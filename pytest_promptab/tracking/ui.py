"""Whether the MLflow UI is installed, and how to get it.

promptab depends on ``mlflow-skinny`` (client, sqlite store, prompt
registry, traces); the UI and ``mlflow server`` come with the full ``mlflow``
distribution, the ``ui`` extra. Checked through the installed distributions,
without importing mlflow.
"""

from __future__ import annotations

from importlib import metadata

INSTALL_UI = 'pip install "pytest-promptab[ui]"'


def ui_installed() -> bool:
    """True when the full ``mlflow`` distribution (with ``mlflow ui``) is installed."""
    try:
        metadata.distribution("mlflow")
    except metadata.PackageNotFoundError:
        return False
    return True


def ui_command(command: str) -> str:
    """``see it with: <command>``, plus how to install the UI when it is missing."""
    if ui_installed():
        return f"see it with: {command}"
    return f"see it with: {command}, once the UI is installed ({INSTALL_UI})"
