"""The range of a seed: a whole number from 0 to 2**63-1.

Seeds go to `torch.Generator.manual_seed` (which refuses 2**64 and more, with a traceback) and
into surface files as int64 attributes, where -1 marks "no seed"; a negative seed would also
give the same stream as a large positive one. So every seed a user gives is checked here.

Example:
    >>> check_seed("--seed", 7)
    7
"""

from __future__ import annotations

from ..errors import LandscapeError

__all__ = ["MAX_SEED", "valid_seed", "check_seed"]

MAX_SEED = 2**63 - 1


def valid_seed(value: object) -> bool:
    """Whether `value` is an int (not a bool) from 0 to MAX_SEED."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEED


def check_seed(name: str, value: int) -> int:
    """`value`, or one line saying the seed `name` must be from 0 to 2**63-1."""
    if not valid_seed(value):
        raise LandscapeError(f"{name} must be a whole number from 0 to 2**63-1, got {value!r}")
    return value
