"""A warning for notebooks: torch loaded without `OMP_WAIT_POLICY=PASSIVE` on a busy machine.

`landscape` (the command) sets OMP_WAIT_POLICY=PASSIVE before torch loads
(`landscape.system.threads.thread_environment`). In a notebook torch is already imported when the API
runs, and GNU OpenMP reads the policy only once, when torch loads it: library code can neither
write the environment (house rule) nor change the policy afterwards. Measured on a 2-core
machine shared with other jobs: 3.73 s per point without the policy against 0.52 s with it.
So the API warns, once per call site (`warnings.warn`), when the policy is missing, torch runs
more than one thread (one thread never waits for another) and the machine is busy (1-minute
load average at or above the usable cores), and says the fix: set
`OMP_WAIT_POLICY=PASSIVE` before torch is imported (`%env OMP_WAIT_POLICY=PASSIVE` as the first
cell, or in the shell that starts Jupyter), then restart the kernel.

Example:
    >>> spin_warning({}, load=3.0, usable=2, threads=2) is not None
    True
    >>> spin_warning({"OMP_WAIT_POLICY": "PASSIVE"}, load=3.0, usable=2, threads=2) is None
    True
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

from .threads import machine_cpus, thread_environment

__all__ = ["spin_warning", "warn_if_spinning"]


def spin_warning(env: Mapping[str, str], load: float, usable: int, threads: int) -> str | None:
    """The warning to give for this environment, load and thread count, or None (policy set,
    one thread, or not busy)."""
    if "OMP_WAIT_POLICY" not in thread_environment(env) or threads <= 1 or load < usable:
        return None
    return (
        f"torch was loaded without OMP_WAIT_POLICY=PASSIVE and this machine is busy (load "
        f"{load:.1f} on {usable} usable cores): waiting OpenMP threads spin and a surface can run "
        "several times slower (measured 7x). Set OMP_WAIT_POLICY=PASSIVE before torch is imported "
        "(`%env OMP_WAIT_POLICY=PASSIVE` in the first cell, or in the shell that starts Jupyter) "
        "and restart the kernel; the `landscape` command does this itself"
    )


def warn_if_spinning(stacklevel: int = 3) -> None:
    """`warnings.warn` the `spin_warning` of this process, if any (read-only: no env writes)."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # no load average on this platform
        return
    import torch

    text = spin_warning(os.environ, load, machine_cpus().usable, torch.get_num_threads())
    if text is not None:
        warnings.warn(text, RuntimeWarning, stacklevel=stacklevel)
