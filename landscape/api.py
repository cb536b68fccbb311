"""The notebook API: the loss surface of any model on any data, in one call or step by step.

`surface(model, data, ...)` is what `landscape surface` does, for a model and data already in
memory. The model is an `nn.Module`, an import path `package.module:factory`, a registered
name, a checkpoint file or a TorchScript file; the data are `(X, y)` tensors, a torch Dataset,
a DataLoader (used as given, for inputs that are dicts or tuples), a `landscape.data.sources.Dataset`,
a dict of named splits, or a name / file / import path that `load_dataset` understands.

With `out=None` the surface is computed in memory; with `out=path` it is written to an HDF5
file point by point, and calling again with the same arguments resumes it. Either way the
result is a `Surface`: coordinates `x`, `y`, arrays `arrays["train_loss"]` ([nx] or [nx, ny]),
metadata `attrs` (model class, data, directions, loss); `landscape.plot_surface(s)` draws it,
`landscape.write_report([s], path)` writes its report and `write_surface(path, s)` its file.

The separate steps are `load_model`, `make_directions` (both in `landscape.jobs.resolve`, which
`landscape surface` uses too), `evaluate_points`, `write_surface` and `read_surface`. The job
itself is built by `landscape.jobs.job.build_job` and run by `landscape.jobs.runner`, as for the CLI.

Example:
    >>> import torch, landscape
    >>> X, y = torch.randn(256, 10), torch.randint(0, 3, (256,))
    >>> net = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    >>> s = landscape.surface(net, (X, y), x="-1:1:11", y="-1:1:11")
    >>> s.arrays["train_loss"].shape
    (11, 11)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .core.directions import Directions
from .core.grid import Axis, Grid
from .core.loss_surface import Surface, base_attrs
from .errors import LandscapeError
from .io import storage
from .jobs.distributed import executor_for
from .jobs.job import Engine, Plane, Provenance, Record, SurfaceJob, Target, build_job
from .jobs.resolve import (
    AxisSpec,
    DataLike,
    LossLike,
    MetricLike,
    ModelLike,
    as_splits,
    bn_data,
    check_data_fits,
    load_model,
    loss_and_metric,
    make_directions,
    parse_axis,
    resolve_directions,
)
from .jobs.runner import compute_in_memory, make_evaluator, run_job
from .system.device import resolve_device
from .system.hooks import describe
from .system.waiting import warn_if_spinning

__all__ = [
    "Surface",
    "surface",
    "load_model",
    "make_directions",
    "evaluate_points",
    "write_surface",
    "read_surface",
]


# ---------------------------------------------------------------------------------------------
# the one call


def surface(
    model: ModelLike,
    data: DataLike,
    x: AxisSpec = "-1:1:21",
    y: AxisSpec | None = None,
    directions: str | Path | Directions = "random",
    *,
    loss: LossLike = "cross_entropy",
    metric: MetricLike = "auto",
    out: str | Path | None = None,
    seed: int = 0,
    norm: str = "filter",
    ignore: str = "biasbn",
    dir_type: str = "weights",
    device: str = "auto",
    bn: str = "eval",
    batch_size: int | None = None,
    ckpt: str | Path | Mapping[str, torch.Tensor] | None = None,
    precision: str = "fp32",
    strategy: str | None = None,
    points_per_pass: int | None = None,
    compile: str = "auto",
    trial: str = "auto",
    force: bool = False,
    comm: str = "auto",
    quiet: bool = True,
    trust_torchscript: bool = False,
) -> Surface:
    """The loss surface of `model` on `data` around its current weights.

    Args:
        model: an `nn.Module`, `package.module:factory`, a registered model name, a
            checkpoint or a TorchScript file. Evaluated in eval mode (dropout off).
        data: `(X, y)` tensors or arrays (X may be a dict or tuple of tensors: the model is
            then called as `model(**X)` or `model(*X)`); a torch `Dataset`; a `DataLoader` of
            `(inputs, targets)` batches, used as given; a `landscape.data.sources.Dataset`; a dict of
            named splits such as `{"train": (X, y), "test": loader}`; or a name, file or import
            path as on the command line (`"digits"`, `"data.npz"`, `"pkg.mod:factory"`).
            Single data become the split `train` (arrays `train_loss`, `train_acc`).
        x, y: grid axes as `"MIN:MAX:NUM"`, `(min, max, num)` or an `Axis`; no `y` for a 1D curve.
        directions: `"random"` (seeded, normalized by `norm`, 1-D tensors handled by `ignore`),
            a `Directions` (from `make_directions`), or a surface/direction file to reuse.
        loss: `"cross_entropy"`, `"mse"`, a callable `(outputs, targets) -> loss` (a mean or one
            value per sample) or an import path `package.module:fn`.
        metric: `"accuracy"`, a callable `(outputs, targets) -> number correct`, `None` (no
            `*_acc` arrays), or `"auto"` (accuracy with cross-entropy, else none).
        out: None to compute in memory; a path to write an HDF5 surface file, resumed when it
            exists (with `force=True` started afresh).
        bn: `"eval"` (the model's BatchNorm statistics) or `"recompute"` (re-estimated on the
            first split at every point).
        ckpt: weights to load into the model first (a checkpoint or bare state-dict file, or a
            state dict); the model passed in is not changed.
        trust_torchscript: allow `model` to be a TorchScript file; evaluating one runs the
            file's own code, so it is refused unless set.
        comm: `"auto"` (MPI when launched by mpiexec with more than one rank), `"serial"`,
            `"mpi"`. Under MPI every rank calls `surface` with the same arguments and an `out`
            path (each rank builds its own model and data); rank 0 writes the file, all ranks
            evaluate, and every rank returns the finished surface.
        precision, strategy, points_per_pass, compile, trial: engine settings as in
            `landscape surface` (`trial`: time candidate plans on the first points, "auto",
            "on" or "off"; `strategy` forces a plan).

    Example:
        >>> s = surface(net, (X, y), x="-1:1:21", y="-1:1:21")
        >>> s.arrays["train_loss"].shape, s.metrics["center_train_loss"]
    """
    grid = Grid(parse_axis(x, "x"), parse_axis(y, "y") if y is not None else None)
    net, model_meta = load_model(model, ckpt, trust_torchscript=trust_torchscript)
    splits, data_meta = as_splits(data, batch_size)
    check_data_fits(net, splits)
    dev = resolve_device(device)
    if dev.type == "cpu":
        warn_if_spinning()
    dirs = resolve_directions(directions, net, grid.ndim, seed, norm, ignore, dir_type)
    loss_name, metric = loss_and_metric(loss, metric)
    target = Target(net, splits, loss, metric, bn, bn_data(splits) if bn == "recompute" else None)
    engine = Engine(dev, precision, strategy, points_per_pass, batch_size, compile, quiet=quiet, trial=trial)
    sources = {}
    if isinstance(directions, (str, Path)) and directions != "random":
        sources["dirs_file"] = str(Path(directions).resolve())
    job = build_job(
        target, Plane(dirs, grid), engine, Provenance(model_meta, data_meta, data_meta, sources),
        out=out, loss_name=loss_name, metric_name=describe(metric) if metric is not None else None,
        force=force,
    )
    if out is None:
        return compute_in_memory(job)
    executor = executor_for(comm)
    run_job(job, executor)
    executor.sync()  # rank 0 has recorded the run: every rank may read the file
    return read_surface(out)


# ---------------------------------------------------------------------------------------------
# evaluating given points


def evaluate_points(
    model: ModelLike,
    directions: Directions,
    data: DataLike,
    coords: Any,
    *,
    loss: LossLike = "cross_entropy",
    metric: MetricLike = "auto",
    device: str = "auto",
    bn: str = "eval",
    batch_size: int | None = None,
    precision: str = "fp32",
    ckpt: str | Path | Mapping[str, torch.Tensor] | None = None,
) -> dict[str, np.ndarray]:
    """Loss (and metric) at the coordinates `coords` ([k, 2] or [k, 1], or one point (a, b)).

    Returns `{split}_loss` (and `{split}_acc`, in percent) arrays of length k.

    Example:
        >>> d = make_directions(net, seed=0)
        >>> evaluate_points(net, d, (X, y), [[0.0, 0.0], [0.5, -0.25]])["train_loss"]
    """
    pts = np.asarray(coords, dtype=np.float64)
    if pts.ndim == 1:
        pts = pts[None, :] if pts.size <= 2 else pts[:, None]
    if pts.ndim != 2 or pts.shape[1] not in (1, 2) or not len(pts):
        raise LandscapeError(f"coords of shape {np.shape(coords)}: expected [k, 2] or [k, 1] points")
    net, _ = load_model(model, ckpt)
    splits, _ = as_splits(data, batch_size)
    check_data_fits(net, splits)
    _, metric = loss_and_metric(loss, metric)
    d = resolve_directions(directions, net, pts.shape[1], 0, "filter", "biasbn", "weights")
    target = Target(net, splits, loss, metric, bn, bn_data(splits) if bn == "recompute" else None)
    engine = Engine(resolve_device(device), precision, batch_size=batch_size, quiet=True)
    job = SurfaceJob(target, Plane(d, Grid(Axis(0.0, 0.0, 1))), engine, Record(None))
    evaluate, _ = make_evaluator(job, len(pts))
    return evaluate(pts)


# ---------------------------------------------------------------------------------------------
# files


def write_surface(path: str | Path, surface: Any, directions: Directions | None = None) -> Path:
    """Write a surface (a `Surface`, or any object with `x`, `y`, `arrays`) to an HDF5 file.

    The file follows the schema of `landscape surface` (storage.py), so the CLI can plot it,
    summarize it and resume it. Points that are not computed (`computed` false, or NaN losses
    when there is no `computed`) stay pending. An existing surface file is replaced, unless
    another run is writing it (refused); a file of another kind is refused.

    Example:
        >>> s = surface(net, (X, y), y="-1:1:21")
        >>> write_surface("surfaces/mine.h5", s)
    """
    x = np.asarray(surface.x, dtype=np.float64)
    y = None if getattr(surface, "y", None) is None else np.asarray(surface.y, dtype=np.float64)
    grid = Grid.from_coords(x, y)
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in dict(surface.arrays).items()}
    for k, v in arrays.items():
        if v.shape != grid.shape:
            raise LandscapeError(f"array {k!r} has shape {v.shape}; the grid's is {grid.shape}")
    computed = getattr(surface, "computed", None)
    if computed is None:
        losses = [v for k, v in arrays.items() if k.endswith("_loss")]
        computed = np.isfinite(losses[0]) if losses else np.ones(grid.shape, dtype=bool)
    computed = np.asarray(computed, dtype=bool)
    d = directions or getattr(surface, "directions", None) or Directions({}, None, kind="unknown")
    attrs = dict(getattr(surface, "attrs", {}) or {})
    settings = attrs.pop("settings", {}) or {}
    for key in (*base_attrs(grid, settings), "created", "runs"):  # the new file's own
        attrs.pop(key, None)
    seconds = arrays.pop("point_seconds", None)
    arrays.pop("point_rank", None)
    from .io.lock import SurfaceLock

    with SurfaceLock.acquire(Path(path)):  # never under a run that is writing this file
        path = storage.create_surface(path, grid, list(arrays), d, attrs, settings)
        flat = np.flatnonzero(computed.ravel())
        if len(flat):
            with storage.SurfaceWriter(path) as w:
                values = {k: v.ravel()[flat] for k, v in arrays.items()}
                w.write_points(flat, values, None if seconds is None else seconds.ravel()[flat])
    return Path(path)


def read_surface(path: str | Path) -> Surface:
    """Read a surface file (ours, or the paper's) with its directions when it stores them.

    Example:
        >>> s = read_surface("surfaces/resnet20.h5")
        >>> s.arrays["train_loss"].shape, s.attrs["model"]
    """
    base = storage.read_surface(path)
    if base.source != storage.SURFACE_FORMAT:
        return base
    try:
        x, y, meta = storage.read_directions(path)
    except LandscapeError:
        return base
    if not (isinstance(x, dict) and x):
        return base
    a = base.attrs
    seed = a.get("seed")
    directions = Directions(
        x, y, str(a.get("dir_kind", meta.get("kind", "file"))), str(a.get("dir_type", "weights")),
        str(a.get("norm", "unknown")), str(a.get("ignore", "unknown")), None if seed in (None, -1) else int(seed),
    )
    return replace(base, directions=directions)

