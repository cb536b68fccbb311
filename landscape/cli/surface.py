"""`landscape surface` (and `scripts/surface.py`, which `mpirun` launches)."""

from __future__ import annotations

import argparse

from .options import add_data_source, add_threads, positive_int, seed_int

HELP = """compute (or resume) a loss surface around a checkpoint

examples:
  landscape surface --ckpt ckpts/resnet20.pt --x=-1:1:51 --y=-1:1:51
  landscape surface --ckpt ckpts/resnet20.pt --x=-1:1:51                 (1D curve)
  landscape surface --ckpt a.pt --ckpt2 b.pt --x=-0.5:1.5:401             (interpolation)
  landscape surface --curve curve.pt --x=0:1:21             (along a curve of landscape connect)
  landscape surface --ckpt sgd.pt --pca sgd_trajectory/*.pt --pca adam_trajectory/*.pt --y=-1:1:51
                                                      (two runs' paths on one shared PCA plane)
  landscape surface --ckpt ckpts/mlp_trajectory/*.pt --frames --x=-1:1:11 --y=-1:1:11
                                                      (one frame per snapshot, one file)
  mpirun -n 4 python scripts/surface.py --ckpt ckpts/resnet56.pt --x=-1:1:51 --y=-1:1:51
"""


def add_surface_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `landscape surface`; shared with `scripts/surface.py`."""
    p.add_argument("--ckpt", default=None, nargs="+", metavar="CKPT",
                   help="checkpoint at the centre of the surface (with --frames: one per frame; "
                   "required unless --curve)")
    p.add_argument("--frames", action="store_true",
                   help="one surface per --ckpt (snapshots of one run, in order) in ONE file, on one "
                   "shared plane: directions drawn once (--seed), filter-normalized per frame")
    p.add_argument("--curve", default=None,
                   help="a curve file of `landscape connect`: 1D along it (x = t, with the line beside "
                   "it) or, with --y, on the plane through its ends and bend (docs/curves.md)")
    p.add_argument("--model", default=None, help="architecture, for bare state dicts")
    p.add_argument("--trust-torchscript", action="store_true",
                   help="allow a TorchScript --ckpt (it runs its own code to evaluate)")
    p.add_argument("--x", default=None, help="x grid MIN:MAX:NUM (default -1:1:51; 0:1:21 with --curve)")
    p.add_argument("--y", default=None, help="y grid MIN:MAX:NUM (omit for a 1D curve)")
    g = p.add_argument_group("directions")
    g.add_argument("--dir-type", choices=("weights", "states"), default=None,
                   help="move the parameters only, or BatchNorm running statistics too "
                   "(default: states with --ckpt2, so the line reaches the second checkpoint; else "
                   "weights; states needs --ignore none to move the 1-D statistics)")
    g.add_argument("--norm", choices=("filter", "layer", "weight", "none"), default=None,
                   help="direction normalization (default filter; none for --ckpt2/--pca)")
    g.add_argument("--ignore", choices=("biasbn", "none"), default=None,
                   help="zero 1-D tensors (biases, BatchNorm) (default biasbn; none for --ckpt2)")
    g.add_argument("--seed", type=seed_int, default=0, help="random direction seed (default 0)")
    g.add_argument("--same-dir", action="store_true", help="y direction equal to x")
    g.add_argument("--ckpt2", default=None, help="x = ckpt2 - ckpt (line through two checkpoints)")
    g.add_argument("--ckpt3", default=None, help="y = ckpt3 - ckpt (plane through three checkpoints)")
    g.add_argument("--pca", nargs="+", action="append", default=None, metavar="SNAPSHOT",
                   help="PCA directions of a trajectory (landscape train --save-every); repeat "
                   "--pca once per run (--pca sgd_trajectory/*.pt --pca adam_trajectory/*.pt) "
                   "for one plane fitted to all runs, every run's path drawn on it")
    g.add_argument("--dirs", default=None,
                   help="'hessian' (top two Hessian eigenvectors), or a surface file or the "
                   "paper's direction file whose directions to reuse")
    d = p.add_argument_group("data and evaluation")
    add_data_source(d)
    d.add_argument("--splits", default="train,test", help="train, test or train,test (default)")
    d.add_argument("--max-samples", type=positive_int, default=None, help="first N samples per split")
    d.add_argument("--batch-size", type=positive_int, default=None, help="samples per pass (default: chosen)")
    d.add_argument("--points-per-pass", type=positive_int, default=None,
                   help="grid points per pass (default: chosen per device and model)")
    d.add_argument("--strategy", choices=("sequential", "vmap"), default=None,
                   help="override the engine's choice")
    d.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                   help="torch.compile the model: auto (CPU conv nets, runs over ~5 min), on, off")
    d.add_argument("--trial", choices=("auto", "on", "off"), default="auto",
                   help="time a few candidate plans on the first points and keep the fastest: auto "
                   "(runs over ~30 s, a few percent of the run), on (always), off (the rule's plan)")
    d.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_threads(d)
    d.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default="fp32",
                   help="fp32 (exact, default), or tf32/bf16 (faster; error recorded)")
    d.add_argument("--bn", choices=("eval", "recompute"), default="eval",
                   help="BatchNorm with the checkpoint's statistics, or re-estimated per point")
    d.add_argument("--loss", default="cross_entropy",
                   help="cross_entropy (default; on the logits of a ModelOutput or tuple), mse, "
                   "next_token (a language model's shifted cross-entropy; targets -100 left out), "
                   "or package.module:fn (outputs, targets)")
    d.add_argument("--metric", default="auto",
                   help="auto (accuracy with cross_entropy, else none), accuracy, none, or "
                   "package.module:fn (outputs, targets) -> number correct")
    d.add_argument("--target", default="y",
                   help="the targets array of a --data file of named inputs (input_ids, "
                   "attention_mask, ...: the model is called as model(**inputs)); default y")
    d.add_argument("--curvature", action="store_true",
                   help="also map the largest and smallest Hessian eigenvalue at every point")
    o = p.add_argument_group("output")
    o.add_argument("--out", default=None, help="surface file (default surfaces/<checkpoint>.h5)")
    o.add_argument("--force", action="store_true", help="start afresh even if --out exists")
    o.add_argument("--comm", choices=("auto", "serial", "mpi"), default="auto",
                   help="auto: MPI when launched by mpirun with >1 rank")
    o.add_argument("--quiet", action="store_true", help="no progress bar")


def _one_ckpt(args: argparse.Namespace) -> str:
    """The centre checkpoint (the first frame with --frames); several without --frames: refused."""
    if len(args.ckpt) > 1 and not args.frames:
        from ..errors import LandscapeError

        raise LandscapeError(
            f"--ckpt got {len(args.ckpt)} checkpoints: give one, or add --frames for one surface per "
            "checkpoint (landscapes through training)"
        )
    return args.ckpt[0]


def config_from_args(args: argparse.Namespace):  # noqa: ANN201 (SurfaceConfig, imported lazily)
    """Build the SurfaceConfig from parsed options."""
    from ..errors import LandscapeError
    from ..jobs.compute import SurfaceConfig

    if getattr(args, "curve", None) is not None:
        raise LandscapeError("--curve runs serially: use `landscape surface --curve FILE` (not scripts/surface.py)")
    if args.ckpt is None:
        raise LandscapeError("give --ckpt (the checkpoint at the centre), or --curve for a curve of landscape connect")
    return SurfaceConfig(
        ckpt=_one_ckpt(args),
        frames=tuple(args.ckpt) if args.frames else (),
        model=args.model,
        x=args.x or "-1:1:51",
        y=args.y,
        dir_type=args.dir_type,
        norm=args.norm,
        ignore=args.ignore,
        seed=args.seed,
        same_dir=args.same_dir,
        ckpt2=args.ckpt2,
        ckpt3=args.ckpt3,
        pca=tuple(p for run in args.pca or () for p in run),
        pca_runs=tuple(len(run) for run in args.pca) if args.pca and len(args.pca) > 1 else (),
        dirs=args.dirs,
        data=args.data,
        data_root=args.data_root,
        data_test=args.data_test,
        loss=args.loss,
        metric=args.metric,
        target=args.target,
        curvature=args.curvature,
        splits=tuple(s.strip() for s in args.splits.split(",") if s.strip()),
        max_samples=args.max_samples,
        trust_torchscript=args.trust_torchscript,
        normalization=args.normalization,
        batch_size=args.batch_size,
        points_per_pass=args.points_per_pass,
        strategy=args.strategy,
        compile=args.compile,
        trial=args.trial,
        device=args.device,
        precision=args.precision,
        bn=args.bn,
        out=args.out,
        force=args.force,
        comm=args.comm,
        quiet=args.quiet,
    )


def run_surface(args: argparse.Namespace) -> int:
    import sys

    from ..jobs.compute import compute_surface, config_warnings, run_config

    if getattr(args, "curve", None) is not None:
        from .curves import run_curve_surface

        return run_curve_surface(args)
    cfg = config_from_args(args)
    for note in config_warnings(cfg):
        print(f"landscape surface: warning: {note}", file=sys.stderr)
    if cfg.frames:
        from ..jobs.distributed import executor_for
        from ..jobs.frames import compute_frames

        executor = executor_for(cfg.comm)
        loud = executor.rank == 0 and not cfg.quiet
        path = compute_frames(cfg, executor, run_config, (lambda line: print(line, flush=True)) if loud else None)
        if loud:
            print(f"wrote {path}: {len(cfg.frames)} frames")
        return 0
    compute_surface(cfg)
    return 0


COMMANDS = [("surface", HELP, add_surface_arguments, run_surface)]
