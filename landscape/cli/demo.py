"""`landscape demo`: the paper's skips-versus-no-skips-versus-DenseNet comparison, end to end."""

from __future__ import annotations

import argparse

from .options import add_threads, nonneg_float, positive_float, positive_int, seed_int

HELP = """reproduce the paper's comparison: ResNets with and without skips, and a DenseNet

Trains (or reuses cached checkpoints of) each net on the built-in digits data to one
convergence criterion (train loss on the whole train split, eval mode, <= --target-loss,
checked after each epoch, at most each net's epoch cap) with each net's recipe (the paper's
lr 0.1, or its lr 0.01 for the deep nets without skips; the table says which, and whether each
net met the criterion), computes filter-normalized 2D surfaces over [-1, 1]^2 with train and
test loss, the Hessian's extreme eigenvalues at each centre, a comparison figure and an
interactive report, then prints a table of metrics read back from the surface files. Then the
paper's second experiment: VGG-9 (--batch-net) trained with a small and a large batch, with and
without weight decay; the raw interpolation between the two minima and a filter-normalized 1D
surface around each, with a table of sharpness numbers (surfaces/demo/batch/,
plots/batch_*.png). The defaults took 17 minutes on a 2-core AMD EPYC (docs/demo.md).

examples:
  landscape demo
  landscape demo --quick                        (tiny grid, few epochs: under a minute)
  landscape demo --study batch                  (only the small- against large-batch study)
  landscape demo --nets resnet20 resnet20_noshort --resolution 51
  landscape demo --data cifar10 --data-root ~/data --device cuda --epochs 300 --study skips
        (the paper's ResNet-56 with and without skips and DenseNet-121, 51x51; on a CPU it
        first says how long that takes: add --max-samples 5000 for a stratified subset)
  landscape demo --data cifar10 --data-root ~/data --ckpt resnet56=model_300.t7 --study skips
        (the paper's own checkpoint in place of training ResNet-56)
"""


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    from ..studies.demo import DEFAULT_NETS, STUDIES

    p.add_argument("--quick", action="store_true", help="3 nets, 3 epochs, 5x5 grid (what CI runs)")
    p.add_argument("--nets", nargs="+", default=list(DEFAULT_NETS), metavar="MODEL",
                   help=f"models to compare (default: {' '.join(DEFAULT_NETS)})")
    p.add_argument("--study", choices=STUDIES, default="all",
                   help="skips: the skip-connection comparison; batch: small against large batch; all (default)")
    p.add_argument("--batch-net", default="vgg9", metavar="MODEL",
                   help="the batch study's net (default: the paper's vgg9; resnet20 takes half the time)")
    p.add_argument("--resolution", type=positive_int, default=None,
                   help="grid points per axis (odd; default 27, on CIFAR the paper's 51)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="cap on training epochs for every net (default: each net's recipe: 40, or 100 for "
                        "resnet56_noshort; the learning-rate schedule spans it)")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="peak learning rate for every net (default: each net's recipe, the paper's: 0.1, or "
                        "0.01 for the deep nets without skips; see landscape.studies.recipes)")
    p.add_argument("--target-loss", type=nonneg_float, default=0.03,
                   help="convergence criterion: stop once the train loss (whole train split, eval mode) "
                        "is at most this (default 0.03; 0: train the full --epochs, no criterion)")
    p.add_argument("--data", default="digits", help="digits (built in), cifar10, cifar100")
    p.add_argument("--data-root", default=None, help="directory with CIFAR python-pickle files")
    p.add_argument("--max-samples", type=positive_int, default=None,
                   help="train and evaluate on a seeded (--seed), class-stratified subset of at most N "
                   "samples per split")
    p.add_argument("--normalization", default=None, metavar="paper|landscape|MEAN,STD",
                   help="input normalization of the built-in image sets (default: ours; the paper's on "
                   "CIFAR-10 when a --ckpt file comes from the paper's code)")
    p.add_argument("--ckpt", nargs="+", default=[], metavar="NET=FILE",
                   help="use this checkpoint for NET instead of training it (the paper's model_300.t7, "
                   "a state dict: NET names its architecture)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_threads(p)
    p.add_argument("--seed", type=seed_int, default=0, help="training seed (default 0)")
    p.add_argument("--curvature", action="store_true", help="also map |lambda_min/lambda_max| over the grid (slow)")
    p.add_argument("--hessian-samples", type=positive_int, default=None,
                   help="training samples for the Hessian (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress output, only the table")


def run_demo_command(args: argparse.Namespace) -> int:
    from ..studies.demo import DemoConfig, run_demo
    from ..studies.study_inputs import parse_given

    cfg = DemoConfig(
        nets=tuple(args.nets), resolution=args.resolution, epochs=args.epochs, lr=args.lr, quick=args.quick,
        target_loss=args.target_loss or None, study=args.study, batch_net=args.batch_net,
        data=args.data, data_root=args.data_root, device=args.device, seed=args.seed,
        curvature=args.curvature, hessian_samples=args.hessian_samples, quiet=args.quiet,
        max_samples=args.max_samples, normalization=args.normalization, given=parse_given(args.ckpt),
    )
    result = run_demo(cfg)
    if args.quiet:
        from ..studies.batch_study import BATCH_COLUMNS
        from ..studies.demo import COLUMNS
        from ..studies.steps import format_table

        if result["rows"]:
            print(format_table(COLUMNS, result["rows"]))
        if "batch" in result:
            print(format_table(BATCH_COLUMNS, result["batch"]["rows"]))
    return 0


COMMANDS = [("demo", HELP, add_demo_arguments, run_demo_command)]
