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

# Parser reports a bad option in one line and exits 2, like `landscape`; run_parsed is the
# command's edge: threads, then any failure as one line (and under mpiexec, every rank ends)
from landscape.cli import run_parsed
from landscape.cli.edge import lenient_streams
from landscape.cli.options import Parser
from landscape.cli.surface import HELP, add_surface_arguments, run_surface

PROG = "surface.py"


def main(argv: Sequence[str] | None = None) -> int:
    with lenient_streams():
        parser = Parser(prog=PROG, description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
        add_surface_arguments(parser)
        parser.set_defaults(_run=run_surface)
        return run_parsed(PROG, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
