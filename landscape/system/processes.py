"""Whether a process named by host, pid and start time is certainly dead (lock files, temporaries).

A pid alone is not enough: pids are reused. Linux gives each process a start time (clock ticks
since boot, `/proc/<pid>/stat`); a recorded (pid, start) whose pid is gone, or now runs with
another start time, is dead. A process on another host cannot be checked from here and is never
taken as dead.

Example:
    >>> import os
    >>> is_dead(host_name(), os.getpid(), process_start(os.getpid()))
    False
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

__all__ = ["host_name", "process_start", "pid_alive", "is_dead"]


def host_name() -> str:
    return socket.gethostname()


def process_start(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot; None when it is not running
    (or on systems without /proc)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # field 2 (comm) is in parentheses and may hold spaces: split after the last ')'
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 of the whole line: starttime
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` exists on this host (any owner)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False  # not a pid this system can have
    return True


def is_dead(host: str, pid: int, start: int | None) -> bool:
    """Whether the process (host, pid, start) has certainly ended: same host, and its pid is gone
    or was reused (another start time). `start` None: only a pid that is gone counts."""
    if host != host_name():
        return False
    now = process_start(pid)
    if now is None:
        if Path("/proc/self/stat").exists():
            return True  # /proc works and the pid is not in it
        return not pid_alive(pid)
    return start is not None and now != start
