"""Text that is safe to store: decoding the user's files, and strings that
can always be written as UTF-8.

:func:`decode_text` reads a file's bytes as UTF-8, or as UTF-16/UTF-32 when
the file starts with their byte order mark (apply-best writes such files back
in their encoding); anything else raises :class:`NotText`.

:func:`clean` and :func:`clean_data` turn the surrogate code points Python
strings may hold (a YAML ``"\\ud83d\\ude80"`` escape pair, a provider
answering ``"\\ud800"``) into real characters: a high+low pair becomes the
character it encodes, a lone surrogate becomes U+FFFD. Without this, writing
such a string as UTF-8 (a recording, an MLflow artifact or tag) raises.

:func:`has_userinfo` and :func:`hide_userinfo` are the one rule for the user
info of a URL (``user:password@`` before the host): it runs from ``//`` to
the last ``@`` of the word, since a password may hold ``/`` or ``@``
(SQLAlchemy reads ``postgresql://u:pa/ss@db``). A path with an ``@`` in it
counts too: refused or hidden, never a secret let through.
"""

from __future__ import annotations

import codecs
import json
import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")
_USERINFO = re.compile(r"(//)\S*@")
_BOMS = (  # UTF-32 first: its little-endian BOM starts with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


_NO_BOM = "the file looks like UTF-16 without a byte order mark: save it as UTF-8 (or UTF-16 with a BOM)"


class NotText(ValueError):
    """The bytes are not text promptab reads; the message says why, ``line``
    (1-based) where, when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def decode_text(raw: bytes) -> str:
    """``raw`` as text, without its BOM: UTF-8, or UTF-8/16/32 with a BOM.
    Raises :class:`NotText` for anything else (binary data, another
    encoding, UTF-16 without a BOM)."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            try:
                return raw[len(bom) :].decode(encoding)
            except UnicodeDecodeError:
                raise NotText(f"the file starts with a {encoding.upper()} byte order mark but is not "
                              f"{encoding.upper()} text") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if _utf16_without_bom(raw):
            raise NotText(_NO_BOM) from None
        line = raw.count(b"\n", 0, exc.start) + 1
        raise NotText(f"the file is not UTF-8 text (invalid byte 0x{raw[exc.start]:02x})", line) from None
    if "\x00" in text:
        raise NotText(_NO_BOM if _utf16_without_bom(raw) else "the file is not text (it holds NUL bytes)")
    return text


def _utf16_without_bom(raw: bytes) -> bool:
    return "ab_test".encode("utf-16-le") in raw or "ab_test".encode("utf-16-be") in raw


def clean(text: str) -> str:
    """``text`` with surrogate pairs joined and lone surrogates replaced by
    U+FFFD; the same object when it holds none (the common case)."""
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def clean_data(value: Any) -> Any:
    """:func:`clean` applied to every string (keys too) in JSON-like data."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {clean_data(k): clean_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_data(v) for v in value]
    return value


def has_surrogates(data: Any) -> bool:
    """True when a string in JSON-like ``data`` holds a surrogate (one C-speed
    pass: serialise, then search)."""
    try:
        text = json.dumps(data, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return True  # not plain data: let clean_data decide string by string
    return bool(_SURROGATE.search(text))


def has_userinfo(url: str) -> bool:
    """True when ``url`` (with or without a scheme) has user info before its host."""
    text = url.strip()
    rest = text.partition("://")[2] if "://" in text else text.removeprefix("//")
    return _USERINFO.search("//" + rest) is not None


def hide_userinfo(text: str) -> str:
    """``text`` with the user info of every URL in it as ``***``:
    ``https://user:token@host`` -> ``https://***@host``."""
    return _USERINFO.sub(r"\1***@", text)
