"""Where this process runs: the MPI launcher's environment, mpi4py, ranks per node, threads.

`want_mpi(comm)` answers `--comm auto|serial|mpi` (auto: MPI when a launcher started more than
one rank); `import_mpi` imports mpi4py or names the `pip install` that provides it (never a
silent fall back to serial); `layout_of` finds this rank's node-local rank and sets its threads.

Example:
    >>> want_mpi("serial"), rank_threads(2, cpus=16)
    (False, 8)
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import LandscapeError, one_line
from .threads import CpuLimits, default_threads, machine_cpus

__all__ = [
    "MPI_INSTALL_HINT",
    "Layout",
    "RankStopped",
    "import_mpi",
    "launched_under_mpi",
    "launcher_rank",
    "layout_of",
    "mpi_timeout",
    "rank_threads",
    "want_mpi",
]

MPI_INSTALL_HINT = "pip install 'nn-landscape[mpi]' (or pip install mpi4py mpich)"

_LAUNCHER_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS")
_DEFAULT_TIMEOUT = 20.0


def launched_under_mpi() -> int:
    """Number of ranks the MPI launcher started (1 when not under a launcher)."""
    for var in _LAUNCHER_SIZE_VARS[:4]:
        value = os.environ.get(var)
        if value and value.isdigit():
            return int(value)
    return 1


def launcher_rank() -> int:
    """This process's rank as the launcher's environment says (0 when not under a launcher)."""
    for var in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"):
        value = os.environ.get(var)
        if value and value.isdigit():
            return int(value)
    return 0


def want_mpi(comm: str) -> bool:
    """auto: MPI when launched with more than one rank; mpi: always; serial: never."""
    if comm not in ("auto", "serial", "mpi"):
        raise LandscapeError(f"--comm {comm!r} is not one of auto, serial, mpi")
    if comm == "serial":
        return False
    if comm == "mpi":
        return True
    return launched_under_mpi() > 1


class RankStopped(LandscapeError):
    """A worker rank ends because rank 0 reported an error; rank 0 prints it, once."""

    echo = False


def import_mpi() -> Any:
    """`mpi4py.MPI`, or one line naming the `pip install` that provides it."""
    try:
        from mpi4py import MPI
    except Exception as e:  # not installed, or installed without a loadable MPI library
        error = LandscapeError(
            f"MPI was asked for (--comm mpi, or a launcher with several ranks) but mpi4py cannot "
            f"be imported ({one_line(e, with_type=False)}); install it with {MPI_INSTALL_HINT}, or use --comm serial"
        )
        error.echo = launcher_rank() == 0  # every rank fails alike: one line is enough
        raise error from None
    return MPI


def mpi_timeout(env: Mapping[str, str] | None = None) -> float:
    """Seconds of silence after which a rank counts as dead (LANDSCAPE_MPI_TIMEOUT, default 20)."""
    text = (os.environ if env is None else env).get("LANDSCAPE_MPI_TIMEOUT", "").strip()
    if not text:
        return _DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value > 0 and math.isfinite(value)):
        raise LandscapeError(f"LANDSCAPE_MPI_TIMEOUT={text!r} must be a positive number of seconds")
    return value


def rank_threads(
    ranks_per_node: int,
    cpus: int | None = None,
    affinity: int | None = None,
    omp: str | None = None,
    quota: float | None = None,
) -> int | None:
    """Intra-op threads for one rank: None (keep torch's) when OMP_NUM_THREADS is set, else
    the node's usable cores (its count, or a container's CPU `quota` in cores) shared among its
    ranks, at least 1, at most the cores this process may run on (`landscape.system.threads`).

    Example:
        >>> rank_threads(2, cpus=16), rank_threads(3, cpus=2), rank_threads(4, cpus=8, omp="2")
        (8, 1, None)
        >>> rank_threads(2, cpus=16, quota=4.0)
        2
    """
    limits = CpuLimits(cpus=cpus or os.cpu_count() or 1, affinity=affinity, quota=quota)
    return default_threads(limits, ranks_per_node, env={"OMP_NUM_THREADS": omp or ""})


@dataclass(frozen=True)
class Layout:
    """Where this process sits: rank, node-local rank, threads, and (rank 0) everyone's pid."""

    rank: int
    size: int
    local_rank: int
    ranks_per_node: int
    threads: int
    host: str
    ranks: tuple[tuple[str, int, int], ...] = ()  # rank 0 only: (host, pid, threads) per rank

    @property
    def nodes(self) -> int:
        return len({h for h, _, _ in self.ranks}) or 1

    def describe(self, device: Any) -> str:
        """One line for the log, mapping ranks to pids (what a launcher names when one dies)."""
        hosts = sorted({h for h, _, _ in self.ranks})
        where = f"{self.nodes} node{'s' if self.nodes > 1 else ''} ({', '.join(hosts[:4])}"
        where += ", ...)" if len(hosts) > 4 else ")"
        threads = sorted({t for _, _, t in self.ranks})
        text = (
            f"mpi: {self.size} rank{'s' if self.size > 1 else ''} on {where}, "
            f"{'/'.join(map(str, threads))} thread{'s' if threads != [1] else ''} per rank, "
            f"rank 0 on {device}"
        )
        if self.size <= 16:
            many = self.nodes > 1
            text += "; pids " + " ".join(
                f"{r}:{pid}" + (f"@{h}" if many else "") for r, (h, pid, _) in enumerate(self.ranks)
            )
        return text


def layout_of(comm: Any, MPI: Any) -> Layout:
    """Node-local rank and threads per rank (from the communicator split by shared memory)."""
    rank, size = comm.Get_rank(), comm.Get_size()
    node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
    local_rank, per_node = node.Get_rank(), node.Get_size()
    node.Free()
    limits = machine_cpus()
    threads = rank_threads(
        per_node, limits.cpus, limits.affinity, omp=os.environ.get("OMP_NUM_THREADS"), quota=limits.quota
    )
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    host = socket.gethostname()
    everyone = comm.gather((host, os.getpid(), torch.get_num_threads()), root=0)
    return Layout(
        rank, size, local_rank, per_node, torch.get_num_threads(), host,
        tuple(everyone) if rank == 0 else (),
    )
