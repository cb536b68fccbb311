"""The process edge of every entry point: any failure becomes one line and a non-zero exit.

`landscape` (`main`), `python -m landscape`, `scripts/surface.py`, `scripts/skip_study.py` and
`scripts/readme_figures.py` run their command through `run_command`:

- a `LandscapeError` (bad input) prints its message; an `OSError` the library did not turn into
  one prints the file and the reason; Ctrl-C (and SIGTERM outside MPI, so that `finally` blocks
  remove temporary files and locks) prints `interrupted` and exits 130; a broken pipe (output
  piped into `head`) is quiet; any other exception is one line naming its type and message,
  with the hint to rerun with LANDSCAPE_DEBUG=1, which prints the traceback as well;
- what the library says (`landscape.system.messages`: progress and result lines on stdout,
  notes and warnings on stderr) is printed, as bare text, while the command runs;
- text the terminal cannot encode (PYTHONIOENCODING=ascii and a file named `λ.pt`) is written
  as backslash escapes instead of failing;
- under an MPI launcher with several ranks (`mpiexec -n 2 ...`) a failing rank never leaves the
  others waiting in a collective: it starts MPI if it had not (so that the launcher counts it)
  and leaves without MPI_Finalize, which makes the launcher end every rank. Before MPI starts
  every rank runs the same code on the same input, so rank 0 speaks for all; another rank
  speaks only when it is still alive `_GRACE` seconds later (its failure was its own).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

from ..errors import LandscapeError, describe_error

__all__ = ["DEBUG_ENV", "run_command", "leave_failing", "lenient_streams"]

DEBUG_ENV = "LANDSCAPE_DEBUG"  # =1: also print the traceback of an unexpected exception
_GRACE = 2.0  # seconds a rank other than 0 waits before it speaks for itself


def run_command(prog: str, body: Callable[[], int | None], mpi: bool = True) -> int:
    """Run `body` (a command) at the process edge; return its exit code (see the module).
    `mpi`: whether the command's ranks may start MPI (False for `--comm serial` and commands
    that never use it: a failing rank then must not start MPI, whose start waits for every rank).

    Example:
        >>> run_command("landscape info", lambda: 0)
        0
    """
    from ..system.messages import to_console

    with lenient_streams(), _terminate_as_interrupt(), to_console():
        together = False
        try:
            code, line = int(body() or 0), None
        except BaseException as e:  # noqa: BLE001 (the edge: everything becomes one line)
            if isinstance(e, SystemExit):
                raise
            code, line = _describe(prog, e)
            # rank 0 told every rank (landscape.jobs.distributed): all leave the usual way, together
            together = bool(getattr(e, "ranks_told", False)) or getattr(e, "echo", True) is False
        if code and together:
            if line:
                print(line, file=sys.stderr, flush=True)
        elif code:
            leave_failing(line, code, mpi)
    return code


def _describe(prog: str, e: BaseException) -> tuple[int, str | None]:
    """(exit code, the one line to print or None) for an exception that reached the edge."""
    from ..system.text import printable

    if isinstance(e, LandscapeError):
        # an MPI worker stopped by rank 0's error stays quiet: rank 0 prints it, once
        return 2, f"{prog}: error: {printable(str(e))}" if getattr(e, "echo", True) else None
    if isinstance(e, KeyboardInterrupt):
        return 130, f"{prog}: interrupted"
    if isinstance(e, BrokenPipeError):  # an OSError too: output piped into `head`
        _silence_stdout()
        return 0, None
    if isinstance(e, OSError):  # a file operation the library did not turn into a LandscapeError
        from ..io.outputs import os_reason

        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        return 2, f"{prog}: error: {printable(where + os_reason(e))}"
    if os.environ.get(DEBUG_ENV, "").strip() not in ("", "0"):
        traceback.print_exception(e)
    return 2, f"{prog}: error: {printable(describe_error(e))} (rerun with {DEBUG_ENV}=1 for the traceback)"


def leave_failing(line: str | None, code: int, start_mpi: bool = True) -> None:
    """Print the one line of a failure; under a multi-rank MPI launcher, end this process so
    that the launcher ends every rank (never returns there). Elsewhere print and return.

    Ranks that run on their own (`--comm serial`, `start_mpi` False) each print their own line
    and return: MPI is not started, since its start waits for ranks that never start it."""
    from ..system.mpi_env import launched_under_mpi, launcher_rank

    if launched_under_mpi() <= 1:
        if line:
            print(line, file=sys.stderr, flush=True)
        return
    rank = launcher_rank()
    mpi = _mpi_running() or (start_mpi and _started_mpi())
    if not mpi:  # this rank ran on its own: its line is its own
        if line:
            prog, _, rest = line.partition(": ")
            print(line if rank == 0 else f"{prog}: rank {rank}: {rest}", file=sys.stderr, flush=True)
        return
    if line and rank == 0:
        print(line, file=sys.stderr, flush=True)
    elif line and mpi:
        time.sleep(_GRACE)  # rank 0 failing alike has ended the job by now
        prog, _, rest = line.partition(": ")
        print(f"{prog}: rank {rank}: {rest}", file=sys.stderr, flush=True)
    if not mpi:
        return  # no MPI: no collective can wait for this rank
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)  # without MPI_Finalize: the launcher sees a failed rank and ends the others


def _mpi_running() -> bool:
    """Whether this process has started MPI already (without starting it)."""
    mpi = sys.modules.get("mpi4py.MPI")
    try:
        return bool(mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized())
    except Exception:  # noqa: BLE001 (a broken MPI library: nothing to end)
        return False


def _started_mpi() -> bool:
    """Start MPI (mpi4py initializes it on import) if possible; whether it runs."""
    try:
        from mpi4py import MPI

        return bool(MPI.Is_initialized())
    except Exception:  # noqa: BLE001 (no mpi4py, or no loadable MPI library: nothing to end)
        return False


def _silence_stdout() -> None:
    """After a broken pipe: send what is left to /dev/null, so the exit's flush stays quiet."""
    with contextlib.suppress(Exception):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


@contextlib.contextmanager
def lenient_streams() -> Iterator[None]:
    """stdout and stderr write what their encoding cannot hold as backslash escapes (restored)."""
    changed = []
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and getattr(stream, "errors", None) == "strict":
            stream.reconfigure(errors="backslashreplace")
            changed.append(stream)
    try:
        yield
    finally:
        for stream in changed:
            with contextlib.suppress(Exception):
                stream.reconfigure(errors="strict")


def _interrupt(signum: int, frame: Any) -> NoReturn:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a batch system's time limit, `kill`) ends a serial run like Ctrl-C, so that its
    `finally` blocks run: the surface file's lock is released and temporary files are removed.
    Under mpiexec SIGTERM is left as it is (an exception inside an MPI transfer could hang)."""
    from ..system.mpi_env import launched_under_mpi

    try:
        old = None if launched_under_mpi() > 1 else signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
