"""Computing a surface: checkpoint -> directions -> grid -> evaluate -> store.

`compute_surface(SurfaceConfig(...))` is what `landscape surface` and `scripts/surface.py`
run. It resolves the configuration into a `SurfaceJob` (model, directions, grid, data, file
settings) and runs the job: pending points are evaluated in chunks and appended to the
surface file as they are computed, so a killed run resumes where it stopped.

Example:
    >>> cfg = SurfaceConfig(ckpt="ckpts/resnet20.pt", x="-1:1:21", y="-1:1:21", out="surfaces/r20.h5")
    >>> path = compute_surface(cfg)
"""

from __future__ import annotations

import json
import math
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._version import __version__
from .checkpoint import Checkpoint, build_model, file_sha256, load_checkpoint
from .cpu import cpu_info, time_call
from .data import Dataset, dataset_for_checkpoint
from .device import resolve_device
from .directions import (
    DIR_TYPES,
    IGNORES,
    NORMS,
    Directions,
    directions_from_tensors,
    interpolation_directions,
    pca_directions,
    random_directions,
)
from .errors import LandscapeError
from .evaluate import (
    BN_MODES,
    PRECISIONS,
    EvalPlan,
    LoaderEvaluator,
    PointEvaluator,
    check_loss,
    check_tensor_fits,
    is_batched_split,
    plan_evaluation,
    resolve_loss,
    result_names,
)
from .grid import Axis, Grid
from .lock import SurfaceLock
from .progress import Progress, format_seconds
from .storage import (
    SurfaceWriter,
    create_surface,
    open_surface,
    read_directions,
    update_attrs,
)

__all__ = [
    "SurfaceConfig",
    "SurfaceJob",
    "compute_surface",
    "config_warnings",
    "announce_plan",
    "prepare_job",
    "run_job",
    "select_splits",
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
    pca: tuple[str, ...] = ()
    dirs: str | None = None
    data: str | None = None  # default: the checkpoint's own data set
    data_root: str | None = None
    data_test: str | None = None
    splits: tuple[str, ...] = ("train", "test")
    max_samples: int | None = None
    batch_size: int | None = None
    points_per_pass: int | None = None
    strategy: str | None = None
    compile: str = "auto"  # torch.compile: auto (long CPU conv runs), on, off
    device: str = "auto"
    precision: str = "fp32"
    bn: str = "eval"
    loss: str = "cross_entropy"
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


@dataclass
class SurfaceJob:
    """A resolved surface computation: what to evaluate, where, and how to store it."""

    model: nn.Module
    directions: Directions
    grid: Grid
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]
    out: Path | None
    device: torch.device
    attrs: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    loss: Any = "cross_entropy"
    metric: Any = "accuracy"
    bn_mode: str = "eval"
    bn_data: torch.Tensor | None = None
    precision: str = "fp32"
    strategy: str | None = None
    points_per_pass: int | None = None
    batch_size: int | None = None
    compile: str = "auto"
    trajectory: dict[str, Any] | None = None
    curvature: bool = False  # also store max_eig / min_eig maps (landscape.curvature)
    extra_evaluators: list[Callable[[np.ndarray], dict[str, np.ndarray]]] = field(default_factory=list)
    extra_arrays: list[str] = field(default_factory=list)
    quiet: bool = False
    force: bool = False

    @property
    def array_names(self) -> list[str]:
        names = result_names(self.splits, self.metric is not None)
        if self.curvature:
            names += ["max_eig", "min_eig"]
        return names + list(self.extra_arrays)


# ---------------------------------------------------------------------------------------------
# preparing a job from a configuration


def select_splits(
    ds: Dataset, splits: Sequence[str], max_samples: int | None
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The requested splits, each cut to its first `max_samples` samples."""
    out = {}
    for name in splits:
        x, y = ds.split(name)
        if max_samples is not None:
            x, y = x[:max_samples], y[:max_samples]
        out[name] = (x, y)
    return out


def bn_inputs(cfg: SurfaceConfig, ds: Dataset) -> torch.Tensor | None:
    """With --bn recompute, the inputs BatchNorm statistics are re-estimated on: the training
    samples evaluated (--max-samples applies); else None. (Shared with the MPI workers.)"""
    return select_splits(ds, ("train",), cfg.max_samples)["train"][0] if cfg.bn == "recompute" else None


def _load_data(cfg: SurfaceConfig, ckpt: Checkpoint) -> Dataset:
    return dataset_for_checkpoint(cfg.ckpt, ckpt.data, cfg.data, cfg.data_root, cfg.data_test)


def _default_norm_ignore(cfg: SurfaceConfig) -> tuple[str, str]:
    if cfg.ckpt2:
        return cfg.norm or "none", cfg.ignore or "none"
    if cfg.pca:
        return cfg.norm or "none", cfg.ignore or "biasbn"
    return cfg.norm or "filter", cfg.ignore or "biasbn"


def make_directions(
    cfg: SurfaceConfig,
    model: nn.Module,
    splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
) -> Directions:
    """Directions for a configuration: random, interpolation, PCA, Hessian, or from a file."""
    two_d = cfg.y is not None
    norm, ignore = _default_norm_ignore(cfg)
    if cfg.dirs == "hessian":
        from .hessian import hessian_directions

        return hessian_directions(
            model, splits, device, two_d=two_d, dir_type=cfg.dir_type or "weights",
            norm=cfg.norm or "none", ignore=cfg.ignore or "none", seed=cfg.seed, loss=cfg.loss,
        )
    if cfg.dirs:
        x, y, meta = read_directions(cfg.dirs)
        if two_d and y is None:
            raise LandscapeError(f"--dirs {cfg.dirs} holds only an x direction; drop --y for a 1D curve")
        d = directions_from_tensors(model, x, y if two_d else None, cfg.dirs, meta)
        return d
    if cfg.ckpt2:
        s2 = load_checkpoint(cfg.ckpt2, model=cfg.model).state_dict
        s3 = load_checkpoint(cfg.ckpt3, model=cfg.model).state_dict if cfg.ckpt3 else None
        d = interpolation_directions(model, s2, s3, cfg.dir_type or "states")
        if not two_d:
            d.y = None
        return d
    if cfg.pca:
        snaps = [load_checkpoint(p, model=cfg.model) for p in cfg.pca]
        epochs = [s.epoch if s.epoch is not None else i for i, s in enumerate(snaps)]
        d = pca_directions(
            model, [s.state_dict for s in snaps], cfg.dir_type or "weights", ignore, epochs,
            components=2 if two_d else 1,
        )
        if not two_d:
            d.y = None
        return d
    return random_directions(model, cfg.seed, cfg.dir_type or "weights", norm, ignore, two_d, cfg.same_dir)


def _trajectory_losses(
    model: nn.Module, paths: Sequence[str], cfg: SurfaceConfig, split: tuple[torch.Tensor, torch.Tensor]
) -> np.ndarray:
    """Actual loss of each snapshot along a PCA trajectory (not the plane's interpolated value)."""
    import copy

    from .train import evaluate_model

    losses = []
    probe = copy.deepcopy(model)
    for p in paths:
        probe.load_state_dict(load_checkpoint(p, model=cfg.model).state_dict)
        losses.append(evaluate_model(probe, *split)[0])
    return np.array(losses)


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


def default_out(cfg: SurfaceConfig) -> Path:
    """`surfaces/<checkpoint stem>.h5` (metadata lives inside the file, not in its name)."""
    stem = Path(cfg.ckpt).stem
    return Path("surfaces") / f"{stem}{'_1d' if cfg.y is None else ''}.h5"


def prepare_job(cfg: SurfaceConfig, local_rank: int = 0) -> SurfaceJob:
    """Resolve a configuration: load the checkpoint and data, make the directions and settings."""
    grid = Grid(Axis.parse(cfg.x, "x"), Axis.parse(cfg.y, "y") if cfg.y is not None else None)
    ckpt = load_checkpoint(cfg.ckpt, model=cfg.model)
    model = build_model(ckpt)
    ds = _load_data(cfg, ckpt)
    splits = select_splits(ds, cfg.splits, cfg.max_samples)
    check_tensor_fits(model, next(iter(splits.values()))[0], ckpt.model)
    check_loss(model, cfg.loss, *next(iter(splits.values())))  # before any file exists
    device = resolve_device(cfg.device, local_rank)
    out = Path(cfg.out) if cfg.out else default_out(cfg)
    directions = make_directions(cfg, model, splits, device)
    trajectory = None
    if directions.trajectory is not None:
        trajectory = {k: v for k, v in directions.trajectory.items() if v is not None}
        first = next(iter(splits.values()))
        trajectory["loss"] = _trajectory_losses(model, cfg.pca, cfg, first)
    data_meta = ds.meta()
    data_meta.update({f"n_{s}": int(len(v[0])) for s, v in splits.items()})
    dir_settings = {**directions.meta(), **_sources(cfg)}
    dir_settings.pop("explained_variance", None)
    dir_settings.pop("singular_values", None)
    dir_settings.pop("source", None)  # --dirs as typed; `dirs_file` holds the resolved path
    for key in ("eigenvalues", "residuals", "lanczos_iterations"):  # Hessian directions: floats
        dir_settings.pop(key, None)  # from an iterative solver, not settings to match on resume
    settings = {
        "grid": {"x": grid.x.spec(), "y": grid.y.spec() if grid.y else None},
        "model": ckpt.model,
        "model_kwargs": ckpt.model_kwargs,
        "checkpoint_sha256": file_sha256(cfg.ckpt),
        "data": {k: data_meta.get(k) for k in ("name", "split_seed", "n_train", "n_test") if k in data_meta},
        "splits": list(splits),
        "directions": dir_settings,
        "bn": cfg.bn,
        "precision": cfg.precision,
        "loss": cfg.loss,
        "curvature": bool(cfg.curvature),
    }
    attrs = {
        "software": f"landscape {__version__}",
        "torch_version": torch.__version__,
        "model": ckpt.model,
        "model_kwargs": ckpt.model_kwargs,
        "checkpoint": str(cfg.ckpt),
        "checkpoint_sha256": settings["checkpoint_sha256"],
        "checkpoint_epoch": -1 if ckpt.epoch is None else ckpt.epoch,
        "checkpoint_metrics": ckpt.metrics,
        "dataset": data_meta,
        "splits": list(splits),
        **{f"n_{s}": int(len(v[0])) for s, v in splits.items()},
        "dir_kind": directions.kind,
        "dir_type": directions.dir_type,
        "norm": directions.norm,
        "ignore": directions.ignore,
        "seed": -1 if directions.seed is None else directions.seed,
        "directions": directions.meta(),
        "bn": cfg.bn,
        "precision": cfg.precision,
        "loss": cfg.loss,
    }
    return SurfaceJob(
        model=model,
        directions=directions,
        grid=grid,
        splits=splits,
        out=out,
        device=device,
        attrs=attrs,
        settings=settings,
        loss=cfg.loss,
        metric="accuracy" if cfg.loss == "cross_entropy" else None,
        bn_mode=cfg.bn,
        bn_data=bn_inputs(cfg, ds),
        precision=cfg.precision,
        strategy=cfg.strategy,
        points_per_pass=cfg.points_per_pass,
        batch_size=cfg.batch_size,
        compile=cfg.compile,
        trajectory=trajectory,
        curvature=cfg.curvature,
        quiet=cfg.quiet,
        force=cfg.force,
    )


# ---------------------------------------------------------------------------------------------
# running a job


def _prepare_file(job: SurfaceJob) -> np.ndarray:
    """Create the file, or check an existing one's settings; return the pending flat indices."""
    assert job.out is not None
    if job.out.exists() and not job.force:
        open_surface(job.out, job.settings)
        from .storage import read_directions as _rd

        x, y, _ = _rd(job.out)  # resume with the stored directions, bit for bit
        job.directions.x = _matching(job.out, "x", x, job.directions.x)
        if y is not None and job.directions.y is not None:
            job.directions.y = _matching(job.out, "y", y, job.directions.y)
    else:
        create_surface(
            job.out, job.grid, job.array_names, job.directions, job.attrs, job.settings, job.trajectory
        )
    with SurfaceWriter(job.out) as w:
        return w.pending()


def _matching(
    path: Path, axis: str, stored: Mapping[str, torch.Tensor], fresh: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The stored directions, checked against the model's (same keys, same shapes)."""
    if set(stored) != set(fresh) or any(stored[k].shape != fresh[k].shape for k in fresh):
        raise LandscapeError(
            f"{path}: its {axis} direction does not fit this model (other keys or shapes); the file "
            "is damaged or from another model: use another --out, or --force to start afresh"
        )
    return {k: v.to(fresh[k].dtype) for k, v in stored.items()}


def make_evaluator(job: SurfaceJob, n_points: int) -> tuple[PointEvaluator, EvalPlan]:
    """The evaluator for a job, with the plan chosen for its device and model.

    With `job.curvature`, a curvature evaluator (max/min Hessian eigenvalue per point) is
    added to `job.extra_evaluators`.
    """
    if any(is_batched_split(s) for s in job.splits.values()):  # DataLoaders, dict inputs
        ev = LoaderEvaluator(
            job.model, job.directions, job.splits, job.loss, job.metric, job.bn_mode,
            job.bn_data, job.device, job.precision, job.batch_size,
        )
        return ev, ev.plan
    first = next(iter(job.splits.values()))[0]
    plan = plan_evaluation(
        job.model, job.device, n_points, job.precision, job.bn_mode, job.strategy,
        job.points_per_pass, job.batch_size, sample=first, compile=job.compile,
    )
    ev = PointEvaluator(
        job.model, job.directions, job.splits, plan, job.loss, job.metric, job.bn_mode, job.bn_data
    )
    if job.curvature and not any(getattr(e, "is_curvature", False) for e in job.extra_evaluators):
        from .curvature import CurvatureEvaluator

        job.extra_evaluators.append(CurvatureEvaluator(job))
    return ev, ev.plan


def _evaluate_all(job: SurfaceJob, ev: PointEvaluator, coords: np.ndarray) -> dict[str, np.ndarray]:
    values = ev(coords)
    for extra in job.extra_evaluators:
        values.update(extra(coords))
    return values


def precision_check(job: SurfaceJob, ev: PointEvaluator) -> dict[str, float]:
    """What a reduced precision costs, measured at the centre: its largest relative loss error
    against fp32 and, for bf16 on a CPU without native bf16, its speed against fp32.

    Without native bf16 (an AVX2-only CPU, see `landscape.cpu`) the kernels are emulated and
    were measured 7-12x slower than fp32; the run keeps the precision it was asked for, prints
    one warning with the measured slowdown, and records it in the file (`bf16_slowdown`).
    """
    if job.precision == "fp32":
        return {}
    from dataclasses import replace

    ref_plan = replace(ev.plan, precision="fp32")
    ref = PointEvaluator(job.model, job.directions, job.splits, ref_plan, job.loss, job.metric, job.bn_mode, job.bn_data)
    c = np.zeros((1, job.grid.ndim))
    a, b = ev(c), ref(c)
    found = {
        "precision_max_rel_error": max(
            float(abs(a[k][0] - b[k][0]) / max(abs(b[k][0]), 1e-12)) for k in a if k.endswith("_loss")
        )
    }
    if job.precision == "bf16" and job.device.type == "cpu":
        info = cpu_info()
        if not info.native_bf16:  # both ran once already: these calls are warm
            slowdown = round(time_call(lambda: ev(c)) / max(time_call(lambda: ref(c)), 1e-9), 3)
            found["bf16_slowdown"] = slowdown  # the warning prints the recorded value
            if slowdown > 1.0:
                print(
                    f"warning: bf16 measured {slowdown:.1f}x slower than fp32 at the first point on "
                    f"this CPU ({info.describe()}); --precision fp32 is faster here and exact",
                    file=sys.stderr, flush=True,
                )
    return found


LONG_RUN_POINTS = 10_000  # a grid this large gets a plan line (points, file size) before it starts
LONG_RUN_SECONDS = 300.0  # a run estimated longer gets a time estimate after its first chunk


def plan_line(grid: Grid, n_arrays: int, direction_floats: int) -> str:
    """'planned: 1,002,001 points (1001x1001 grid), surface file about 45 MB'.

    Per point: `n_arrays` float64 results, `computed` (1 byte), `point_seconds` (8), `point_rank`
    (2); plus the float32 directions.
    """
    size = grid.num_points * (8 * n_arrays + 11) + 4 * direction_floats * grid.ndim
    shape = "x".join(str(n) for n in grid.shape)
    return f"planned: {grid.num_points:,} points ({shape} grid), surface file about {_bytes(size)}"


def announce_plan(job: SurfaceJob) -> None:
    """Print `plan_line` before a long run (a grid of `LONG_RUN_POINTS` or more), unless quiet."""
    if not job.quiet and job.grid.num_points >= LONG_RUN_POINTS:
        floats = sum(t.numel() for t in job.directions.x.values())
        print(plan_line(job.grid, len(job.array_names), floats), flush=True)


def estimate_line(points_left: int, seconds_per_point: float) -> str:
    """'estimate: about 8.1 days for 99,999,000 points at 143 points/s (first chunk's speed)'."""
    rate = 1.0 / max(seconds_per_point, 1e-12)
    return (
        f"estimate: about {_duration(points_left * seconds_per_point)} for {points_left:,} points "
        f"at {rate:.3g} points/s (the first chunk's speed; Ctrl-C stops, a rerun resumes)"
    )


def _bytes(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400.0), ("hours", 3600.0), ("minutes", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} seconds"


def chunk_points(seconds_per_point: float, points_per_pass: int, target_seconds: float = 2.0) -> int:
    """Points per chunk: whole passes, about `target_seconds` of work, at most 4096."""
    passes = max(1, math.ceil(target_seconds / max(seconds_per_point * points_per_pass, 1e-9)))
    return int(min(points_per_pass * passes, 4096))


def run_job(job: SurfaceJob) -> Path:
    """Evaluate every pending point of a job (serially) and store the results.

    The run owns `job.out` while it lasts (`landscape.lock`): a second run on the same file is
    refused before it touches it.
    """
    assert job.out is not None
    with SurfaceLock.acquire(job.out):
        return _run_job_locked(job)


def _run_job_locked(job: SurfaceJob) -> Path:
    announce_plan(job)
    pending = _prepare_file(job)
    total = job.grid.num_points
    ev, plan = make_evaluator(job, max(len(pending), 1))
    checked = precision_check(job, ev) if len(pending) else {}
    bar = Progress(total, desc="surface", unit="pt", enabled=not job.quiet, initial=total - len(pending))
    start = time.perf_counter()
    done, chunk = 0, plan.points_per_pass
    while done < len(pending):
        idx = pending[done : done + chunk]
        t0 = time.perf_counter()
        values = _evaluate_all(job, ev, job.grid.coords_of(idx))
        dt = time.perf_counter() - t0
        with SurfaceWriter(job.out) as w:
            w.write_points(idx, values, dt / len(idx), rank=0)
        if done == 0 and not job.quiet and (len(pending) - len(idx)) * dt / len(idx) > LONG_RUN_SECONDS:
            print(estimate_line(len(pending) - len(idx), dt / len(idx)), flush=True)
        done += len(idx)
        bar.update(len(idx))
        chunk = chunk_points(dt / len(idx), plan.points_per_pass)
    bar.enabled = bar.enabled and len(pending) > 0
    bar.close()
    seconds = time.perf_counter() - start
    _finish_run(job, getattr(ev, "plan", plan), len(pending), seconds, ranks=1, precision=checked)
    return job.out


def _finish_run(
    job: SurfaceJob, plan: EvalPlan, points: int, seconds: float, ranks: int,
    precision: Mapping[str, float], run_extra: Mapping[str, Any] | None = None,
) -> None:
    """Record the run (timing, plan, `precision_check`'s findings, `run_extra` such as per-rank point counts)
    and scalar metrics; print the final line."""
    run = {
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
        "points": int(points),
        "seconds": round(seconds, 4),
        "points_per_second": round(points / seconds, 4) if seconds > 0 else 0.0,
        "ranks": ranks,
        "host": socket.gethostname(),
        "device": str(job.device),
        "threads": torch.get_num_threads(),
        "cpu": cpu_info().describe(),
        "plan": plan.meta(),
        **(run_extra or {}),
    }
    attrs: dict[str, Any] = {"plan": plan.meta()}
    attrs.update(precision)
    from .metrics import surface_metrics
    from .storage import read_surface

    surface = read_surface(job.out)
    # a rerun with nothing to do leaves the file (and its plan) untouched, unless the run that
    # computed the points died before recording them (e.g. a full disk at the very end)
    restore = not points and _lacks_final_metadata(surface)
    if points or restore:
        attrs["metrics"] = surface_metrics(surface)
        if restore:
            run["restored_metadata"] = True
        update_attrs(job.out, attrs, append_run=run)
        if restore and not job.quiet:
            print(f"note: {job.out} lacked its final metrics and run record; restored them", flush=True)
    if not job.quiet:
        rate = f"{points / seconds:.3g} points/s" if seconds > 0 and points else "nothing to do"
        on = f" on {ranks} ranks" if ranks > 1 else ""
        print(f"wrote {job.out}: {points} points in {format_seconds(seconds)}{on} ({rate})", flush=True)


def _lacks_final_metadata(surface: Any) -> bool:
    """Whether a file holds computed points but no metrics or run record."""
    return surface.done > 0 and ("metrics" not in surface.attrs or not surface.attrs.get("runs"))


def compute_surface(cfg: SurfaceConfig) -> Path:
    """Compute (or resume) the surface a configuration describes; return the file path."""
    from .distributed import run_distributed, want_mpi

    if want_mpi(cfg.comm):
        return run_distributed(cfg)
    job = prepare_job(cfg)
    return run_job(job)


def settings_json(job: SurfaceJob) -> str:
    return json.dumps(job.settings, sort_keys=True)
