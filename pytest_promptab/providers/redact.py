"""Secrets out of a server's text, before it is cut and enters a report.

Everything a server (or the network below it) says that promptab keeps, in an
error message, a run's ``extra`` fields or the terminal, goes through
:func:`scrub_and_clip`: first :func:`scrub`, which removes the configured
secrets (the API key, also when only a long prefix of it is echoed, and the
server's URL and host) and the usual shapes of credentials; then the cut to a
length. Cutting first would leave part of a key that starts before the cut
and ends after it, where no pattern recognises it any more.
"""

from __future__ import annotations

import re
from typing import Iterable

REDACTED = "<redacted>"

KEY_PREFIX_MIN = 8
"""An echoed prefix of the API key this long or longer is removed too."""

_KEYLIKE = re.compile(r"\b(sk|gsk|xai|pk|rk)-[A-Za-z0-9_\-*.]{8,}")
_BEARER = re.compile(r"(?i)\bbearer\s+\S+")
_MASKED_TAIL = re.compile(r"(?:\*{2,}|\.{3,}|…)([A-Za-z0-9_\-]{0,8})")
_HEX = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{32,}(?![0-9a-fA-F])")
_ASSIGNED = re.compile(
    r"(?i)\b((?:api[_-]?)?key|token|access[_-]?token|secret|password|passwd|sig|signature|auth)"
    r"(\s*[=:]\s*[\"']?)[A-Za-z0-9+/_\-.=~%]{16,}"
)


def scrub(text: str, secrets: Iterable[str | None] = (), key: str | None = None) -> str:
    """``text`` without ``key`` (the API key, or any prefix of it of at least
    :data:`KEY_PREFIX_MIN` characters), without any of ``secrets`` (longest
    first), and without key-like tokens (``sk-...``), bearer credentials, runs
    of 32+ hex digits, and long values after ``key=``, ``token=``,
    ``secret:``..."""
    if key:
        text = _without_key(text, key)
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _BEARER.sub(f"Bearer {REDACTED}", text)
    text = _KEYLIKE.sub(lambda m: f"{m.group(1)}-{REDACTED}", text)
    text = _ASSIGNED.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _HEX.sub(REDACTED, text)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def scrub_and_clip(text: str, limit: int, secrets: Iterable[str | None] = (), key: str | None = None) -> str:
    """:func:`scrub`, then :func:`clip`: never the other way round. A huge
    text is first cut to a bound well past ``limit`` (a secret echoed there
    can no longer reach the kept part), so scrubbing stays cheap."""
    margin = limit + 4096 + (len(key) if key else 0)
    return clip(scrub(text[:margin], secrets, key), limit)


def _without_key(text: str, key: str) -> str:
    """Every occurrence of ``key``, and of its prefixes of at least
    :data:`KEY_PREFIX_MIN` characters (a key the server cut), replaced."""
    if len(key) < KEY_PREFIX_MIN:
        return text.replace(key, REDACTED)
    head = key[:KEY_PREFIX_MIN]
    out: list[str] = []
    position = 0
    while True:
        found = text.find(head, position)
        if found < 0:
            break
        end = found + KEY_PREFIX_MIN
        while end - found < len(key) and end < len(text) and text[end] == key[end - found]:
            end += 1
        masked = _MASKED_TAIL.match(text, end)  # "abcd1234****wxyz": the key as consoles mask it
        if masked and key.endswith(masked.group(1)):
            end = masked.end()
        out.append(text[position:found])
        out.append(REDACTED)
        position = end
    out.append(text[position:])
    return "".join(out)
