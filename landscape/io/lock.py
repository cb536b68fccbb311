"""One writer per surface file: a lock file beside it names the run that owns it.

`surf.h5.lock` is created atomically (`O_CREAT | O_EXCL`) and holds the owner as JSON: host,
pid, the process's start time (clock ticks since boot, from `/proc/<pid>/stat`) and when the
lock was taken. A second run on the same file finds the lock and is refused in one line that
names the owner; it changes nothing. The owner removes the lock when it ends, by any exit that
runs Python's `finally` (normal, error, Ctrl-C; the CLI turns SIGTERM into Ctrl-C). After kill -9 or a crash the lock is stale:
on the same host, its pid is not running, or runs another program (a reused pid has another
start time). A stale lock is taken over with a one-line note, so a rerun resumes at once. A
lock from another host cannot be checked and is never taken over: the message says which
file to delete once that run is known to be dead.

The lock is named after the resolved file (`os.path.realpath`), so two paths to one file (a
linked folder) share it; an output path that is itself a symbolic link is refused before any
lock is taken (`landscape.io.outputs.check_not_link`): a writer never replaces a link with a file.
Taking a lock also removes the temporary files that dead writers of the file left behind
(`landscape.io.outputs.remove_stale_temps`).

Example:
    >>> with SurfaceLock.acquire(Path("surfaces/r20.h5")):  # doctest: +SKIP
    ...     compute_and_write()
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import LandscapeError
from ..system.messages import warn
from ..system.processes import is_dead, process_start
from .outputs import check_not_link, os_reason, remove_stale_temps

__all__ = ["Owner", "SurfaceLock", "lock_path", "process_start", "read_owner", "is_stale"]

# A lock file that exists but is still empty is being written by its creator (the window between
# O_EXCL create and the write is microseconds); only after this long is it taken as debris.
_EMPTY_GRACE_SECONDS = 10.0
_TAKEOVER = ".takeover"


def lock_path(path: Path) -> Path:
    """The lock file of a surface file: `surf.h5` -> `surf.h5.lock`."""
    return path.with_name(path.name + ".lock")


@dataclass(frozen=True)
class Owner:
    """The run holding a lock."""

    host: str
    pid: int
    start: int | None  # process start time (ticks since boot); None where /proc is missing
    since: str  # ISO time the lock was taken

    @classmethod
    def me(cls) -> Owner:
        pid = os.getpid()
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        return cls(socket.gethostname(), pid, process_start(pid), now)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.since}"


def read_owner(path: Path) -> Owner | None:
    """The owner recorded in lock file `path`; None when it is empty or not a lock we wrote."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        start = data.get("start")
        return Owner(str(data["host"]), int(data["pid"]), None if start is None else int(start),
                     str(data["since"]))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def is_stale(owner: Owner, host: str | None = None) -> bool:
    """Whether `owner` is certainly dead: same host, and its pid is gone or was reused."""
    if owner.host != (host or socket.gethostname()):
        return False  # another machine's process cannot be checked from here
    return is_dead(socket.gethostname(), owner.pid, owner.start)


class SurfaceLock:
    """Ownership of one output file; release it with `release()` or by leaving the `with` block."""

    def __init__(self, path: Path, owner: Owner, lock: Path | None = None) -> None:
        self.path = path
        self.lock = lock if lock is not None else lock_path(path)
        self.owner = owner

    @classmethod
    def acquire(cls, path: Path, note: Callable[[str], None] | None = warn) -> SurfaceLock:
        """Take the lock of `path`, taking over a stale one (with a `note`); refuse a live one.

        Raises a one-line LandscapeError naming the owner when another run holds the file.
        """
        path = Path(path)
        check_not_link(path)  # a link is never written through nor replaced (refused before any work)
        me = Owner.me()
        # named after the real file: two paths to one file (a folder link) share one lock
        lock = lock_path(Path(os.path.realpath(path)))
        for _ in range(50):
            if _create(lock, me):
                remove_stale_temps(path)  # what a writer killed before its final rename left
                return cls(path, me, lock)
            holder = read_owner(lock)
            if holder is None:
                if _age(lock) < _EMPTY_GRACE_SECONDS:
                    time.sleep(0.05)  # its creator is writing it
                    continue
            elif not is_stale(holder):
                raise LandscapeError(
                    f"{path} is being written by another run ({holder.describe()}); wait for it "
                    f"to finish, or choose another --out (if that run is dead, delete {lock})"
                )
            if _take_over(lock, holder) and note is not None:
                who = holder.describe() if holder else "an unreadable lock"
                note(f"note: {path} was locked by {who}, which is no longer running; taking over")
        raise LandscapeError(f"cannot lock {path}: {lock} keeps changing; is another run starting?")

    def release(self) -> None:
        """Remove the lock file if it is still ours (a taken-over lock is left to its new owner)."""
        held = read_owner(self.lock)
        if held is not None and (held.host, held.pid, held.start) == (
            self.owner.host, self.owner.pid, self.owner.start
        ):
            with contextlib.suppress(OSError):
                self.lock.unlink()

    def __enter__(self) -> SurfaceLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _create(lock: Path, me: Owner) -> bool:
    """Create `lock` holding `me`, atomically; False when it exists already."""
    try:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a file where the folder should be: open() says so below
            pass
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as e:
        raise LandscapeError(
            f"cannot write {lock.with_suffix('')}: folder {lock.parent} is not writable ({os_reason(e)})"
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(asdict(me)))
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        with contextlib.suppress(OSError):
            lock.unlink()
        raise LandscapeError(f"cannot write lock file {lock}: {os_reason(e)}") from None
    return True


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _take_over(lock: Path, holder: Owner | None) -> bool:
    """Remove a stale `lock`, unless another run took it over meanwhile; True when removed.

    Two runs may find the same stale lock: a second, short-lived O_EXCL file serializes the
    take-over, and the lock is re-read under it so that only the dead owner's lock is removed.
    """
    guard = lock.with_name(lock.name + _TAKEOVER)
    try:
        fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        if _age(guard) > _EMPTY_GRACE_SECONDS:  # left by a run killed mid-take-over
            with contextlib.suppress(OSError):
                guard.unlink()
        time.sleep(0.05)
        return False
    os.close(fd)
    try:
        if read_owner(lock) != holder:
            return False  # someone else took it over (or it was released)
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
        return True
    finally:
        with contextlib.suppress(OSError):
            guard.unlink()
