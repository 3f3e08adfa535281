"""Moved to :mod:`pytest_promptab.gitinfo` (saved sessions need it too); kept
so that imports from here keep working."""

from ..gitinfo import GIT_TIMEOUT_S, git_info

__all__ = ["GIT_TIMEOUT_S", "git_info"]
