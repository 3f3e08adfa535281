"""What every model of the file format shares: the strict, frozen base model,
the error that knows where it was found, and the wording helpers of errors."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class LocatedValueError(ValueError):
    """A validation error that knows where below the model it was found, so the
    loader can point at the right line (``loc`` is relative to the model)."""

    def __init__(self, message: str, loc: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.loc = tuple(loc)


class StrictModel(BaseModel):
    """Unknown keys are errors; a loaded file is never changed."""


    model_config = ConfigDict(extra="forbid", frozen=True)


def closest(word: str, choices: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the nearest of ``choices``, or nothing."""
    import difflib

    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def num_text(value: float) -> str:
    """``0.8`` as ``0.8``, ``2000.0`` as ``2000``."""
    return str(int(value)) if float(value).is_integer() else str(value)
