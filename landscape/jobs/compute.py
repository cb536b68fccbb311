"""`landscape surface`: a `SurfaceConfig` (paths and names) resolved into a job, and run.

`compute_surface(SurfaceConfig(...))` is what `landscape surface` and `scripts/surface.py` run.
It loads the checkpoint and data, makes the directions (`landscape.jobs.resolve.make_directions`),
builds the job (`landscape.jobs.job.build_job`) and runs it (`landscape.jobs.runner`) serially or on
every rank of an MPI job: pending points are evaluated in chunks and appended to the surface
file as they are computed, so a killed run resumes where it stopped.

Example:
    >>> cfg = SurfaceConfig(ckpt="ckpts/resnet20.pt", x="-1:1:21", y="-1:1:21", out="surfaces/r20.h5")
    >>> path = compute_surface(cfg)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.directions import DIR_TYPES, IGNORES, NORMS, Directions
from ..core.grid import Axis, Grid
from ..data.dataset import num_samples
from ..data.sources import Dataset, dataset_for_checkpoint
from ..engine.inputs import slice_inputs
from ..engine.losses import check_loss, resolve_loss
from ..engine.planning import BN_MODES, PRECISIONS
from ..errors import LandscapeError
from ..io.checkpoint import (
    Checkpoint,
    build_model,
    file_sha256,
    fill_batchnorm_counters,
    load_checkpoint,
)
from ..system.device import resolve_device
from .distributed import executor_for
from .executor import Executor
from .job import Engine, Plane, Provenance, SurfaceJob, Target, build_job, model_meta
from .resolve import check_data_fits, loss_and_metric, make_directions
from .runner import check_resumable, run_prepared

__all__ = [
    "SurfaceConfig",
    "SurfaceInputs",
    "compute_surface",
    "run_config",
    "run_or_recompute",
    "prepare_job",
    "load_inputs",
    "job_from_inputs",
    "select_splits",
    "default_out",
    "config_warnings",
    "pca_run_names",
]


@dataclass(frozen=True)
class SurfaceConfig:
    """Everything `landscape surface` takes (see `landscape surface --help`)."""

    ckpt: str
    x: str = "-1:1:51"
    y: str | None = None
    out: str | None = None
    model: str | None = None  # architecture for bare state dicts
    dir_type: str | None = None  # default: states for --ckpt2 (BatchNorm statistics move too), else weights
    norm: str | None = None  # default: filter for random directions, none otherwise
    ignore: str | None = None  # default: biasbn for random/PCA directions, none otherwise
    seed: int = 0
    same_dir: bool = False
    ckpt2: str | None = None
    ckpt3: str | None = None
    pca: tuple[str, ...] = ()  # every snapshot, run after run
    frames: tuple[str, ...] = ()  # one surface per checkpoint, all in one file (landscape.jobs.frames)
    pca_runs: tuple[int, ...] = ()  # snapshots per run, for several runs on one plane (empty: one run)
    dirs: str | None = None
    data: str | None = None  # default: the checkpoint's own data set
    data_root: str | None = None
    data_test: str | None = None
    splits: tuple[str, ...] = ("train", "test")
    max_samples: int | None = None
    trust_torchscript: bool = False  # a TorchScript --ckpt runs its own code: only when asked
    normalization: str | None = None  # paper, landscape or MEAN,STD (default: the checkpoint's)
    batch_size: int | None = None
    points_per_pass: int | None = None
    strategy: str | None = None
    compile: str = "auto"  # torch.compile: auto (long CPU conv runs), on, off
    trial: str = "auto"  # time candidate plans on the first points: auto, on, off
    device: str = "auto"
    precision: str = "fp32"
    bn: str = "eval"
    loss: str = "cross_entropy"
    metric: str = "auto"  # auto (accuracy with cross_entropy), accuracy, none, package.module:fn
    target: str = "y"  # the targets array of a --data file of named inputs
    curvature: bool = False
    comm: str = "auto"
    force: bool = False
    quiet: bool = False

    def __post_init__(self) -> None:
        for value, choices, option in (
            (self.dir_type or "weights", DIR_TYPES, "--dir-type"),
            (self.norm or "filter", NORMS, "--norm"),
            (self.ignore or "biasbn", IGNORES, "--ignore"),
            (self.precision, PRECISIONS, "--precision"),
            (self.bn, BN_MODES, "--bn"),
        ):
            if value not in choices:
                raise LandscapeError(f"{option} {value!r} is not one of {', '.join(choices)}")
        kinds = sum(bool(v) for v in (self.ckpt2, self.pca, self.dirs))
        if kinds > 1:
            raise LandscapeError("give only one of --ckpt2/--ckpt3, --pca and --dirs")
        if self.ckpt3 and not self.ckpt2:
            raise LandscapeError("--ckpt3 needs --ckpt2 (the plane through three checkpoints)")
        if self.ckpt3 and self.y is None:
            raise LandscapeError("--ckpt3 makes a plane: give --y as well")
        if self.ckpt2 and not self.ckpt3 and self.y is not None:
            raise LandscapeError(
                "--ckpt2 alone gives a line (one direction): drop --y, or add --ckpt3 for the "
                "plane through three checkpoints"
            )
        if self.max_samples is not None and self.max_samples < 1:
            raise LandscapeError(f"--max-samples must be at least 1, got {self.max_samples}")
        bad = [s for s in self.splits if s not in ("train", "test")]
        if bad or not self.splits:
            raise LandscapeError(f"--splits {','.join(self.splits)!r}: use train, test or train,test")
        if self.data_test is not None and "test" not in self.splits:
            raise LandscapeError(
                f"--data-test {self.data_test} has no effect with --splits {','.join(self.splits)}; "
                "add test to --splits, or drop --data-test"
            )
        resolve_loss(self.loss)  # a bad --loss (or import path) fails before any file is made
        loss_and_metric(self.loss, self.metric)
        if self.target != "y" and not (self.data or "").endswith((".npz", ".pt", ".pth")):
            raise LandscapeError(f"--target {self.target} names an array of a --data .npz/.pt file; give one")
        if self.comm not in ("auto", "serial", "mpi"):
            raise LandscapeError(f"--comm {self.comm!r} is not one of auto, serial, mpi")


def config_warnings(cfg: SurfaceConfig) -> list[str]:
    """One line per setting that silently does less than it says (the CLI prints them)."""
    _, ignore = _default_norm_ignore(cfg)
    notes = []
    if cfg.dir_type == "states" and ignore == "biasbn" and not (cfg.ckpt2 or cfg.dirs):
        notes.append(
            "--dir-type states with --ignore biasbn moves nothing more than --dir-type weights "
            "(BatchNorm running statistics are 1-D and ignored); add --ignore none to move them"
        )
    return notes


@dataclass(frozen=True, eq=False)
class SurfaceInputs:
    """What every rank loads for a configuration: the checkpoint, its model, the data."""

    checkpoint: Checkpoint
    model: nn.Module
    dataset: Dataset
    splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]]
    device: torch.device


def select_splits(
    ds: Dataset, splits: Sequence[str], max_samples: int | None
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The requested splits, each cut to its first `max_samples` samples."""
    out = {}
    for name in splits:
        x, y = ds.split(name)
        if max_samples is not None:
            x, y = slice_inputs(x, 0, max_samples), y[:max_samples]
        out[name] = (x, y)
    return out


def _bn_inputs(cfg: SurfaceConfig, ds: Dataset) -> torch.Tensor | None:
    """With --bn recompute, the inputs BatchNorm statistics are re-estimated on: the training
    samples evaluated (--max-samples applies); else None."""
    return select_splits(ds, ("train",), cfg.max_samples)["train"][0] if cfg.bn == "recompute" else None


def load_inputs(cfg: SurfaceConfig, local_rank: int = 0, check: bool = True) -> SurfaceInputs:
    """Load the checkpoint, build its model, load the data and (with `check`) say in one line
    if they do not fit (MPI workers skip that: rank 0 has checked the same files)."""
    ckpt = load_checkpoint(cfg.ckpt, model=cfg.model, trust_torchscript=cfg.trust_torchscript)
    model = build_model(ckpt)
    if cfg.target != "y":  # a file of named inputs whose targets have another name
        from ..data.userdata import load_user_data

        ds = load_user_data(str(cfg.data), cfg.data_test, target=cfg.target)
    else:
        ds = dataset_for_checkpoint(cfg.ckpt, ckpt.data, cfg.data, cfg.data_root, cfg.data_test,
                                    cfg.normalization)
    splits = select_splits(ds, cfg.splits, cfg.max_samples)
    if check:
        check_data_fits(model, splits)
        check_loss(model, cfg.loss, *next(iter(splits.values())))  # before any file exists
    return SurfaceInputs(ckpt, model, ds, splits, resolve_device(cfg.device, local_rank))


def _default_norm_ignore(cfg: SurfaceConfig) -> tuple[str, str]:
    if cfg.ckpt2:
        return cfg.norm or "none", cfg.ignore or "none"
    if cfg.pca:
        return cfg.norm or "none", cfg.ignore or "biasbn"
    return cfg.norm or "filter", cfg.ignore or "biasbn"


def _directions(cfg: SurfaceConfig, inputs: SurfaceInputs) -> Directions:
    """The directions the options ask for, through the one `make_directions`."""
    two_d = cfg.y is not None
    model = inputs.model
    if cfg.dirs == "hessian":  # --norm / --ignore default to none for Hessian directions
        return make_directions(
            model, "hessian", two_d=two_d, seed=cfg.seed, norm=cfg.norm, ignore=cfg.ignore,
            dir_type=cfg.dir_type or "weights", data=inputs.splits, device=inputs.device, loss=cfg.loss,
        )
    if cfg.dirs:
        return make_directions(model, "file", two_d=two_d, path=cfg.dirs)
    norm, ignore = _default_norm_ignore(cfg)
    if cfg.ckpt2:
        def state(path: str) -> dict[str, torch.Tensor]:  # old files' BatchNorm counters as torch fills them
            ckpt = load_checkpoint(path, model=cfg.model, trust_torchscript=cfg.trust_torchscript)
            return fill_batchnorm_counters(model, ckpt.state_dict)

        target = state(cfg.ckpt2)
        target2 = state(cfg.ckpt3) if cfg.ckpt3 else None
        return make_directions(
            model, "interpolate", two_d=two_d, dir_type=cfg.dir_type or "states", target=target,
            target2=target2,
        )
    if cfg.pca:
        snaps = [load_checkpoint(p, model=cfg.model) for p in cfg.pca]
        for s in snaps:
            s.state_dict = fill_batchnorm_counters(model, s.state_dict)
        return make_directions(
            model, "pca", two_d=two_d, dir_type=cfg.dir_type or "weights", ignore=ignore,
            snapshots=[s.state_dict for s in snaps],
            epochs=[s.epoch if s.epoch is not None else i for i, s in enumerate(snaps)],
            runs=pca_run_names(cfg.pca, cfg.pca_runs) if cfg.pca_runs else None,
        )
    return make_directions(
        model, "random", two_d=two_d, seed=cfg.seed, norm=norm, ignore=ignore,
        dir_type=cfg.dir_type or "weights", same_dir=cfg.same_dir,
    )


def pca_run_names(paths: Sequence[str], counts: Sequence[int]) -> dict[str, int]:
    """Run name -> snapshot count: each run is named after its snapshots' folder (`sgd` for
    `sgd_trajectory/`, as `landscape train --save-every` names it), else `run N`."""
    if sum(counts) != len(paths):
        raise LandscapeError(f"--pca runs hold {sum(counts)} snapshots, {len(paths)} were given")
    starts = np.cumsum([0, *counts[:-1]])
    names = [Path(paths[i]).resolve().parent.name.removesuffix("_trajectory") or f"run {k + 1}"
             for k, i in enumerate(starts)]
    if len(set(names)) < len(names):
        names = [f"run {k + 1}" for k in range(len(counts))]
    return dict(zip(names, counts))


def _trajectory_losses(
    model: nn.Module, paths: Sequence[str], cfg: SurfaceConfig, split: tuple[torch.Tensor, torch.Tensor]
) -> np.ndarray:
    """Actual loss of each snapshot along a PCA trajectory (not the plane's interpolated value)."""
    from .train import evaluate_model

    losses = []
    probe = copy.deepcopy(model)
    for p in paths:
        probe.load_state_dict(load_checkpoint(p, model=cfg.model).state_dict)
        losses.append(evaluate_model(probe, *split)[0])
    return np.array(losses)


def _trajectory(cfg: SurfaceConfig, inputs: SurfaceInputs, d: Directions) -> dict[str, Any] | None:
    if d.trajectory is None:
        return None
    trajectory = {k: v for k, v in d.trajectory.items() if v is not None}
    first = next(iter(inputs.splits.values()))
    trajectory["loss"] = _trajectory_losses(inputs.model, cfg.pca, cfg, first)
    return trajectory


def _sources(cfg: SurfaceConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if cfg.ckpt2:
        out["ckpt2_sha256"] = file_sha256(cfg.ckpt2)
    if cfg.ckpt3:
        out["ckpt3_sha256"] = file_sha256(cfg.ckpt3)
    if cfg.pca:
        out["pca_sha256"] = [file_sha256(p) for p in cfg.pca]
    if cfg.dirs and cfg.dirs != "hessian":
        out["dirs_file"] = str(Path(cfg.dirs).resolve())
    return out


def _provenance(cfg: SurfaceConfig, inputs: SurfaceInputs) -> Provenance:
    ckpt, splits = inputs.checkpoint, inputs.splits
    data_meta = inputs.dataset.meta()
    data_meta.update({f"n_{s}": int(num_samples(v[0])) for s, v in splits.items()})
    model = model_meta(
        inputs.model, ckpt.model, "checkpoint", model_kwargs=ckpt.model_kwargs, checkpoint=str(cfg.ckpt),
        checkpoint_sha256=file_sha256(cfg.ckpt), checkpoint_epoch=-1 if ckpt.epoch is None else ckpt.epoch,
        checkpoint_metrics=ckpt.metrics,
    )
    data_key = {k: data_meta.get(k) for k in ("name", "split_seed", "n_train", "n_test") if k in data_meta}
    return Provenance(model, data_meta, data_key, _sources(cfg))


def default_out(cfg: SurfaceConfig) -> Path:
    """`surfaces/<checkpoint stem>.h5` (metadata lives inside the file, not in its name)."""
    stem = Path(cfg.ckpt).stem
    return Path("surfaces") / f"{stem}{'_1d' if cfg.y is None else ''}.h5"


def job_from_inputs(
    cfg: SurfaceConfig, inputs: SurfaceInputs, directions: Directions | None = None
) -> SurfaceJob:
    """The job of a configuration, from loaded inputs; along `directions` when given (an MPI
    worker gets rank 0's), else along the ones the options ask for (and a PCA trajectory)."""
    grid = Grid(Axis.parse(cfg.x, "x"), Axis.parse(cfg.y, "y") if cfg.y is not None else None)
    trajectory = None
    if directions is None:
        directions = _directions(cfg, inputs)
        trajectory = _trajectory(cfg, inputs, directions)
    _, metric = loss_and_metric(cfg.loss, cfg.metric)
    target = Target(inputs.model, inputs.splits, cfg.loss, metric, cfg.bn, _bn_inputs(cfg, inputs.dataset))
    engine = Engine(
        inputs.device, cfg.precision, cfg.strategy, cfg.points_per_pass, cfg.batch_size, cfg.compile,
        cfg.curvature, cfg.quiet, cfg.trial,
    )
    return build_job(
        target, Plane(directions, grid), engine, _provenance(cfg, inputs),
        out=Path(cfg.out) if cfg.out else default_out(cfg), trajectory=trajectory, force=cfg.force,
        metric_name=cfg.metric if callable(metric) else None,
    )


def prepare_job(cfg: SurfaceConfig, local_rank: int = 0) -> SurfaceJob:
    """Resolve a configuration: load the checkpoint and data, make the directions and settings."""
    Grid(Axis.parse(cfg.x, "x"), Axis.parse(cfg.y, "y") if cfg.y is not None else None)  # bad grids first
    return job_from_inputs(cfg, load_inputs(cfg, local_rank))


def run_config(
    cfg: SurfaceConfig, executor: Executor, lead: Callable[[], SurfaceJob] | None = None
) -> Path:
    """Run a configuration on `executor`'s ranks: rank 0 prepares the job (with `lead`, default
    `prepare_job`) and owns the file; the other ranks load their own model and data meanwhile
    and evaluate along rank 0's directions."""
    rank = executor.local_rank
    run_prepared(
        executor,
        lead or (lambda: prepare_job(cfg, rank)),
        lambda inputs, d: job_from_inputs(cfg, inputs, d),
        lambda: load_inputs(cfg, rank, check=False),
    )
    return Path(cfg.out) if cfg.out else default_out(cfg)


def run_or_recompute(cfg: SurfaceConfig, executor: Executor, say: Callable[[str], None]) -> Path:
    """Run a configuration into a file the caller owns (the demo's): an existing file made with
    the same settings is resumed; one made with other settings (an older demo) is recomputed
    from scratch, with one `say("recomputing FILE: why")`."""

    def lead() -> SurfaceJob:
        job = prepare_job(cfg, executor.local_rank)
        if job.out is not None and job.out.exists():
            try:
                check_resumable(job)
            except LandscapeError as e:
                say(f"recomputing {job.out}: {e}")
                job = job.restarted()
        return job

    return run_config(cfg, executor, lead)


def compute_surface(cfg: SurfaceConfig) -> Path:
    """Compute (or resume) the surface a configuration describes; return the file path.

    Serially, or on every rank of MPI_COMM_WORLD when `cfg.comm` asks for MPI (every rank
    calls this with the same configuration; rank 0 writes the file). With `cfg.frames`, one
    surface per checkpoint in one file (`landscape.jobs.frames.compute_frames`).
    """
    if cfg.frames:
        from .frames import compute_frames

        return compute_frames(cfg, executor_for(cfg.comm), run_config)
    return run_config(cfg, executor_for(cfg.comm))
