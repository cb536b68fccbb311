"""`landscape connect`: train a mode-connecting curve between two checkpoints."""

from __future__ import annotations

import argparse

from .options import (
    add_data_source,
    add_threads,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    unit_interval,
)

HELP = """train a curve of low loss between two checkpoints (Garipov et al. 2018)

Trains the bend of a quadratic Bezier curve (--kind bezier) or the two bends of a 3-segment
polygonal chain (--kind polychain) between the weights of --ckpt and --ckpt2, by SGD on the
loss at one random t in [0, 1] per mini-batch (BatchNorm in train mode). Then measures the
barrier of the curve and of the straight line, max_t [loss(t) - ((1-t) loss(0) + t loss(1))],
on the train split with BatchNorm statistics recomputed at every point, and writes the curve
file (see docs/curves.md). Evaluate it with `landscape surface --curve`.

examples:
  landscape connect --ckpt a.pt --ckpt2 b.pt --out curve.pt
  landscape connect --ckpt a.pt --ckpt2 b.pt --kind polychain --epochs 20 --out chain.pt
  landscape surface --curve curve.pt --x=0:1:21                 (curve and line, 1D)
  landscape surface --curve curve.pt --x=-0.5:1.5:21 --y=-0.5:1.5:21   (the plane of the curve)
"""


def _add_connect(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", required=True, help="checkpoint at t = 0")
    p.add_argument("--ckpt2", required=True, help="checkpoint at t = 1 (the same architecture)")
    p.add_argument("--out", default="curve.pt", help="curve file to write (default curve.pt)")
    p.add_argument("--kind", choices=("bezier", "polychain"), default="bezier",
                   help="quadratic Bezier (one bend, default) or 3-segment polygonal chain (two bends)")
    p.add_argument("--model", default=None, help="architecture, for bare state dicts")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=positive_int, default=10, help="passes over the training data (default 10)")
    t.add_argument("--batch-size", type=positive_int, default=64, help="mini-batch size (default 64)")
    t.add_argument("--lr", type=positive_float, default=0.05, help="SGD learning rate (default 0.05)")
    t.add_argument("--momentum", type=unit_interval, default=0.9, help="SGD momentum, 0 to below 1 (default 0.9)")
    t.add_argument("--weight-decay", type=nonneg_float, default=0.0, help="weight decay on the bends (default 0)")
    t.add_argument("--seed", type=nonneg_int, default=0, help="seed of the shuffles and the t's (default 0)")
    d = p.add_argument_group("data and barrier")
    add_data_source(d)
    d.add_argument("--max-samples", type=positive_int, default=None, help="first N training samples")
    d.add_argument("--points", type=positive_int, default=11,
                   help="t values in [0, 1] at which the barriers are measured (default 11)")
    d.add_argument("--bn-batch-size", type=positive_int, default=256,
                   help="batch size of the BatchNorm re-estimation at each point (default 256)")
    add_threads(d)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_connect(args: argparse.Namespace) -> int:
    from ..errors import LandscapeError
    from ..jobs.curves import ConnectConfig, connect, load_curve

    if args.data_test is not None:
        raise LandscapeError("--data-test has no effect on landscape connect (it trains on the train split); drop it")
    cfg = ConnectConfig(
        ckpt=args.ckpt, ckpt2=args.ckpt2, out=args.out, kind=args.kind, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
        seed=args.seed, points=args.points, bn_batch_size=args.bn_batch_size, max_samples=args.max_samples,
        model=args.model, data=args.data, data_root=args.data_root, quiet=args.quiet,
    )
    path = connect(cfg)
    b = load_curve(path, args.model).barriers
    print(f"wrote {path}: {args.kind} curve, train-loss barrier {b['curve_barrier']:.4g} "
          f"(line {b['line_barrier']:.4g}) over {len(b['t'])} points")
    return 0


COMMANDS = [("connect", HELP, _add_connect, _run_connect)]


# options of `landscape surface` that a curve's surface does not take, and their defaults
_NOT_WITH_CURVE = {
    "ckpt": None, "frames": False, "ckpt2": None, "ckpt3": None, "pca": None, "dirs": None, "same_dir": False,
    "dir_type": None, "norm": None, "ignore": None, "curvature": False, "precision": "fp32",
    "bn": "eval", "loss": "cross_entropy", "strategy": None, "points_per_pass": None,
    "data_test": None, "comm": "auto", "seed": 0, "compile": "auto", "trial": "auto",
}


def run_curve_surface(args: argparse.Namespace) -> int:
    """`landscape surface --curve FILE`: the curve's 1D profile (with the line) or its plane."""
    from ..errors import LandscapeError
    from ..io.storage import read_surface
    from ..jobs.curve_surface import CurveSurfaceConfig, compute_curve_surface

    given = [k for k, default in _NOT_WITH_CURVE.items() if getattr(args, k, default) not in (default, [])]
    if given:
        name = "--" + given[0].replace("_", "-")
        raise LandscapeError(f"{name} does not apply with --curve (a curve surface has its own directions, "
                             "recomputes BatchNorm per point, fp32 cross-entropy); drop it")
    if args.device not in ("auto", "cpu"):
        raise LandscapeError(f"--device {args.device}: a curve surface runs on the CPU; drop --device")
    cfg = CurveSurfaceConfig(
        curve=args.curve, x=args.x or "0:1:21", y=args.y, out=args.out, model=args.model, data=args.data,
        data_root=args.data_root, splits=tuple(s.strip() for s in args.splits.split(",") if s.strip()),
        max_samples=args.max_samples, batch_size=args.batch_size or 512, force=args.force, quiet=args.quiet,
    )
    path = compute_curve_surface(cfg)
    metrics = read_surface(path).metrics
    for split in cfg.splits:
        key = f"curve_barrier_{split}_loss"
        if key in metrics:
            print(f"{split} loss barrier: curve {metrics[key]:.4g} at t={metrics[f'curve_barrier_t_{split}_loss']:.3g}, "
                  f"line {metrics[f'line_barrier_{split}_loss']:.4g} at t={metrics[f'line_barrier_t_{split}_loss']:.3g}")
    print(f"wrote {path}")
    return 0
