#!/usr/bin/env python
"""Compute (or resume) a loss surface: the entry point `mpirun` launches.

Same options as `landscape surface` (see `python scripts/surface.py --help`). Under an MPI
launcher with more than one rank (or with --comm mpi) the grid is sharded over the ranks and
rank 0 writes the one surface file; otherwise it runs serially.

Examples:
    mpiexec -n 2 python scripts/surface.py --ckpt ckpts/resnet20.pt --x=-1:1:51 --y=-1:1:51
    mpirun -n 8 -ppn 4 -hosts a,b python scripts/surface.py --ckpt ckpts/resnet56.pt \
        --x=-1:1:51 --y=-1:1:51 --out surfaces/resnet56.h5            (MPICH: 2 nodes x 4 GPUs)
    mpirun -n 8 --map-by ppr:4:node --host a:4,b:4 python scripts/surface.py ...   (Open MPI)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

# Parser reports a bad option in one line and exits 2, like `landscape`
from landscape.cli import Parser, thread_settings
from landscape.cli.surface import HELP, add_surface_arguments, config_from_args
from landscape.errors import LandscapeError
from landscape.text import printable

PROG = "surface.py"


def main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(prog=PROG, description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_surface_arguments(parser)
    args = parser.parse_args(argv)
    with thread_settings(args.threads):  # before torch is imported: OMP_WAIT_POLICY, threads
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from landscape.compute import compute_surface
    from landscape.device import tune_host_allocator

    tune_host_allocator()
    try:
        compute_surface(config_from_args(args))
    except LandscapeError as e:
        if getattr(e, "echo", True):  # a worker stopped by rank 0's error stays quiet
            print(f"{PROG}: error: {printable(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
