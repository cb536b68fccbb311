#!/usr/bin/env python
"""The paper's skip-connection study at full scale: CIFAR-10, 300 epochs, 51x51 surfaces.

For users with GPUs. It trains ResNet-20/56/110 with and without skip connections and
DenseNet-121 with the paper's recipe (SGD, Nesterov, batch 128, lr 0.1, or 0.01 for the deep nets
without skips, weight decay 5e-4, x0.1 at epochs 150/225/275, plus our one-epoch warm-up), computes filter-normalized 51x51 surfaces over
[-1, 1]^2 with train and test loss, the Hessian's extreme eigenvalues at each centre, the
comparison figure, the interactive report and the metrics table: the same pipeline as
`landscape demo`, with the paper's settings.

Under MPI, ranks split the training (rank r trains nets r, r+N, ...; one GPU per local rank), then
every rank shards each surface's grid; rank 0 writes the files and renders. Everything resumes:
trained checkpoints are reused and surfaces continue where they stopped.

    python scripts/skip_study.py --data-root ~/data/cifar10
    mpirun -n 8 python scripts/skip_study.py --data-root ~/data/cifar10          (8 GPUs)
    mpirun -n 16 -ppn 8 -hosts a,b python scripts/skip_study.py --data-root ...  (2 nodes, MPICH)
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from landscape.cli.edge import lenient_streams, run_command
from landscape.cli.options import Parser, positive_float, positive_int
from landscape.jobs.distributed import import_mpi, launched_under_mpi
from landscape.studies.demo import (
    COLUMNS,
    DemoConfig,
    net_hessian,
    net_surface,
    render,
    table_rows,
    train_net,
)
from landscape.studies.steps import format_table
from landscape.system.device import tune_host_allocator

PROG = "skip_study.py"
PAPER_NETS = (
    "resnet20", "resnet20_noshort", "resnet56", "resnet56_noshort",
    "resnet110", "resnet110_noshort", "densenet121",
)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="cifar10", help="cifar10 (default) or cifar100")
    p.add_argument("--data-root", required=True, help="directory with the CIFAR python-pickle files")
    p.add_argument("--nets", nargs="+", default=list(PAPER_NETS), help="models (default: the paper's)")
    p.add_argument("--epochs", type=positive_int, default=300, help="training epochs (default 300)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="training batch size (default 128)")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="peak learning rate for every net (default: the paper's, 0.1, or 0.01 for "
                        "resnet56/110_noshort; landscape.studies.recipes)")
    p.add_argument("--resolution", type=positive_int, default=51, help="grid points per axis (default 51)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (each rank: local rank %% GPUs)")
    p.add_argument("--curvature", action="store_true", help="also map |lambda_min/lambda_max| (slow)")
    p.add_argument("--workdir", default=".", help="where ckpts/, surfaces/ and plots/ go (default .)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    with lenient_streams():
        args = parse(argv)
        # any failure: one line, and under MPI every rank ends (landscape.cli.edge)
        return run_command(PROG, lambda: _study(args))


def _study(args: argparse.Namespace) -> int:
    tune_host_allocator()
    work = Path(args.workdir)
    cfg = DemoConfig(
        nets=tuple(args.nets), resolution=args.resolution, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, target_loss=None,  # the paper trains a fixed number of epochs, no criterion
        data=args.data, data_root=args.data_root, device=args.device, curvature=args.curvature,
        ckpt_dir=str(work / "ckpts" / "study"), surface_dir=str(work / "surfaces" / "study"),
        plot_dir=str(work / "plots" / "study"),
    )
    mpi = launched_under_mpi() > 1
    comm = import_mpi().COMM_WORLD if mpi else None
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm else (0, 1)
    for net in cfg.nets[rank::size]:  # training: ranks split the nets
        train_net(replace(cfg, quiet=rank != 0 and cfg.quiet), net)
    if comm:
        comm.Barrier()
    surfaces = []
    for net in cfg.nets:  # surfaces: every rank shards every grid
        ckpt = Path(cfg.ckpt_dir) / f"{net}.pt"
        path, _ = net_surface(cfg, net, ckpt, comm="mpi" if mpi else "serial")
        surfaces.append(path)
    if rank == 0:
        for net, path in zip(cfg.nets, surfaces):
            net_hessian(cfg, Path(cfg.ckpt_dir) / f"{net}.pt", path)
        figures, report = render(cfg, surfaces)
        print("\n" + format_table(COLUMNS, table_rows(surfaces)))
        print(f"\nwrote {len(figures)} figures in {cfg.plot_dir}/ and {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
