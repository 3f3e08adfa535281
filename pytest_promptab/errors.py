"""Error types of promptab.

Every error the user can cause is a :class:`PromptabError`. The pytest hooks
catch these and turn them into short reports that name the file, the line and
the fix, never a traceback into the plugin.
"""

from __future__ import annotations


class PromptabError(Exception):
    """Base class of every error promptab reports to the user.

    ``path`` and ``line`` (1-based), when known, say where in the user's files
    the problem is; ``hint`` says how to fix it.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.hint = hint

    def location(self) -> str:
        if self.path and self.line:
            return f"{self.path}:{self.line}"
        return self.path or ""

    def __str__(self) -> str:
        text = self.message
        where = self.location()
        if where:
            text = f"{where}: {text}"
        if self.hint:
            text = f"{text}\n  hint: {self.hint}"
        return text


class ConfigError(PromptabError):
    """A workflow file (or a file it refers to) is not valid."""


class TemplateError(PromptabError):
    """A prompt or check template could not be rendered."""


class ProviderError(PromptabError):
    """A provider call failed for good (after any retries)."""

    def __init__(self, message: str, *, status: int | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.status = status


class ReplayMissError(ProviderError):
    """``--promptab-cache replay`` found no recorded response for a request."""


class CheckError(PromptabError):
    """A check could not be evaluated (its callable raised, bad schema, ...)."""


class OutputParseError(PromptabError):
    """A node with ``parse: json`` produced output that is not JSON."""


class ApplyError(PromptabError):
    """``--promptab-apply-best`` refused to rewrite a file."""


class PromptabWarning(UserWarning):
    """Shown in pytest's warnings summary: WARN gates, MLflow trouble, ..."""
