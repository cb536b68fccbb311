"""One error type for everything a user can get wrong; the CLI turns it into one line."""

from __future__ import annotations

__all__ = ["LandscapeError", "one_line", "describe_error"]


class LandscapeError(Exception):
    """A problem with the user's input: the message says what is wrong and how to fix it."""


def one_line(error: BaseException, with_type: bool = True, limit: int = 300) -> str:
    """An exception on one line: `Type: message`, whitespace (newlines too) collapsed, the
    message cut to `limit` characters; the type alone when there is no message.

    Example:
        >>> one_line(ValueError("bad\\n  value")), one_line(KeyError(), with_type=False)
        ('ValueError: bad value', 'KeyError')
    """
    text = " ".join(str(error).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    if not text:
        return type(error).__name__
    return f"{type(error).__name__}: {text}" if with_type else text


def describe_error(error: BaseException) -> str:
    """One line for any exception: a LandscapeError's own message, `interrupted`, `out of
    memory (...)`, else `one_line`."""
    if isinstance(error, LandscapeError):
        return str(error)
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    text = one_line(error)
    if isinstance(error, MemoryError) or "out of memory" in text.lower():
        return f"out of memory ({text})"
    return text
