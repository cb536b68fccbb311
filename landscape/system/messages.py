"""What the library says while it works: one `logging` logger, `landscape`, and the console
handler that the process edge installs.

Library code never prints. It calls `say` (progress and result lines, such as `wrote s.h5: 25
points in 1.2s`), `note` (a line about the run that belongs beside the progress bar on stderr,
such as the MPI rank layout) or `warn` (a warning, on stderr). All three log to the `landscape`
logger; what becomes of the record is the application's choice:

- the `landscape` command and the scripts run inside `to_console()` (`landscape.cli.edge`),
  which prints the bare text: `say` on stdout, `note` and `warn` on stderr;
- in a notebook or your own program, wrap the calls in `to_console()` to see the same lines, or
  configure `logging` as usual (`logging.basicConfig(level="INFO", format="%(message)s")`).
  Without either, Python still shows warnings on stderr (its last-resort handler) and drops
  the progress lines.

Example:
    >>> from landscape.system.messages import say, to_console
    >>> with to_console():
    ...     say("wrote s.h5")
    wrote s.h5
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

__all__ = ["LOGGER", "say", "note", "warn", "to_console"]

LOGGER = "landscape"
_log = logging.getLogger(LOGGER)


def say(text: str) -> None:
    """A progress or result line (stdout at the console)."""
    _log.info(text)


def note(text: str) -> None:
    """A line about the run that goes beside the progress bar (stderr at the console)."""
    _log.info(text, extra={"landscape_stderr": True})


def warn(text: str) -> None:
    """A warning (stderr at the console)."""
    _log.warning(text)


class _Console(logging.Handler):
    """The bare text, on stdout or stderr as the record asks; the streams are looked up when a
    line is written, so a redirected `sys.stdout` (pytest, `contextlib.redirect_stdout`) gets it."""

    def emit(self, record: logging.LogRecord) -> None:
        err = record.levelno >= logging.WARNING or getattr(record, "landscape_stderr", False)
        stream = sys.stderr if err else sys.stdout
        try:
            stream.write(record.getMessage() + "\n")
            stream.flush()
        except BrokenPipeError:
            raise  # output piped into `head`: the edge ends the command quietly
        except Exception:  # noqa: BLE001 (logging's own policy for a failing handler)
            self.handleError(record)


@contextlib.contextmanager
def to_console() -> Iterator[None]:
    """Print what the library says while the block runs (see the module); then undo that.

    The `landscape` logger's records stop at this handler (they do not also reach the root
    logger's handlers), so no line is printed twice.
    """
    handler = _Console(logging.INFO)
    old_level, old_propagate = _log.level, _log.propagate
    _log.addHandler(handler)
    _log.setLevel(logging.INFO)
    _log.propagate = False
    try:
        yield
    finally:
        _log.removeHandler(handler)
        _log.setLevel(old_level)
        _log.propagate = old_propagate
