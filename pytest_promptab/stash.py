"""The key under which a ``--promptab`` session is kept in pytest's config stash.

Its own module so that the plugin and the items share it without importing
each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .session import PromptabSession

SESSION_KEY = pytest.StashKey["PromptabSession"]()
