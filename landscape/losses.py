"""Losses and metrics: one definition of each, shared by the evaluators and the Hessian.

A loss is a per-sample function `(outputs, targets) -> [n]` (or a mean, weighted back up by
`sum_loss`); `resolve_loss` names the built-in ones (`cross_entropy`, `mse`), a callable, or an
import path `package.module:fn`. Results are named `{split}_loss` and `{split}_acc`.

Example:
    >>> name, fn = resolve_loss("mse")
    >>> float(sum_loss(fn, name, torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)))
    1.3333333333333333
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .errors import LandscapeError, one_line

__all__ = [
    "LossFn",
    "MetricFn",
    "accuracy_count",
    "cross_entropy",
    "mse",
    "resolve_loss",
    "sum_loss",
    "check_loss",
    "result_names",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MetricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def accuracy_count(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Number of samples whose arg-max class equals the target."""
    return (outputs.argmax(-1) == targets).sum()


def cross_entropy(
    out: torch.Tensor, y: torch.Tensor, reduction: str = "none", dtype: torch.dtype | None = torch.float32
) -> torch.Tensor:
    """Cross-entropy of logits `out` [n, C] against class labels `y` [n], computed in `dtype`
    (None: the outputs' own dtype, so that float64 stays float64 for the Hessian)."""
    return F.cross_entropy(out if dtype is None else out.to(dtype), y, reduction=reduction)


def mse(out: torch.Tensor, y: torch.Tensor, dtype: torch.dtype | None = torch.float32) -> torch.Tensor:
    """Per-sample mean squared error [n] (targets of the output's shape, or class labels
    one-hot), computed in `dtype` (None: the outputs' own)."""
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
    if callable(loss):
        return getattr(loss, "__name__", type(loss).__name__), loss
    if isinstance(loss, str) and ":" in loss:
        from .hooks import import_object

        fn = import_object(loss, "loss")
        return loss, fn
    raise LandscapeError(
        f"unknown loss {loss!r}; use cross_entropy, mse, a callable, or package.module:fn"
    )


def sum_loss(loss_fn: LossFn, name: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum of per-sample losses over a batch, in float64 (a mean loss is weighted back up)."""
    value = loss_fn(out, y)
    if not isinstance(value, torch.Tensor):
        raise LandscapeError(f"loss {name} returned {type(value).__name__}, expected a tensor")
    n = out.shape[0] if isinstance(out, torch.Tensor) else len(y)
    if value.dim() == 0:
        return value.double() * n
    if value.dim() == 1 and value.shape[0] == n:
        return value.double().sum()
    raise LandscapeError(
        f"loss {name} returned shape {tuple(value.shape)}; expected a scalar mean or one value "
        f"per sample ([{n}])"
    )


def check_loss(model: nn.Module, loss: str | LossFn | None, x: torch.Tensor, y: torch.Tensor) -> None:
    """Fail early, in one line, when the loss cannot score this model's outputs (2 samples).

    Run before a surface file is created, so a loss with the wrong signature leaves no file.
    """
    name, fn = resolve_loss(loss)
    with torch.no_grad():
        out = model.eval()(x[:2])
        try:
            sum_loss(fn, name, out, y[:2])
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
