"""Losses and metrics: one definition of each, shared by the evaluators and the Hessian.

A loss is a per-sample function `(outputs, targets) -> [n]` (or a mean, weighted back up by
`sum_loss`), or returns a pair `(sum, count)`: a sum over the counted elements of the batch and
how many there were (a token-level mean that leaves out padding); the stored value is then the
split's total sum over its total count. `resolve_loss` names the built-in ones
(`cross_entropy`, `mse`, `next_token`), a callable, or an import path `package.module:fn`.
Results are named `{split}_loss` and `{split}_acc`.

Models from other libraries return more than a tensor: the built-in losses and `accuracy` score
`model_logits(outputs)`, the `logits` of a Hugging Face `ModelOutput` (or of any mapping), the
first element of a tuple, or the tensor itself. A callable loss gets the outputs as they are.

Example:
    >>> name, fn = resolve_loss("mse")
    >>> float(sum_loss(fn, name, torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)))
    1.3333333333333333
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LandscapeError, one_line
from .inputs import call_model, slice_inputs

__all__ = [
    "LossFn",
    "MetricFn",
    "LOSS_NAMES",
    "accuracy_count",
    "model_logits",
    "cross_entropy",
    "mse",
    "next_token",
    "loss_sum_count",
    "resolve_loss",
    "sum_loss",
    "check_loss",
    "result_names",
]

LossFn = Callable[[Any, torch.Tensor], Any]
MetricFn = Callable[[Any, torch.Tensor], torch.Tensor]
LOSS_NAMES = ("cross_entropy", "mse", "next_token")
IGNORE_INDEX = -100  # a target left out of the mean (padding), as in torch and Hugging Face


def model_logits(outputs: Any) -> torch.Tensor:
    """The scores in a model's outputs: the tensor itself, `outputs["logits"]` of a mapping (a
    Hugging Face `ModelOutput`), or the first element of a tuple or list.

    Example:
        >>> model_logits((torch.zeros(2, 3), None)).shape
        torch.Size([2, 3])
    """
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, Mapping):
        logits = outputs.get("logits")
        if isinstance(logits, torch.Tensor):
            return logits
        raise LandscapeError(
            f"the model returned a {type(outputs).__name__} with {', '.join(map(str, outputs))} "
            "but no 'logits' tensor; give loss= a function of these outputs"
        )
    if isinstance(outputs, (tuple, list)) and outputs and isinstance(outputs[0], torch.Tensor):
        return outputs[0]
    raise LandscapeError(
        f"the model returned a {type(outputs).__name__}, not a tensor, a tuple of tensors or an "
        "output with 'logits'; give loss= a function of these outputs"
    )


def accuracy_count(outputs: Any, targets: torch.Tensor) -> torch.Tensor:
    """Number of samples whose arg-max class equals the target."""
    return (model_logits(outputs).argmax(-1) == targets).sum()


def cross_entropy(
    out: Any, y: torch.Tensor, reduction: str = "none", dtype: torch.dtype | None = torch.float32
) -> torch.Tensor:
    """Cross-entropy of logits `out` [n, C] against class labels `y` [n], computed in `dtype`
    (None: the outputs' own dtype, so that float64 stays float64 for the Hessian)."""
    out = model_logits(out)
    return F.cross_entropy(out if dtype is None else out.to(dtype), y, reduction=reduction)


def next_token(out: Any, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token cross-entropy of a language model: logits [n, T, V] at position t score the
    label [n, T] at t + 1 (labels shifted, as Hugging Face does); labels equal to -100
    (padding) are left out. Returns (sum over the counted tokens, their number), so the stored
    value is the mean over every counted token of the split.

    Example:
        >>> s, c = next_token(torch.zeros(1, 3, 5), torch.tensor([[1, 2, -100]]))
        >>> round(float(s / c), 4), int(c)          # ln 5 over the one counted token
        (1.6094, 1)
    """
    logits = model_logits(out)
    if logits.dim() != 3 or y.dim() != 2 or tuple(logits.shape[:2]) != tuple(y.shape):
        raise LandscapeError(
            f"loss next_token needs logits [n, T, V] and labels [n, T]; got logits "
            f"{list(logits.shape)} and labels {list(y.shape)}"
        )
    shifted = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    labels = y[:, 1:].reshape(-1)
    total = F.cross_entropy(shifted, labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return total, (labels != IGNORE_INDEX).sum()


def mse(out: Any, y: torch.Tensor, dtype: torch.dtype | None = torch.float32) -> torch.Tensor:
    """Per-sample mean squared error [n] (targets of the output's shape, or class labels
    one-hot), computed in `dtype` (None: the outputs' own)."""
    out = model_logits(out)
    dtype = out.dtype if dtype is None else dtype
    out = out.to(dtype)
    if y.dtype in (torch.int64, torch.int32) and out.dim() == 2 and y.dim() == 1:
        y = F.one_hot(y, out.shape[1]).to(dtype)
    y = y.to(dtype).reshape(out.shape)
    return (out - y).pow(2).reshape(out.shape[0], -1).mean(1)


def resolve_loss(loss: str | LossFn | None) -> tuple[str, LossFn]:
    """Name and per-sample function for `cross_entropy`, `mse`, a callable or an import path."""
    if loss is None or loss == "cross_entropy":
        return "cross_entropy", cross_entropy
    if loss == "mse":
        return "mse", mse
    if loss == "next_token":
        return "next_token", next_token
    if callable(loss):
        return getattr(loss, "__name__", type(loss).__name__), loss
    if isinstance(loss, str) and ":" in loss:
        from ..system.hooks import import_object

        fn = import_object(loss, "loss")
        return loss, fn
    raise LandscapeError(
        f"unknown loss {loss!r}; use {', '.join(LOSS_NAMES)}, a callable, or package.module:fn"
    )


def loss_sum_count(loss_fn: LossFn, name: str, out: Any, y: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(sum of the losses over a batch in float64, what the sum counts): per-sample losses or
    their mean count the batch's samples; a loss returning (sum, count) counts its own elements.
    The stored mean is the total sum over the total count of a split."""
    value = loss_fn(out, y)
    n = out.shape[0] if isinstance(out, torch.Tensor) else len(y)
    if isinstance(value, tuple) and len(value) == 2:
        total, count = value
        if isinstance(total, torch.Tensor) and total.dim() == 0:
            return total.double(), int(count)
        raise LandscapeError(f"loss {name} returned a pair; expected (sum tensor, count)")
    if not isinstance(value, torch.Tensor):
        raise LandscapeError(f"loss {name} returned {type(value).__name__}, expected a tensor")
    if value.dim() == 0:
        return value.double() * n, n
    if value.dim() == 1 and value.shape[0] == n:
        return value.double().sum(), n
    raise LandscapeError(
        f"loss {name} returned shape {tuple(value.shape)}; expected a scalar mean, one value "
        f"per sample ([{n}]) or (sum, count)"
    )


def sum_loss(loss_fn: LossFn, name: str, out: Any, y: torch.Tensor) -> torch.Tensor:
    """Sum of per-sample losses over a batch, in float64 (a mean loss is weighted back up); for
    losses whose mean is over samples (the Hessian divides by the number of samples)."""
    total, count = loss_sum_count(loss_fn, name, out, y)
    n = out.shape[0] if isinstance(out, torch.Tensor) else len(y)
    if count != n:
        raise LandscapeError(f"loss {name} averages over {count} elements, not the {n} samples; not supported here")
    return total


def check_loss(model: nn.Module, loss: str | LossFn | None, x: Any, y: torch.Tensor) -> None:
    """Fail early, in one line, when the loss cannot score this model's outputs (2 samples).

    Run before a surface file is created, so a loss with the wrong signature leaves no file.
    """
    name, fn = resolve_loss(loss)
    with torch.no_grad():
        out = call_model(model.eval(), slice_inputs(x, 0, 2))
        try:
            loss_sum_count(fn, name, out, y[:2])
        except LandscapeError:
            raise
        except Exception as e:
            raise LandscapeError(
                f"--loss {name} failed on a batch of 2 samples ({one_line(e)}); it must "
                "be fn(outputs, targets) returning per-sample losses or their mean"
            ) from None


def result_names(splits: Iterable[str], with_metric: bool) -> list[str]:
    """The result arrays of these splits, in order: `{split}_loss` (and `{split}_acc`)."""
    names = []
    for split in splits:
        names.append(f"{split}_loss")
        if with_metric:
            names.append(f"{split}_acc")
    return names
