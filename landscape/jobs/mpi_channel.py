"""The MPI message transport of `landscape.jobs.distributed`: tags, polled point-to-point
messages, Ctrl-C as a flag, and the abort that ends every rank.

Only the main thread of a process calls MPI (so any MPI thread level works), and every wait is
a poll with a short sleep (`POLL`), so that a waiting rank never spins a core another rank
computes on. What the messages mean is `landscape.jobs.distributed`'s.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

__all__ = [
    "BEAT", "BYE", "ERROR", "FINAL", "REQUEST", "RESULT", "SETUP", "STOP", "WORK",
    "POLL", "PREFETCH", "SETUP_POLL",
    "Channel", "Interrupts", "abort",
]

# message tags
SETUP, REQUEST, RESULT, WORK, ERROR, STOP, BYE, FINAL, BEAT = range(1, 10)

# Seconds between MPI polls of an idle main thread. Each rank holds its next chunk (~1.5 s of
# work), so answers may take this long without idling anyone; results of the rank's own
# evaluating thread wake it at once. Polling rarely keeps the GIL with the evaluating thread.
POLL = 0.02
SETUP_POLL = 0.05  # while rank 0 prepares (that can take minutes: PCA, Hessian directions)
PREFETCH = 2  # chunks a worker holds: the one it computes and the next (hides the round trip)


class Channel:
    """Point-to-point messages: non-blocking sends, polled receives (main thread only)."""

    def __init__(self, comm: Any, MPI: Any) -> None:
        self.comm, self.MPI = comm, MPI
        self.status = MPI.Status()
        self.sending: list[Any] = []
        self.last_send = time.monotonic()

    def send(self, obj: Any, dest: int, tag: int) -> None:
        self.sending.append(self.comm.isend(obj, dest=dest, tag=tag))
        self.last_send = time.monotonic()
        self.progress()

    def progress(self) -> None:
        if self.sending:
            self.sending = [r for r in self.sending if not r.Test()]

    def poll(self, source: int | None = None) -> tuple[int, int, Any] | None:
        """(source, tag, object) of one waiting message, or None."""
        src = self.MPI.ANY_SOURCE if source is None else source
        msg = self.comm.improbe(src, self.MPI.ANY_TAG, self.status)
        if msg is None:
            return None
        source, tag = self.status.Get_source(), self.status.Get_tag()
        return source, tag, msg.recv()

    def flush(self, seconds: float) -> bool:
        """Wait (bounded) until every send has been received; True when all were."""
        end = time.monotonic() + seconds
        while self.sending and time.monotonic() < end:
            self.progress()
            time.sleep(POLL)
        return not self.sending


class Interrupts:
    """Ctrl-C as a flag while messages are in flight.

    mpiexec forwards Ctrl-C to every rank. An exception in the middle of a transfer leaves MPI
    unable to finalize, so the main loops check the flag and every rank then stops through the
    same goodbye as after an error: rank 0 sends STOP, each worker flushes and answers BYE.
    """

    def __init__(self) -> None:
        self.flag = False
        self.old: Any = None

    def _set(self, signum: int, frame: Any) -> None:
        self.flag = True

    def __enter__(self) -> Interrupts:
        try:
            self.old = signal.signal(signal.SIGINT, self._set)
        except ValueError:  # not the main thread: leave Ctrl-C as it is
            self.old = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)


def abort(comm: Any, message: str) -> None:
    """A rank is gone: say which, then end every rank (a clean exit would wait for it forever).

    The line goes straight to this rank's stderr, whatever the caller set up for messages: the
    process ends here, on any rank, possibly before any message handler exists.
    """
    sys.stderr.write(f"landscape: error: {message}\n")
    sys.stderr.flush()
    time.sleep(0.5)  # the launcher forwards output asynchronously; Abort tears that down too
    comm.Abort(2)
