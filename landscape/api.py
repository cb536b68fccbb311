"""The notebook API: the loss surface of any model on any data, in one call or step by step.

`surface(model, data, ...)` is what `landscape surface` does, for a model and data already in
memory. The model is an `nn.Module`, an import path `package.module:factory`, a registered
name, a checkpoint file or a TorchScript file; the data are `(X, y)` tensors, a torch Dataset,
a DataLoader (used as given, for inputs that are dicts or tuples), a `landscape.data.Dataset`,
a dict of named splits, or a name / file / import path that `load_dataset` understands.

With `out=None` the surface is computed in memory; with `out=path` it is written to an HDF5
file point by point, and calling again with the same arguments resumes it. Either way the
result is a `Surface`: coordinates `x`, `y`, arrays `arrays["train_loss"]` ([nx] or [nx, ny]),
metadata `attrs` (model class, data, directions, loss) and `.plot()`, `.to_html()`.

The separate steps are `load_model`, `make_directions`, `evaluate_points`, `write_surface`
and `read_surface`.

Example:
    >>> import torch, landscape
    >>> X, y = torch.randn(256, 10), torch.randint(0, 3, (256,))
    >>> net = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    >>> s = landscape.surface(net, (X, y), x="-1:1:11", y="-1:1:11")
    >>> s.arrays["train_loss"].shape
    (11, 11)
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import storage
from ._version import __version__
from .data import Dataset
from .directions import (
    Directions,
    directions_from_tensors,
    interpolation_directions,
    pca_directions,
    random_directions,
)
from .errors import LandscapeError
from .evaluate import check_fits, is_batched_split, resolve_loss
from .grid import Axis, Grid
from .hooks import describe, is_torchscript, load_torchscript

__all__ = [
    "Surface",
    "surface",
    "load_model",
    "make_directions",
    "evaluate_points",
    "write_surface",
    "read_surface",
]

AxisSpec = str | tuple[float, float, int] | Axis
ModelLike = nn.Module | str | Path
DataLike = Any  # see `surface`
LossLike = str | Callable[[Any, torch.Tensor], torch.Tensor]
MetricLike = str | Callable[[Any, torch.Tensor], torch.Tensor] | None


@dataclass
class Surface(storage.Surface):
    """A loss surface: coordinates, arrays, metadata, and the directions it was computed along.

    `arrays[name]` has shape [nx] (1D) or [nx, ny] (2D), value [i, j] at (x[i], y[j]).
    `attrs` holds the metadata (`model`, `model_class`, `dataset`, `loss`, `dir_kind`, ...)
    and `attrs["metrics"]` the scalar metrics (centre loss, basin width, ...).
    """

    directions: Directions | None = None

    def save(self, path: str | Path) -> Path:
        """Write this surface to an HDF5 file (see `write_surface`)."""
        return write_surface(path, self)


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
    force: bool = False,
    comm: str = "auto",
    quiet: bool = True,
) -> Surface:
    """The loss surface of `model` on `data` around its current weights.

    Args:
        model: an `nn.Module`, `package.module:factory`, a registered model name, a
            checkpoint or a TorchScript file. Evaluated in eval mode (dropout off).
        data: `(X, y)` tensors or arrays (X may be a dict or tuple of tensors: the model is
            then called as `model(**X)` or `model(*X)`); a torch `Dataset`; a `DataLoader` of
            `(inputs, targets)` batches, used as given; a `landscape.data.Dataset`; a dict of
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
        comm: `"auto"` (MPI when launched by mpiexec with more than one rank), `"serial"`,
            `"mpi"`. Under MPI every rank calls `surface` with the same arguments and an `out`
            path (each rank builds its own model and data); rank 0 writes the file, all ranks
            evaluate, and every rank returns the finished surface.
        precision, strategy, points_per_pass, compile: engine settings as in `landscape surface`.

    Example:
        >>> s = surface(net, (X, y), x="-1:1:21", y="-1:1:21")
        >>> s.arrays["train_loss"].shape, s.metrics["center_train_loss"]
    """
    from .compute import SurfaceJob
    from .device import resolve_device

    grid = Grid(_axis(x, "x"), _axis(y, "y") if y is not None else None)
    net, model_meta = load_model(model, ckpt)
    splits, data_meta = as_splits(data, batch_size)
    _check_data_fits(net, splits)
    dev = resolve_device(device)
    dirs = _resolve_directions(directions, net, grid.ndim, seed, norm, ignore, dir_type)
    loss_name, metric = _loss_and_metric(loss, metric)
    names = [f"{s}_{kind}" for s in splits for kind in (("loss", "acc") if metric else ("loss",))]
    settings = {
        "grid": {"x": grid.x.spec(), "y": grid.y.spec() if grid.y else None},
        "model": model_meta["model"],
        "weights_sha256": model_meta["weights_sha256"],
        "data": data_meta,
        "splits": list(splits),
        "directions": _plain(dirs.meta()),
        "bn": bn,
        "precision": precision,
        "loss": loss_name,
        "metric": describe(metric) if metric is not None else None,
    }
    attrs = {
        "software": f"landscape {__version__}",
        "torch_version": torch.__version__,
        **model_meta,
        "dataset": data_meta,
        "splits": list(splits),
        **{f"n_{s}": n for s, n in data_meta.get("samples", {}).items()},
        "dir_kind": dirs.kind,
        "dir_type": dirs.dir_type,
        "norm": dirs.norm,
        "ignore": dirs.ignore,
        "seed": -1 if dirs.seed is None else dirs.seed,
        "directions": _plain(dirs.meta()),
        "bn": bn,
        "precision": precision,
        "loss": loss_name,
        "metric": settings["metric"],
    }
    job = SurfaceJob(
        model=net, directions=dirs, grid=grid, splits=splits,
        out=Path(out) if out is not None else None, device=dev, attrs=attrs, settings=settings,
        loss=loss, metric=metric, bn_mode=bn, bn_data=_bn_data(splits) if bn == "recompute" else None,
        precision=precision, strategy=strategy, points_per_pass=points_per_pass,
        batch_size=batch_size, compile=compile, quiet=quiet, force=force,
    )
    if out is None:
        return _compute_in_memory(job, names)
    _run_job(job, comm)
    return read_surface(out)


def _compute_in_memory(job: Any, names: Sequence[str]) -> Surface:
    from .compute import chunk_points, make_evaluator
    from .metrics import surface_metrics
    from .progress import Progress

    grid = job.grid
    total = grid.num_points
    ev, plan = make_evaluator(job, total)
    coords = grid.coords_of(np.arange(total))
    values: dict[str, np.ndarray] = {}
    seconds = np.zeros(total)
    bar = Progress(total, desc="surface", unit="pt", enabled=not job.quiet)
    done, chunk = 0, plan.points_per_pass
    while done < total:
        t0 = time.perf_counter()
        part = ev(coords[done : done + chunk])
        for extra in job.extra_evaluators:
            part.update(extra(coords[done : done + chunk]))
        dt = time.perf_counter() - t0
        k = len(next(iter(part.values())))
        for name, v in part.items():
            values.setdefault(name, np.full(total, np.nan))[done : done + k] = v
        seconds[done : done + k] = dt / k
        done += k
        bar.update(k)
        chunk = chunk_points(dt / k, plan.points_per_pass)
    bar.close()
    arrays = {name: values[name].reshape(grid.shape) for name in names if name in values}
    arrays.update({n: v.reshape(grid.shape) for n, v in values.items() if n not in arrays})
    arrays["point_seconds"] = seconds.reshape(grid.shape)
    attrs = {
        "format": storage.SURFACE_FORMAT,
        "version": storage.SURFACE_VERSION,
        "x_spec": grid.x.spec(),
        **({"y_spec": grid.y.spec()} if grid.y is not None else {}),
        "settings": job.settings,
        **job.attrs,
        "plan": plan.meta(),
    }
    result = Surface(
        path="", x=grid.x.coords(), y=grid.y.coords() if grid.y is not None else None,
        arrays=arrays, computed=np.ones(grid.shape, dtype=bool), attrs=attrs,
        directions=job.directions,
    )
    result.attrs["metrics"] = surface_metrics(result)
    return result


def _run_job(job: Any, comm: str) -> Path:
    """Serially through `compute.run_job` (resumable), or sharded over MPI ranks."""
    from . import distributed
    from .compute import run_job

    if job.out is not None and distributed.want_mpi(comm):
        path = distributed.run_job_distributed(job)
        distributed.import_mpi().COMM_WORLD.Barrier()  # rank 0 has recorded the run: all may read
        return path
    return run_job(job)


# ---------------------------------------------------------------------------------------------
# models


def load_model(
    model: ModelLike,
    ckpt: str | Path | Mapping[str, torch.Tensor] | None = None,
    **model_kwargs: Any,
) -> tuple[nn.Module, dict[str, Any]]:
    """The model to evaluate (in eval mode) and its metadata.

    `model` is an `nn.Module` (copied when `ckpt` is given, so the caller's object is left
    alone), a TorchScript file, a checkpoint file, a registered name or `package.module:factory`
    (called with `model_kwargs`). `ckpt` is a checkpoint or bare state-dict file, or a state dict.

    Example:
        >>> net, meta = load_model("my_nets:build", ckpt="weights.pt", width=8)  # doctest: +SKIP
    """
    from .checkpoint import build_model, load_checkpoint
    from .models import create_model, is_model_name

    source = "object"
    if isinstance(model, nn.Module):
        net = copy.deepcopy(model) if ckpt is not None else model
        name = _class_name(net)
    elif isinstance(model, (str, Path)):
        text = str(model)
        if Path(text).is_file():
            if is_torchscript(text):
                net, source = load_torchscript(text), "torchscript"
            else:
                net, source = build_model(load_checkpoint(text, model_kwargs=model_kwargs)), "checkpoint"
        elif ":" in text or is_model_name(text):
            net, source = create_model(text, **model_kwargs), "import path" if ":" in text else "zoo"
        else:
            raise LandscapeError(
                f"model {text!r} is not a file, a registered model (see 'landscape models') or an "
                "import path package.module:factory"
            )
        name = text if source in ("import path", "zoo") else _class_name(net)
    else:
        raise LandscapeError(
            f"model is a {type(model).__name__}; expected a torch.nn.Module, an import path "
            "package.module:factory, a registered model name, or a checkpoint/TorchScript file"
        )
    if ckpt is not None:
        from .checkpoint import load_into

        state = _state_dict_of(ckpt)
        what = "state dict" if isinstance(ckpt, Mapping) else f"checkpoint {ckpt}"
        load_into(net, state, what=what)
    if net is not model:  # the caller's own module keeps its mode (evaluators use eval copies)
        net.eval()
    meta = {
        "model": name,
        "model_class": _class_name(net),
        "model_source": source,
        "n_parameters": int(sum(p.numel() for p in net.parameters())),
        "weights_sha256": weights_sha256(net),
    }
    if ckpt is not None and not isinstance(ckpt, Mapping):
        meta["checkpoint"] = str(ckpt)
    return net, meta


def _class_name(net: nn.Module) -> str:
    return getattr(net, "original_name", None) or type(net).__name__


def _state_dict_of(obj: Any) -> dict[str, torch.Tensor]:
    """A state dict from a module, a mapping, or a checkpoint / state-dict / TorchScript file."""
    from .checkpoint import clean_state_dict, load_checkpoint

    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, Mapping):
        inner = obj.get("state_dict")
        return clean_state_dict(dict(inner if isinstance(inner, Mapping) else obj))
    return load_checkpoint(obj, model="<given>").state_dict


def weights_sha256(net: nn.Module) -> str:
    """Fingerprint of a model's state (keys, shapes, dtypes, bytes): a resumed file must match."""
    h = hashlib.sha256()
    for key, t in net.state_dict().items():
        h.update(f"{key}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()


def _tensor_bytes(t: torch.Tensor) -> bytes:
    flat = t.detach().cpu().contiguous().reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    return flat.view(torch.uint8).numpy().tobytes()


# ---------------------------------------------------------------------------------------------
# data


def as_splits(data: DataLike, batch_size: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Named splits for the evaluators, and metadata describing them (for files and resume).

    Each split is `(X, y)` tensors, `(dict or tuple of tensors, y)`, or a DataLoader.
    """
    from .data import load_dataset

    if isinstance(data, (str, Path)):
        ds = load_dataset(str(data))
        return _dataset_splits(ds, str(data))
    if isinstance(data, Dataset):
        return _dataset_splits(data, data.name)
    if isinstance(data, Mapping) and not {"x", "y"} <= set(data):
        if not data:
            raise LandscapeError("data is an empty dict; give {'train': (X, y), ...}")
        splits = {}
        for name, value in data.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise LandscapeError(
                    f"split name {name!r} must be a word such as 'train' or 'val' (it names the "
                    "arrays, e.g. val_loss)"
                )
            splits[name] = _one_split(value, f"data[{name!r}]", batch_size)
        return splits, _data_meta(splits, "splits")
    if isinstance(data, Mapping):
        from .userdata import dataset_from_arrays

        return _dataset_splits(dataset_from_arrays(data, "arrays", "data"), "arrays")
    split = _one_split(data, "data", batch_size)
    return {"train": split}, _data_meta({"train": split}, _data_name(data))


def _data_name(data: Any) -> str:
    if isinstance(data, torch.utils.data.DataLoader):
        return f"DataLoader({type(data.dataset).__name__})"
    if isinstance(data, (tuple, list)):
        return "tensors"
    return type(data).__name__


def _dataset_splits(ds: Dataset, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    splits = {s: ds.split(s) for s in ds.splits}
    return splits, _data_meta(splits, name)


def _one_split(value: Any, what: str, batch_size: int | None) -> Any:
    from torch.utils.data import DataLoader
    from torch.utils.data import Dataset as TorchDataset

    from .userdata import stack_dataset, to_tensor

    if isinstance(value, DataLoader):
        return value
    if isinstance(value, TorchDataset):
        first = value[0] if hasattr(value, "__len__") and len(value) else None
        if isinstance(first, (tuple, list)) and len(first) == 2 and isinstance(first[0], torch.Tensor):
            return stack_dataset(value, what)
        return DataLoader(value, batch_size=batch_size or 256, shuffle=False)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        inputs, targets = value
        if isinstance(targets, torch.Tensor) and targets.is_floating_point():
            return _inputs(inputs, what), targets  # regression targets as given
        return _inputs(inputs, what), to_tensor(targets, f"{what} targets", inputs=False)
    raise LandscapeError(
        f"{what} is a {type(value).__name__}; expected (X, y), a torch Dataset, a DataLoader, a "
        "landscape.data.Dataset, a dict of splits, or a dataset name/file/import path"
    )


def _inputs(value: Any, what: str) -> Any:
    from .userdata import to_tensor

    if isinstance(value, Mapping):
        return {k: _inputs(v, f"{what} inputs[{k!r}]") for k, v in value.items()}
    if isinstance(value, (tuple, list)) and value and not isinstance(value[0], (int, float)):
        return tuple(_inputs(v, what) for v in value)
    if isinstance(value, torch.Tensor):
        return value  # the user's tensors keep their dtype (a float64 model takes float64)
    return to_tensor(value, f"{what} inputs", inputs=True)  # arrays: float32 / int64


def _data_meta(splits: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Name, samples per split and a fingerprint of in-memory data (a resumed file must match)."""
    samples: dict[str, int] = {}
    digest = hashlib.sha256()
    loaders = False
    for split, value in splits.items():
        if isinstance(value, torch.utils.data.DataLoader):
            loaders = True
            dataset = value.dataset
            samples[split] = len(dataset) if hasattr(dataset, "__len__") else -1
            digest.update(f"{split}:loader:{type(dataset).__name__}:{samples[split]};".encode())
            continue
        inputs, targets = value
        samples[split] = int(len(targets))
        digest.update(f"{split};".encode())
        for t in _leaves(inputs) + [targets]:
            digest.update(f"{tuple(t.shape)}:{t.dtype};".encode())
            digest.update(_tensor_bytes(t))
    meta: dict[str, Any] = {"name": name, "samples": samples}
    meta["fingerprint"] = ("loader-" if loaders else "") + digest.hexdigest()[:16]
    return meta


def _leaves(inputs: Any) -> list[torch.Tensor]:
    if isinstance(inputs, Mapping):
        return [t for v in inputs.values() for t in _leaves(v)]
    if isinstance(inputs, (tuple, list)):
        return [t for v in inputs for t in _leaves(v)]
    return [inputs]


def _check_data_fits(net: nn.Module, splits: Mapping[str, Any]) -> None:
    """One forward pass on a few samples of each split; a clear line if the data do not fit."""
    from .evaluate import _slice, _unpack_batch

    for name, value in splits.items():
        if isinstance(value, torch.utils.data.DataLoader):
            batch = next(iter(value), None)
            if batch is None:
                raise LandscapeError(f"split {name!r}: the DataLoader yields no batches")
            inputs, _ = _unpack_batch(batch, name)
        else:
            inputs = _slice(value[0], 0, 2)
        check_fits(net, inputs, f"data split {name!r}")


def _bn_data(splits: Mapping[str, Any]) -> Any:
    """Data for re-estimating BatchNorm statistics: the `train` split, else the first one."""
    value = splits.get("train", next(iter(splits.values())))
    if is_batched_split(value):
        return value
    return value[0]


# ---------------------------------------------------------------------------------------------
# directions


def make_directions(
    model: ModelLike,
    kind: str = "random",
    *,
    two_d: bool = True,
    seed: int = 0,
    norm: str | None = None,
    ignore: str | None = None,
    dir_type: str = "weights",
    same_dir: bool = False,
    target: Any = None,
    target2: Any = None,
    snapshots: Sequence[Any] = (),
    path: str | Path | None = None,
    ckpt: str | Path | Mapping[str, torch.Tensor] | None = None,
) -> Directions:
    """Directions around a model: `random`, `interpolate`, `pca`, or `file`.

    - `random`: seeded Gaussian directions, `norm` (default `filter`) and `ignore` (default
      `biasbn`) as in Li et al. (2018);
    - `interpolate`: x = `target` - model (and y = `target2` - model), where targets are
      modules, state dicts or checkpoint files (use `dir_type="states"` with BatchNorm);
    - `pca`: the top two principal components of `snapshots` - model (a training trajectory);
    - `file`: the directions stored in a surface file or the paper's direction file `path`.

    Example:
        >>> d = make_directions(net, seed=1)                      # 2D, filter-normalized
        >>> d = make_directions(net, "interpolate", target=other_net, two_d=False)
    """
    net, _ = load_model(model, ckpt)
    if kind == "random":
        return random_directions(
            net, seed, dir_type, norm or "filter", ignore or "biasbn", two_d, same_dir
        )
    if kind == "interpolate":
        if target is None:
            raise LandscapeError("interpolate directions need target= (a model, state dict or file)")
        second = _state_dict_of(target2) if (two_d and target2 is not None) else None
        d = interpolation_directions(net, _state_dict_of(target), second, dir_type)
        if not two_d:
            d.y = None
        return d
    if kind == "pca":
        states = [_state_dict_of(s) for s in snapshots]
        d = pca_directions(net, states, dir_type, ignore or "biasbn")
        if not two_d:
            d.y = None
        return d
    if kind == "file":
        if path is None:
            raise LandscapeError("file directions need path= (a surface file or direction file)")
        x, y, meta = storage.read_directions(path)
        if two_d and y is None:
            raise LandscapeError(f"{path} holds only an x direction; use two_d=False")
        return directions_from_tensors(net, x, y if two_d else None, str(path), meta)
    raise LandscapeError(f"directions kind {kind!r} is not one of random, interpolate, pca, file")


def _resolve_directions(
    directions: Any, net: nn.Module, ndim: int, seed: int, norm: str, ignore: str, dir_type: str
) -> Directions:
    two_d = ndim == 2
    if isinstance(directions, Directions):
        if two_d and directions.y is None:
            raise LandscapeError("the directions are 1D (no y); drop y= for a 1D curve")
        d = directions if two_d or directions.y is None else _without_y(directions)
        own = net.state_dict()
        for key, t in d.x.items():
            if key not in own or tuple(own[key].shape) != tuple(t.shape):
                raise LandscapeError(
                    f"the directions do not match model {_class_name(net)}: tensor {key!r}"
                )
        return d
    if directions == "random":
        return make_directions(net, "random", two_d=two_d, seed=seed, norm=norm, ignore=ignore,
                               dir_type=dir_type)
    if isinstance(directions, (str, Path)) and Path(directions).is_file():
        return make_directions(net, "file", two_d=two_d, path=directions)
    raise LandscapeError(
        f"directions={directions!r}: expected 'random', a Directions (landscape.make_directions) "
        "or an existing surface/direction file"
    )


def _without_y(d: Directions) -> Directions:
    return Directions(d.x, None, d.kind, d.dir_type, d.norm, d.ignore, d.seed, dict(d.extra))


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
    from .compute import SurfaceJob, make_evaluator
    from .device import resolve_device

    pts = np.asarray(coords, dtype=np.float64)
    if pts.ndim == 1:
        pts = pts[None, :] if pts.size <= 2 else pts[:, None]
    if pts.ndim != 2 or pts.shape[1] not in (1, 2) or not len(pts):
        raise LandscapeError(f"coords of shape {np.shape(coords)}: expected [k, 2] or [k, 1] points")
    net, _ = load_model(model, ckpt)
    splits, _ = as_splits(data, batch_size)
    _check_data_fits(net, splits)
    _, metric = _loss_and_metric(loss, metric)
    d = _resolve_directions(directions, net, pts.shape[1], 0, "filter", "biasbn", "weights")
    job = SurfaceJob(
        model=net, directions=d, grid=Grid(Axis(0.0, 0.0, 1)), splits=splits, out=None,
        device=resolve_device(device), loss=loss, metric=metric, bn_mode=bn,
        bn_data=_bn_data(splits) if bn == "recompute" else None, precision=precision,
        batch_size=batch_size, quiet=True,
    )
    ev, _ = make_evaluator(job, len(pts))
    return ev(pts)


def _loss_and_metric(loss: LossLike, metric: MetricLike) -> tuple[str, MetricLike]:
    name, _ = resolve_loss(loss)
    if callable(loss):
        name = describe(loss)
    if metric == "auto":
        metric = "accuracy" if name == "cross_entropy" else None
    if isinstance(metric, str) and metric != "accuracy":
        raise LandscapeError(f"metric {metric!r}: use 'accuracy', a callable, None or 'auto'")
    return name, metric


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
    grid = storage.grid_of(_CoordsOnly(x, y))
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
    for key in ("format", "version", "created", "x_spec", "y_spec", "runs"):
        attrs.pop(key, None)
    seconds = arrays.pop("point_seconds", None)
    arrays.pop("point_rank", None)
    from .lock import SurfaceLock

    with SurfaceLock.acquire(Path(path)):  # never under a run that is writing this file
        path = storage.create_surface(path, grid, list(arrays), d, attrs, settings)
        flat = np.flatnonzero(computed.ravel())
        if len(flat):
            with storage.SurfaceWriter(path) as w:
                values = {k: v.ravel()[flat] for k, v in arrays.items()}
                w.write_points(flat, values, None if seconds is None else seconds.ravel()[flat])
    return Path(path)


@dataclass
class _CoordsOnly:
    x: np.ndarray
    y: np.ndarray | None


def read_surface(path: str | Path) -> Surface:
    """Read a surface file (ours, or the paper's) with its directions when it stores them.

    Example:
        >>> s = read_surface("surfaces/resnet20.h5")
        >>> s.arrays["train_loss"].shape, s.attrs["model"]
    """
    base = storage.read_surface(path)
    values = {f.name: getattr(base, f.name) for f in fields(storage.Surface)}
    directions = None
    if base.source == storage.SURFACE_FORMAT:
        try:
            x, y, meta = storage.read_directions(path)
        except LandscapeError:
            x = None
        if isinstance(x, dict) and x:
            a = base.attrs
            seed = a.get("seed")
            directions = Directions(
                x, y, str(a.get("dir_kind", meta.get("kind", "file"))),
                str(a.get("dir_type", "weights")), str(a.get("norm", "unknown")),
                str(a.get("ignore", "unknown")), None if seed in (None, -1) else int(seed),
            )
    return Surface(**values, directions=directions)


# ---------------------------------------------------------------------------------------------
# small helpers


def _axis(spec: Any, name: str) -> Axis:
    if isinstance(spec, Axis):
        return spec
    if isinstance(spec, str):
        return Axis.parse(spec, name)
    if isinstance(spec, (tuple, list)) and len(spec) == 3:
        lo, hi, num = spec
        if isinstance(num, float) and not num.is_integer():
            raise LandscapeError(f"{name}={spec!r}: the number of points must be an integer")
        return Axis(float(lo), float(hi), int(num))
    raise LandscapeError(
        f"{name}={spec!r}: expected 'MIN:MAX:NUM' (e.g. '-1:1:21'), (min, max, num) or an Axis"
    )


def _plain(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata without large lists (explained variance etc. are stored elsewhere)."""
    return {k: v for k, v in meta.items() if k not in ("explained_variance", "singular_values")}
