"""The user's own data: array files (`.npz`, `.pt`) and data factories named by import path.

`landscape surface --data train.npz --data-test test.npz` reads arrays `x` and `y` from each
file (a file may also hold `x_test`, `y_test`); `--data package.module:factory` calls the
factory with no arguments, on every MPI rank. A factory returns one of:

- a pair `(X, y)` of tensors or arrays (the train split);
- a dict with `x`, `y` and optionally `x_test`, `y_test`;
- a `torch.utils.data.Dataset` of `(input, target)` items (stacked into tensors);
- a `landscape.data.sources.Dataset`.

Floating inputs become float32 (the precision models run in); integer inputs (token ids) stay
int64. Integer targets are class labels (int64); floating targets are regression targets.

Named inputs (a model called as `model(**inputs)`, e.g. a Hugging Face transformer): a file
without an `x` array holds one array per keyword instead (`input_ids`, `attention_mask`, ...)
and the targets as `y`, or under the name `target` gives (`--target labels`); test arrays end
in `_test` (`input_ids_test`, `y_test`). Every array but the targets is an input.

Example:
    >>> np.savez("train.npz", x=np.random.randn(100, 5), y=np.random.randint(0, 3, 100))
    >>> ds = load_user_data("train.npz")
    >>> ds.x_train.shape, ds.num_classes
    (torch.Size([100, 5]), 3)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import LandscapeError
from ..system.hooks import call_factory, import_object, one_line
from .dataset import Dataset, num_samples

__all__ = ["load_user_data", "to_tensor", "stack_dataset", "dataset_from_arrays", "NamedInputsDataset"]

_ARRAY_SUFFIXES = (".npz", ".pt", ".pth")


def load_user_data(
    name: str, test: str | Path | None = None, *, target: str = "y", **kwargs: Any
) -> Dataset:
    """Load `path.npz`, `path.pt` or the result of `package.module:factory` as a Dataset.

    `test` is a second array file holding the test split (`--data-test`); `target` names the
    targets array of a file of named inputs (see the module docstring). Extra keyword
    arguments go to the factory.
    """
    name = str(name)
    if name.endswith(_ARRAY_SUFFIXES):
        arrays = _read_array_file(Path(name))
        if "x" not in arrays or target != "y":
            arrays = _named_inputs(arrays, target, f"data file {name}")
        ds = dataset_from_arrays(arrays, name, source=f"data file {name}")
    elif ":" in name:
        factory = import_object(name, "data factory")
        result = call_factory(factory, f"data factory {name!r}", **kwargs)
        ds = dataset_from_object(result, name)
    else:
        raise LandscapeError(
            f"data {name!r} is neither an array file (.npz, .pt) nor an import path "
            "package.module:factory"
        )
    if test is not None:
        test = str(test)
        if not test.endswith(_ARRAY_SUFFIXES):
            raise LandscapeError(f"--data-test {test!r} must be an array file (.npz or .pt) with x, y")
        arrays = _read_array_file(Path(test))
        if "x" not in arrays or target != "y":
            arrays = _named_inputs(arrays, target, f"data file {test}")
        x_test, y_test = _pair(arrays, f"data file {test}")
        _check_same_inputs(ds.x_train, x_test, name, test)
        ds.x_test, ds.y_test = x_test, y_test
        ds.extra["test"] = test
    return ds


# ---------------------------------------------------------------------------------------------
# array files


def _read_array_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise LandscapeError(f"data file {path} does not exist")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except Exception as error:
            raise LandscapeError(
                f"cannot read data file {path} ({one_line(error)}); "
                "expected np.savez(path, x=..., y=...)"
            ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise LandscapeError(
            f"cannot read data file {path} ({one_line(error)}); expected "
            "torch.save({'x': X, 'y': y}, path) with tensors"
        ) from None
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        return {"x": obj[0], "y": obj[1]}
    if not isinstance(obj, Mapping):
        raise LandscapeError(
            f"data file {path} holds a {type(obj).__name__}; expected a dict with tensors x, y "
            "(torch.save({'x': X, 'y': y}, path))"
        )
    return dict(obj)


def _named_inputs(arrays: Mapping[str, Any], target: str, source: str) -> dict[str, Any]:
    """`{x: {name: array}, y: targets}` (and `x_test`, `y_test`) from a file of named inputs."""
    out: dict[str, Any] = {}
    for suffix in ("", "_test"):
        names = [k for k in arrays if k.endswith("_test") == bool(suffix) and k != f"{target}{suffix}"]
        if not suffix and f"{target}" not in arrays:
            has = ", ".join(sorted(map(str, arrays))) or "none"
            what = "arrays 'x' and 'y'" if target == "y" else f"targets array {target!r}"
            raise LandscapeError(
                f"{source} has no {what} (it has: {has}); save inputs as x and targets as y, or "
                "named inputs (input_ids, attention_mask, ...) beside targets y or --target NAME"
            )
        if f"{target}{suffix}" not in arrays:
            continue
        if not names:
            raise LandscapeError(f"{source} holds only the targets {target}{suffix}; save the inputs beside them")
        out[f"x{suffix}"] = {k[: len(k) - len(suffix)]: arrays[k] for k in names}
        out[f"y{suffix}"] = arrays[f"{target}{suffix}"]
    return out


def _pair(arrays: Mapping[str, Any], source: str, suffix: str = "") -> tuple[Any, torch.Tensor]:
    kx, ky = f"x{suffix}", f"y{suffix}"
    if kx not in arrays or ky not in arrays:
        has = ", ".join(sorted(map(str, arrays))) or "none"
        raise LandscapeError(
            f"{source} has no arrays {kx!r} and {ky!r} (it has: {has}); save inputs as {kx} and "
            f"targets as {ky}, e.g. np.savez(path, {kx}=inputs, {ky}=targets)"
        )
    if isinstance(arrays[kx], Mapping):
        x: Any = {str(k): to_tensor(v, f"{source}: {k}{suffix}", inputs=True) for k, v in arrays[kx].items()}
        sizes = {k: len(v) for k, v in x.items()}
        if len(set(sizes.values())) > 1:
            raise LandscapeError(f"{source}: the input arrays differ in samples ({sizes})")
    else:
        x = to_tensor(arrays[kx], f"{source}: {kx}", inputs=True)
    y = to_tensor(arrays[ky], f"{source}: {ky}", inputs=False)
    if num_samples(x) != len(y):
        raise LandscapeError(f"{source}: {kx} has {num_samples(x)} samples but {ky} has {len(y)}")
    return x, y


def to_tensor(value: Any, what: str, inputs: bool) -> torch.Tensor:
    """A tensor for inputs (float32 or int64) or targets (int64 labels or float32 values)."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
    else:
        try:
            t = torch.as_tensor(np.asarray(value))
        except Exception as error:
            raise LandscapeError(f"{what} is not numeric ({one_line(error)})") from None
    if t.dim() == 0:
        raise LandscapeError(f"{what} is a scalar; expected one row per sample")
    if t.is_floating_point() or t.is_complex():
        return t.to(torch.float32) if t.dtype != torch.float32 else t
    if t.dtype == torch.bool:
        return t.to(torch.float32 if inputs else torch.int64)
    return t.to(torch.int64)


def dataset_from_arrays(arrays: Mapping[str, Any], name: str, source: str) -> Dataset:
    """A Dataset from a mapping with `x`, `y` (and optionally `x_test`, `y_test`)."""
    x, y = _pair(arrays, source)
    x_test = y_test = None
    if "x_test" in arrays or "y_test" in arrays:
        x_test, y_test = _pair(arrays, source, "_test")
        _check_same_inputs(x, x_test, name, name)
    return _dataset(name, x, y, x_test, y_test)


class NamedInputsDataset(Dataset):
    """A Dataset whose inputs are a dict of tensors (`model(**inputs)`): no image metadata."""

    @property
    def in_channels(self) -> int:
        return 0

    @property
    def image_size(self) -> int:
        return 0

    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": self.name, "split_seed": self.split_seed, "num_classes": self.num_classes,
            "inputs": sorted(self.x_train), "n_train": num_samples(self.x_train),
            "n_test": num_samples(self.x_test) if self.x_test is not None else 0,
        }
        meta.update(self.extra)
        return meta


def _dataset(
    name: str,
    x: Any,
    y: torch.Tensor,
    x_test: Any,
    y_test: torch.Tensor | None,
) -> Dataset:
    labels = [t for t in (y, y_test) if t is not None and not t.is_floating_point() and t.numel()]
    num_classes = int(max(int(t.max()) for t in labels) + 1) if labels else 0
    if isinstance(x, Mapping):
        return NamedInputsDataset(
            name=name, x_train=x, y_train=y.contiguous(), x_test=x_test,
            y_test=None if y_test is None else y_test.contiguous(), num_classes=num_classes,
            normalization=None,
        )
    return Dataset(
        name=name, x_train=x.contiguous(), y_train=y.contiguous(),
        x_test=None if x_test is None else x_test.contiguous(),
        y_test=None if y_test is None else y_test.contiguous(),
        num_classes=num_classes, normalization=None,
    )


def _check_same_inputs(x: Any, x_test: Any, name: str, test: str) -> None:
    if isinstance(x, Mapping) or isinstance(x_test, Mapping):
        if not (isinstance(x, Mapping) and isinstance(x_test, Mapping)) or set(x) != set(x_test):
            raise LandscapeError(f"test inputs from {test} are not the named inputs of {name}")
        return
    if tuple(x.shape[1:]) != tuple(x_test.shape[1:]):
        raise LandscapeError(
            f"test inputs from {test} have shape {tuple(x_test.shape[1:])} per sample, the train "
            f"inputs from {name} have {tuple(x.shape[1:])}"
        )


# ---------------------------------------------------------------------------------------------
# factory results


def dataset_from_object(obj: Any, name: str) -> Dataset:
    """Turn what a data factory returned into a Dataset (see the module docstring)."""
    source = f"data factory {name!r}"
    if isinstance(obj, Dataset):
        return obj
    if isinstance(obj, Mapping):
        return dataset_from_arrays(obj, name, source)
    if isinstance(obj, torch.utils.data.DataLoader):
        raise LandscapeError(
            f"{source} returned a DataLoader; on the command line return (X, y) tensors or a "
            "Dataset (pass DataLoaders to landscape.surface in Python)"
        )
    if isinstance(obj, torch.utils.data.Dataset):
        x, y = stack_dataset(obj, source)
        return _dataset(name, x, y, None, None)
    if isinstance(obj, Sequence) and not isinstance(obj, str) and len(obj) == 2:
        return dataset_from_arrays({"x": obj[0], "y": obj[1]}, name, source)
    raise LandscapeError(
        f"{source} returned a {type(obj).__name__}; expected (X, y), a dict with x and y, a "
        "torch Dataset of (input, target) items, or a landscape.data.sources.Dataset"
    )


def stack_dataset(ds: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack a map-style torch Dataset of (input tensor, target) items into two tensors."""
    try:
        n = len(ds)
    except TypeError:
        raise LandscapeError(f"{what} has no length; give a map-style Dataset or (X, y)") from None
    if n == 0:
        raise LandscapeError(f"{what} is empty")
    xs, ys = [], []
    for i in range(n):
        item = ds[i]
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise LandscapeError(
                f"{what}: item {i} is a {type(item).__name__}; expected (input, target) pairs"
            )
        inp, target = item
        if not isinstance(inp, (torch.Tensor, np.ndarray, float, int)):
            raise LandscapeError(
                f"{what}: inputs are {type(inp).__name__}, not tensors; the command line needs "
                "tensor inputs (pass a DataLoader to landscape.surface in Python)"
            )
        xs.append(torch.as_tensor(inp))
        ys.append(torch.as_tensor(target))
    try:
        x, y = torch.stack(xs), torch.stack(ys)
    except RuntimeError as error:
        raise LandscapeError(f"{what}: items differ in shape ({one_line(error)})") from None
    return to_tensor(x, f"{what} inputs", True), to_tensor(y, f"{what} targets", False)
