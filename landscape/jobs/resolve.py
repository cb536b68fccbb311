"""Resolving what a user gives into values a job is built from: models, data splits, directions.

Every entry point goes through these functions: `landscape surface` with paths and names, the
Python API with objects. `load_model` takes an `nn.Module`, a TorchScript or checkpoint file, a
registered name or `package.module:factory`; `as_splits` takes tensors, a torch Dataset, a
DataLoader, a `landscape.data.sources.Dataset`, a dict of named splits or a name/file/import path;
`make_directions` makes random, interpolation, PCA, Hessian or stored directions.

Example:
    >>> net, meta = load_model("resnet20")
    >>> splits, data_meta = as_splits("digits")
    >>> d = make_directions(net, "random", seed=1)
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.directions import (
    Directions,
    directions_from_tensors,
    interpolation_directions,
    pca_directions,
    random_directions,
)
from ..core.grid import Axis
from ..data.sources import Dataset
from ..engine.inputs import check_fits, is_batched_split, slice_inputs, unpack_batch
from ..engine.losses import resolve_loss
from ..errors import LandscapeError
from ..system.hooks import describe, is_torchscript, load_torchscript
from .job import model_meta, tensor_bytes

__all__ = [
    "AxisSpec",
    "ModelLike",
    "DataLike",
    "LossLike",
    "MetricLike",
    "DIRECTION_KINDS",
    "parse_axis",
    "load_model",
    "state_dict_of",
    "as_splits",
    "check_data_fits",
    "bn_data",
    "make_directions",
    "resolve_directions",
    "loss_and_metric",
]

AxisSpec = str | tuple[float, float, int] | Axis
ModelLike = nn.Module | str | Path
DataLike = Any  # see `landscape.api.surface`
LossLike = str | Callable[[Any, torch.Tensor], torch.Tensor]
MetricLike = str | Callable[[Any, torch.Tensor], torch.Tensor] | None
DIRECTION_KINDS = ("random", "interpolate", "pca", "file", "hessian")


def parse_axis(spec: Any, name: str) -> Axis:
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



# ---------------------------------------------------------------------------------------------
# models


def load_model(
    model: ModelLike,
    ckpt: str | Path | Mapping[str, torch.Tensor] | None = None,
    *,
    trust_torchscript: bool = False,
    **model_kwargs: Any,
) -> tuple[nn.Module, dict[str, Any]]:
    """The model to evaluate (in eval mode) and its metadata.

    `model` is an `nn.Module` (copied when `ckpt` is given, so the caller's object is left
    alone), a TorchScript file, a checkpoint file, a registered name or `package.module:factory`
    (called with `model_kwargs`). `ckpt` is a checkpoint or bare state-dict file, or a state dict.

    Example:
        >>> net, meta = load_model("my_nets:build", ckpt="weights.pt", width=8)  # doctest: +SKIP
    """
    from ..io.checkpoint import build_model, load_checkpoint
    from ..models import create_model, is_model_name

    source = "object"
    if isinstance(model, nn.Module):
        net = copy.deepcopy(model) if ckpt is not None else model
        name = _class_name(net)
    elif isinstance(model, (str, Path)):
        text = str(model)
        if Path(text).is_file():
            if is_torchscript(text):
                if not trust_torchscript:  # evaluating it runs the file's own code
                    from ..io.checkpoint import refuse_torchscript

                    raise refuse_torchscript(text)
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
        from ..io.checkpoint import load_into

        state = state_dict_of(ckpt)
        what = "state dict" if isinstance(ckpt, Mapping) else f"checkpoint {ckpt}"
        load_into(net, state, what=what)
    if net is not model:  # the caller's own module keeps its mode (evaluators use eval copies)
        net.eval()
    extra = {"checkpoint": str(ckpt)} if ckpt is not None and not isinstance(ckpt, Mapping) else {}
    return net, model_meta(net, name, source, **extra)


def _class_name(net: nn.Module) -> str:
    return getattr(net, "original_name", None) or type(net).__name__


def state_dict_of(obj: Any) -> dict[str, torch.Tensor]:
    """A state dict from a module, a mapping, or a checkpoint / state-dict / TorchScript file."""
    from ..io.checkpoint import clean_state_dict, load_checkpoint

    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, Mapping):
        inner = obj.get("state_dict")
        return clean_state_dict(dict(inner if isinstance(inner, Mapping) else obj))
    return load_checkpoint(obj, model="<given>").state_dict




# ---------------------------------------------------------------------------------------------
# data


def as_splits(data: DataLike, batch_size: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Named splits for the evaluators, and metadata describing them (for files and resume).

    Each split is `(X, y)` tensors, `(dict or tuple of tensors, y)`, or a DataLoader.
    """
    from ..data.sources import load_dataset

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
        from ..data.userdata import dataset_from_arrays

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

    from ..data.userdata import stack_dataset, to_tensor

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
        "landscape.data.sources.Dataset, a dict of splits, or a dataset name/file/import path"
    )


def _inputs(value: Any, what: str) -> Any:
    from ..data.userdata import to_tensor

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
            digest.update(tensor_bytes(t))
    meta: dict[str, Any] = {"name": name, "samples": samples}
    meta["fingerprint"] = ("loader-" if loaders else "") + digest.hexdigest()[:16]
    return meta


def _leaves(inputs: Any) -> list[torch.Tensor]:
    if isinstance(inputs, Mapping):
        return [t for v in inputs.values() for t in _leaves(v)]
    if isinstance(inputs, (tuple, list)):
        return [t for v in inputs for t in _leaves(v)]
    return [inputs]


def check_data_fits(net: nn.Module, splits: Mapping[str, Any]) -> None:
    """One forward pass on a few samples of each split; a clear line if the data do not fit."""
    for name, value in splits.items():
        if isinstance(value, torch.utils.data.DataLoader):
            batch = next(iter(value), None)
            if batch is None:
                raise LandscapeError(f"split {name!r}: the DataLoader yields no batches")
            inputs, _ = unpack_batch(batch, name)
        else:
            inputs = slice_inputs(value[0], 0, 2)
        check_fits(net, inputs, f"data split {name!r}")


def bn_data(splits: Mapping[str, Any]) -> Any:
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
    epochs: Sequence[int] | None = None,
    runs: Mapping[str, int] | None = None,
    path: str | Path | None = None,
    ckpt: str | Path | Mapping[str, torch.Tensor] | None = None,
    data: Mapping[str, Any] | None = None,
    device: torch.device | str = "cpu",
    loss: Any = "cross_entropy",
) -> Directions:
    """Directions around a model: `random`, `interpolate`, `pca`, `file` or `hessian`.

    - `random`: seeded Gaussian directions, `norm` (default `filter`) and `ignore` (default
      `biasbn`) as in Li et al. (2018);
    - `interpolate`: x = `target` - model (and y = `target2` - model), where targets are
      modules, state dicts or checkpoint files (use `dir_type="states"` with BatchNorm);
    - `pca`: the top two principal components of `snapshots` - model (a training trajectory;
      `epochs` label the snapshots, default 0, 1, ...; `runs`, name -> count, splits them into
      several runs projected onto one shared plane);
    - `file`: the directions stored in a surface file or the paper's direction file `path`;
    - `hessian`: the top Hessian eigenvectors of the `loss` on the splits `data`, on `device`
      (`norm` and `ignore` default to `none`).

    This is the one direction maker: `landscape surface` calls it too.

    Example:
        >>> d = make_directions(net, seed=1)                      # 2D, filter-normalized
        >>> d = make_directions(net, "interpolate", target=other_net, two_d=False)
    """
    net = model if isinstance(model, nn.Module) and ckpt is None else load_model(model, ckpt)[0]
    if kind == "random":
        return random_directions(net, seed, dir_type, norm or "filter", ignore or "biasbn", two_d, same_dir)
    if kind == "interpolate":
        if target is None:
            raise LandscapeError("interpolate directions need target= (a model, state dict or file)")
        second = state_dict_of(target2) if (two_d and target2 is not None) else None
        d = interpolation_directions(net, state_dict_of(target), second, dir_type)
        return d if two_d else replace(d, y=None)
    if kind == "pca":
        states = [state_dict_of(s) for s in snapshots]
        d = pca_directions(net, states, dir_type, ignore or "biasbn", epochs, components=2 if two_d else 1,
                           runs=runs)
        return d if two_d else replace(d, y=None)
    if kind == "file":
        if path is None:
            raise LandscapeError("file directions need path= (a surface file or direction file)")
        from ..io.storage import read_directions

        x, y, meta = read_directions(path)
        if two_d and y is None:
            raise LandscapeError(f"{path} holds only an x direction: compute a 1D curve (no --y, y=None)")
        return directions_from_tensors(net, x, y if two_d else None, str(path), meta)
    if kind == "hessian":
        if not data:
            raise LandscapeError("hessian directions need data= (the splits to take the Hessian on)")
        from ..engine.hessian_directions import hessian_directions

        return hessian_directions(
            net, data, torch.device(device), two_d=two_d, dir_type=dir_type, norm=norm or "none",
            ignore=ignore or "none", seed=seed, loss=loss,
        )
    raise LandscapeError(f"directions kind {kind!r} is not one of {', '.join(DIRECTION_KINDS)}")


def resolve_directions(
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



def loss_and_metric(loss: LossLike, metric: MetricLike) -> tuple[str, MetricLike]:
    """The loss's name and the metric to count: `"auto"` is accuracy with a cross-entropy loss
    (none otherwise), `"none"` is None, `package.module:fn` is imported; `"accuracy"` and
    callables as given. The API and `landscape surface --metric` both resolve here."""
    name, _ = resolve_loss(loss)
    if callable(loss):
        name = describe(loss)
    if metric == "auto":
        metric = "accuracy" if name == "cross_entropy" else None
    elif metric == "none":
        metric = None
    elif isinstance(metric, str) and ":" in metric:
        from ..system.hooks import import_object

        metric = import_object(metric, "metric")
    if isinstance(metric, str) and metric != "accuracy":
        raise LandscapeError(
            f"metric {metric!r}: use 'accuracy', 'none', 'auto', package.module:fn or a callable"
        )
    return name, metric
