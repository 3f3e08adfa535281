"""The file line of a position inside a YAML scalar's value.

A literal block (``|``) keeps the file's line breaks, so line ``n`` of the
value is line ``n`` below the first. Any other style does not: a
double-quoted ``"a\\nb"`` is one file line holding two value lines, and a
folded or plain scalar spread over several file lines is one value line. A
:class:`TextLine` is the line where a scalar's text starts (an ``int``, usable
wherever a line number is) that also knows the scalar as written, so that
:func:`line_in_value` can find the file line of a name or a text inside it.
No imports beyond the standard library: templates and the YAML reader use it.
"""

from __future__ import annotations

import re


class TextLine(int):
    """The first line of a scalar's text, with the scalar as written."""

    raw: str
    """The scalar as written in the file, from its first character."""
    raw_line: int
    """The file line of the first character of ``raw``."""
    literal: bool
    """A ``|`` block: the value's line breaks are the file's."""

    def __new__(cls, line: int, *, raw: str, raw_line: int, literal: bool) -> TextLine:
        obj = super().__new__(cls, line)
        obj.raw, obj.raw_line, obj.literal = raw, raw_line, literal
        return obj

    def __reduce__(self) -> tuple[object, ...]:  # pickles (xdist) as a plain line number
        return (int, (int(self),))


def line_in_value(value: str, first_line: int | None, *, index: int, needle: str | None = None) -> int | None:
    """The file line of ``value[index]``, in a value whose text starts at
    ``first_line``. For a scalar that is not a literal block, ``needle`` (a
    name, or the text around ``index``) is looked up in the scalar as written;
    not found, the scalar's first line is the best answer."""
    if first_line is None:
        return None
    if not isinstance(first_line, TextLine):  # no knowledge of the style: assume the value's lines are the file's
        return first_line + value[:index].count("\n")
    if first_line.literal:
        return int(first_line) + value[:index].count("\n")
    if "\n" not in first_line.raw.rstrip("\n"):
        return int(first_line)
    if needle:
        # a name matches whole words only: "email" is not found in "emails"
        pattern = (r"\b" if needle[0].isalnum() or needle[0] == "_" else "") + re.escape(needle)
        pattern += r"\b" if needle[-1].isalnum() or needle[-1] == "_" else ""
        match = re.search(pattern, first_line.raw)
        if match:
            return first_line.raw_line + first_line.raw[: match.start()].count("\n")
    return int(first_line)
