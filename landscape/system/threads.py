"""How many threads a run should use, and how its threads should wait: from the cores this
process may really use, not the cores the machine has.

Three things limit the cores: the affinity mask (`taskset`, a batch system's binding), a
container's CPU quota (cgroup v2 `cpu.max`, cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`)
and the other ranks of an MPI job on the same node. `default_threads` combines them; a user's
`OMP_NUM_THREADS` (or `--threads`) always wins.

How threads wait matters as much on a busy machine. torch's CPU wheel uses GNU OpenMP, whose
threads spin for a while at every barrier before they sleep; beside another busy process a
spinning thread takes the core the other process (or this run's own late thread) needs.
Measured on 2 cores shared with other jobs (load average 7-9), a 5x5 resnet20 surface on digits
by `landscape surface`, 2 threads each time:

    OpenMP waiting                    alone    beside one busy process
    GNU default (spin 300,000 times)  63.4 s   101.1 s
    OMP_WAIT_POLICY=ACTIVE            99.8 s   132.2 s
    OMP_WAIT_POLICY=PASSIVE           11.3 s    28.8 s  (1 thread: 12.4 s, 33.9 s)

On an idle machine the opposite holds: small kernels (training on 8x8 digits) leave the threads
waiting between many short parallel regions, and sleeping there costs more than spinning.
Measured on `AMD EPYC: AVX-512 (kernels: ATen AVX512, oneDNN all), bf16 native`, 2 cores, 2
threads, by the `landscape` command:

    idle machine                      PASSIVE   GNU default spin
    5 epochs of resnet56_noshort      8.9 s     3.1 s   (1 thread, either policy: 4.1 s)
    7x7 resnet56 surface (with start) 10.7 s    8.7 s
    Hessian lambda_max/min, resnet56  19.8 s    13.2 s
    beside one busy torch process     PASSIVE   spin 300,000 / 10,000
    3 epochs of resnet56_noshort      7.9 s     36.9 s / 37.0 s

So the entry points look before torch loads: `machine_busy` (tasks running now besides this one,
from /proc/loadavg, the median of a few samples, against half the usable cores) picks PASSIVE on
a busy machine, or where it cannot tell, and leaves GNU's spinning (plain PyTorch's) on an idle
one. `thread_environment` gives the settings; they must be in the environment before torch is
imported, so only the entry points apply them (never library code). A user's OMP_WAIT_POLICY or
GOMP_SPINCOUNT always wins; set OMP_WAIT_POLICY=PASSIVE for a run that other work will join.

Everything here is a pure function of its inputs (file contents, counts, an environment
mapping), so it is tested with fake files; `machine_cpus` reads the real ones.

Example:
    >>> parse_cpu_max("150000 100000"), parse_cpu_max("max 100000")
    (1.5, None)
    >>> default_threads(CpuLimits(cpus=16, affinity=16, quota=4.0), ranks_per_node=2)
    2
    >>> thread_environment({})
    {'OMP_WAIT_POLICY': 'PASSIVE'}
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import LandscapeError

__all__ = [
    "CpuLimits",
    "parse_cpu_max",
    "parse_cfs_quota",
    "cgroup_quota",
    "machine_cpus",
    "default_threads",
    "thread_environment",
    "others_running",
    "machine_busy",
    "sample_others",
    "max_threads",
    "check_threads",
    "omp_threads",
]

# More threads than this many per usable core only make each other wait; far more (--threads
# 99999) crash the OpenMP runtime (SIGSEGV) when torch starts them.
THREADS_PER_CORE = 4

CGROUP_ROOT = Path("/sys/fs/cgroup")
_V1_CPU_DIRS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


@dataclass(frozen=True)
class CpuLimits:
    """What bounds this process's cores: the machine's count, its affinity mask, a CPU quota
    (in cores, None when unlimited)."""

    cpus: int
    affinity: int | None = None
    quota: float | None = None

    @property
    def usable(self) -> int:
        """Cores this process can keep busy: the smallest bound, at least 1.

        A fractional quota is rounded down: a thread more than the quota allows is throttled
        for part of every period, and the other threads then wait for it at each barrier.
        """
        bounds = [self.cpus]
        if self.affinity:
            bounds.append(self.affinity)
        if self.quota is not None:
            bounds.append(math.floor(self.quota))
        return max(1, min(bounds))

    def describe(self) -> str:
        """e.g. `16 cores, 8 in the affinity mask, quota 4.0 cores -> 4 usable`."""
        parts = [f"{self.cpus} cores"]
        if self.affinity and self.affinity != self.cpus:
            parts.append(f"{self.affinity} in the affinity mask")
        if self.quota is not None:
            parts.append(f"quota {self.quota:g} cores")
        return ", ".join(parts) + f" -> {self.usable} usable"


def parse_cpu_max(text: str) -> float | None:
    """Cores allowed by a cgroup v2 `cpu.max` ("QUOTA PERIOD" in microseconds; "max" = none)."""
    fields = text.split()
    if not fields or fields[0] == "max":
        return None
    period = fields[1] if len(fields) > 1 else "100000"
    return _ratio(fields[0], period)


def parse_cfs_quota(quota: str, period: str) -> float | None:
    """Cores allowed by cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` (quota -1 = none)."""
    return _ratio(quota.strip(), period.strip())


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None  # unreadable: not a limit we can honour
    if q <= 0 or p <= 0:
        return None
    return q / p


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _own_cgroups(proc_cgroup: str) -> tuple[str | None, str | None]:
    """(v2 path, v1 cpu-controller path) of this process, from /proc/self/cgroup's text."""
    v2 = v1 = None
    for line in proc_cgroup.splitlines():
        hid, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hid == "0" and controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _parents(path: str) -> list[str]:
    """`/a/b` -> [`a/b`, `a`, ``]: the cgroup and its ancestors, as paths below the mount."""
    parts = [p for p in path.strip("/").split("/") if p and p != ".."]
    return ["/".join(parts[:i]) for i in range(len(parts), -1, -1)]


def cgroup_quota(root: Path = CGROUP_ROOT, proc_cgroup: str | None = None) -> float | None:
    """The tightest CPU quota (in cores) on this process's cgroup and its ancestors, or None.

    Looks at cgroup v2 (`root/<path>/cpu.max`) and v1 (`root/cpu/<path>/cpu.cfs_quota_us`);
    inside a container the own cgroup is usually mounted at `root` itself, which is looked at too.
    `proc_cgroup` is the text of /proc/self/cgroup (read when None).
    """
    if proc_cgroup is None:
        proc_cgroup = _read(Path("/proc/self/cgroup")) or ""
    v2, v1 = _own_cgroups(proc_cgroup)
    found: list[float] = []
    for rel in _parents(v2 or "/"):
        text = _read(root / rel / "cpu.max")
        value = parse_cpu_max(text) if text is not None else None
        if value is not None:
            found.append(value)
    for sub in _V1_CPU_DIRS:
        for rel in _parents(v1 or "/"):
            base = root / sub / rel
            quota, period = _read(base / "cpu.cfs_quota_us"), _read(base / "cpu.cfs_period_us")
            value = parse_cfs_quota(quota, period) if quota is not None and period is not None else None
            if value is not None:
                found.append(value)
    return min(found) if found else None


def machine_cpus() -> CpuLimits:
    """This process's `CpuLimits`, read from the system (cpu count, affinity, cgroup quota)."""
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        affinity = None
    return CpuLimits(cpus=os.cpu_count() or 1, affinity=affinity, quota=cgroup_quota())


def default_threads(limits: CpuLimits, ranks_per_node: int = 1, env: Mapping[str, str] | None = None) -> int | None:
    """Intra-op threads for one process: None (leave torch's) when OMP_NUM_THREADS is set in
    `env`, else the usable cores shared among the node's ranks (at least 1).

    The affinity mask already is this rank's own share when the launcher binds ranks to cores,
    so it bounds the result but is not divided; the machine's cores and the quota are the node's,
    shared by its `ranks_per_node` ranks.

    Example:
        >>> default_threads(CpuLimits(cpus=16, affinity=16), ranks_per_node=2)
        8
        >>> default_threads(CpuLimits(cpus=16, affinity=4), ranks_per_node=2)
        4
        >>> default_threads(CpuLimits(cpus=2), ranks_per_node=3)
        1
        >>> default_threads(CpuLimits(cpus=8), env={"OMP_NUM_THREADS": "2"}) is None
        True
    """
    if env is not None and env.get("OMP_NUM_THREADS", "").strip():
        return None
    shared = min(limits.cpus, math.floor(limits.quota)) if limits.quota is not None else limits.cpus
    per_rank = max(1, shared // max(1, ranks_per_node))
    if limits.affinity:
        per_rank = min(per_rank, limits.affinity)
    return max(1, per_rank)


def others_running(loadavg: str) -> int | None:
    """Tasks running or runnable now besides this one, from the text of /proc/loadavg, or None.

    >>> others_running("0.52 0.40 0.31 3/81 12345")
    2
    """
    try:
        running = int(loadavg.split()[3].split("/")[0])
    except (IndexError, ValueError):
        return None
    return max(running - 1, 0)


def sample_others(samples: int = 5, interval_s: float = 0.01) -> list[int | None]:
    """`others_running` read a few times, `interval_s` apart (None where it cannot be read)."""
    out: list[int | None] = []
    for i in range(samples):
        try:
            out.append(others_running(Path("/proc/loadavg").read_text()))
        except OSError:
            out.append(None)
        if i + 1 < samples:
            time.sleep(interval_s)
    return out


def machine_busy(samples: list[int | None], usable: int) -> bool:
    """Whether other work holds at least half of the `usable` cores now (the median sample);
    not knowing counts as busy, the safe side.

    >>> machine_busy([0, 0, 1, 0, 0], usable=2), machine_busy([1, 2, 1, 1, 0], usable=2)
    (False, True)
    >>> machine_busy([None, None], usable=2)
    True
    """
    known = sorted(s for s in samples if s is not None)
    if not known:
        return True
    return known[len(known) // 2] >= max(1, usable // 2)


def thread_environment(env: Mapping[str, str], threads: int | None = None, busy: bool = True) -> dict[str, str]:
    """Variables an entry point puts into its environment before torch is imported.

    OMP_WAIT_POLICY=PASSIVE on a `busy` machine: OpenMP threads sleep at once when they wait
    instead of spinning (GNU OpenMP spins ~300,000 iterations by default; with ACTIVE, without
    limit); on an idle one GNU's default is left (see the module's measurements). Left out when
    the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT. `threads` (from `--threads`) becomes
    OMP_NUM_THREADS, so that it also holds under MPI and in child processes; it wins over the
    user's OMP_NUM_THREADS, being the more explicit of the two.

    Example:
        >>> thread_environment({"OMP_WAIT_POLICY": "ACTIVE"}, threads=3)
        {'OMP_NUM_THREADS': '3'}
    """
    out: dict[str, str] = {}
    user_set = env.get("OMP_WAIT_POLICY", "").strip() or env.get("GOMP_SPINCOUNT", "").strip()
    if busy and not user_set:
        out["OMP_WAIT_POLICY"] = "PASSIVE"
    if threads is not None:
        out["OMP_NUM_THREADS"] = str(threads)
    return out


def max_threads(limits: CpuLimits) -> int:
    """The most threads one process may ask for: `THREADS_PER_CORE` per usable core."""
    return THREADS_PER_CORE * limits.usable


def check_threads(threads: int, limits: CpuLimits) -> int:
    """`threads` (from --threads), refused in one line above `max_threads(limits)`.

    Example:
        >>> check_threads(8, CpuLimits(cpus=2))
        8
    """
    if threads > max_threads(limits):
        raise LandscapeError(
            f"--threads {threads}: this process may use {limits.describe()}; ask for at most "
            f"{max_threads(limits)} ({THREADS_PER_CORE} per usable core), or leave --threads out"
        )
    return threads


def omp_threads(env: Mapping[str, str], limits: CpuLimits) -> tuple[int | None, str | None]:
    """The user's OMP_NUM_THREADS as a thread count, or (None, why it is ignored).

    The environment is the user's, not an input file: a value that is not a whole number from 1
    to `max_threads(limits)` is ignored with a one-line note (the default threads are used).

    Example:
        >>> omp_threads({"OMP_NUM_THREADS": "2"}, CpuLimits(cpus=2))
        (2, None)
        >>> omp_threads({"OMP_NUM_THREADS": "abc"}, CpuLimits(cpus=2))[1]
        "OMP_NUM_THREADS='abc' is not a whole number from 1 to 8: ignored (the default threads are used)"
    """
    text = env.get("OMP_NUM_THREADS", "")
    if not text.strip():
        return None, None
    value = int(text) if text.strip().isdigit() else 0
    if 1 <= value <= max_threads(limits):
        return value, None
    return None, (
        f"OMP_NUM_THREADS={text!r} is not a whole number from 1 to {max_threads(limits)}: "
        "ignored (the default threads are used)"
    )
