"""Serial and MPI execution behind one small interface (MPI arrives with the scale-out work)."""

from __future__ import annotations

import os

from .errors import LandscapeError

__all__ = ["want_mpi", "launched_under_mpi", "run_distributed"]

_LAUNCHER_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS")


def launched_under_mpi() -> int:
    """Number of ranks the MPI launcher started (1 when not under a launcher)."""
    for var in _LAUNCHER_SIZE_VARS[:4]:
        value = os.environ.get(var)
        if value and value.isdigit():
            return int(value)
    return 1


def want_mpi(comm: str) -> bool:
    """auto: MPI when launched with more than one rank; mpi: always; serial: never."""
    if comm not in ("auto", "serial", "mpi"):
        raise LandscapeError(f"--comm {comm!r} is not one of auto, serial, mpi")
    if comm == "serial":
        return False
    if comm == "mpi":
        return True
    return launched_under_mpi() > 1


def run_distributed(cfg):  # noqa: ANN001, ANN201
    raise LandscapeError("MPI sharding is not available in this build; run with --comm serial")
