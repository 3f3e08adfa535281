"""The keys under which a ``--promptab`` session (and, without it, the YAML
files seen) are kept in pytest's config stash.

Its own module so that the plugin and the items share it without importing
each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from .session import PromptabSession  # noqa: F401 - named in the string annotation below

SESSION_KEY = pytest.StashKey["PromptabSession"]()
YAML_SEEN_KEY = pytest.StashKey[list["Path"]]()
"""Without ``--promptab``: the YAML files collection walked past (see :mod:`pytest_promptab.offhint`)."""
