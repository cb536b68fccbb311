"""One error type for everything a user can get wrong; the CLI turns it into one line."""

from __future__ import annotations

__all__ = ["LandscapeError"]


class LandscapeError(Exception):
    """A problem with the user's input: the message says what is wrong and how to fix it."""
