"""Adapting a user's data to the model: splits given as DataLoaders or structured inputs.

A user's net may take a dict (`model(**inputs)`), a tuple (`model(*inputs)`) or a tensor, and
its data may come as a DataLoader used as given. These helpers call the model on any of them,
move and cut such inputs, and check in one line, before any work, that the data fit the model.

Example:
    >>> check_fits(net, {"tokens": x[:2]}, "data split 'train'")   # one line if they do not fit
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from ..data.dataset import num_samples
from ..errors import LandscapeError

__all__ = [
    "is_batched_split",
    "call_model",
    "move_to",
    "describe_inputs",
    "slice_inputs",
    "take_row",
    "TensorBatches",
    "unpack_batch",
    "check_fits",
    "does_not_fit",
    "model_name",
]


def is_batched_split(split: Any) -> bool:
    """Whether a split needs `LoaderEvaluator`: a DataLoader, or inputs that are not one tensor."""
    if isinstance(split, torch.utils.data.DataLoader):
        return True
    return isinstance(split, (tuple, list)) and len(split) == 2 and not isinstance(split[0], torch.Tensor)


def call_model(model: Callable[..., Any], inputs: Any) -> Any:
    """`model(**inputs)` for a dict, `model(*inputs)` for a tuple or list, else `model(inputs)`."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def move_to(obj: Any, device: torch.device) -> Any:
    """Tensors inside dicts, tuples and lists moved to `device` (other values unchanged)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: move_to(v, device) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(move_to(v, device) for v in obj)
    if isinstance(obj, list):
        return [move_to(v, device) for v in obj]
    return obj


def describe_inputs(inputs: Any) -> str:
    """Shapes and dtypes of a batch's inputs, e.g. `{'tokens': [4, 7] int64, 'mask': [4, 7] float32}`."""
    if isinstance(inputs, torch.Tensor):
        return f"{list(inputs.shape)} {str(inputs.dtype).replace('torch.', '')}"
    if isinstance(inputs, Mapping):
        return "{" + ", ".join(f"{k!r}: {describe_inputs(v)}" for k, v in inputs.items()) + "}"
    if isinstance(inputs, (tuple, list)):
        return "(" + ", ".join(describe_inputs(v) for v in inputs) + ")"
    return type(inputs).__name__


def slice_inputs(inputs: Any, i: int, j: int) -> Any:
    if isinstance(inputs, Mapping):
        return {k: slice_inputs(v, i, j) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return tuple(slice_inputs(v, i, j) for v in inputs)
    return inputs[i:j]


def take_row(out: Any, j: int) -> Any:
    """Point `j` of vmapped outputs: row j of every tensor in a tensor, mapping (`ModelOutput`)
    or tuple, the structure kept."""
    if isinstance(out, torch.Tensor):
        return out[j]
    if isinstance(out, Mapping):
        items = {k: take_row(v, j) for k, v in out.items()}
        try:
            return type(out)(**items)
        except TypeError:
            return items
    if isinstance(out, (tuple, list)):
        return type(out)(take_row(v, j) for v in out)
    return out


class TensorBatches:
    """Batches of (inputs, targets) cut from in-memory inputs: a tensor, or a dict/tuple of them."""

    def __init__(self, inputs: Any, targets: torch.Tensor, batch_size: int) -> None:
        self.inputs, self.targets, self.batch_size = inputs, targets, int(batch_size)
        self.n = num_samples(inputs)
        if self.n != len(targets):
            raise LandscapeError(f"inputs have {self.n} samples but targets have {len(targets)}")

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Any, torch.Tensor]]:
        for i in range(0, self.n, self.batch_size):
            yield slice_inputs(self.inputs, i, i + self.batch_size), self.targets[i : i + self.batch_size]


def unpack_batch(batch: Any, split: str) -> tuple[Any, Any]:
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    got = f"a dict with keys {sorted(batch)}" if isinstance(batch, Mapping) else type(batch).__name__
    raise LandscapeError(
        f"split {split!r}: each DataLoader batch must be (inputs, targets), got {got}; "
        "return (inputs, target) from the Dataset's __getitem__ or use a collate_fn"
    )


def check_fits(model: nn.Module, inputs: Any, what: str) -> None:
    """Run `model` on a batch; raise one line naming the model, the data and the input shapes."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        with torch.no_grad():
            call_model(model.eval(), inputs)  # eval: no dropout, no BatchNorm statistics update
    except Exception as error:
        raise LandscapeError(
            f"{does_not_fit(what, model, inputs, error)}; the model is called as {_call_form(inputs)}"
        ) from None
    finally:
        for m, training in modes:
            m.training = training


def does_not_fit(what: str, model: nn.Module, inputs: Any, error: Exception) -> str:
    """`<what> does not fit model <name>: inputs <shapes> (<error type>: <message, one line>)`."""
    text = " ".join(str(error).split())[:200]
    return (
        f"{what} does not fit model {model_name(model)}: inputs {describe_inputs(inputs)} "
        f"({type(error).__name__}: {text})"
    )


def _call_form(inputs: Any) -> str:
    if isinstance(inputs, Mapping):
        return "model(**inputs) for dict inputs"
    if isinstance(inputs, (tuple, list)):
        return "model(*inputs) for tuple inputs"
    return "model(inputs)"


def model_name(model: nn.Module) -> str:
    return getattr(model, "original_name", None) or type(model).__name__

