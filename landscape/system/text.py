"""Text taken from a file, made safe to print: control characters become visible escapes.

A surface or checkpoint may come from anyone; an attribute holding an ANSI escape sequence, a
carriage return or a right-to-left override must not move the cursor, recolour the terminal
or reorder what the user reads.

Example:
    >>> printable("resnet20\\x1b[2J\\nok")
    'resnet20\\\\x1b[2J\\\\nok'
"""

from __future__ import annotations

import unicodedata

__all__ = ["printable"]

_CONTROL = ("Cc", "Cf", "Zl", "Zp")  # controls, format (bidi overrides), line and paragraph separators


def printable(text: str) -> str:
    """`text` with every control or format character (Unicode Cc, Cf) written as an escape."""
    if text.isprintable():
        return text
    return "".join(_escape(ch) if unicodedata.category(ch) in _CONTROL else ch for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch == "\n":
        return "\\n"
    if ch == "\t":
        return "\\t"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
