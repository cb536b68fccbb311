"""The top Hessian eigenvectors at a checkpoint as the directions of a surface (`--dirs hessian`).

Example:
    >>> d = hessian_directions(model, {"train": (x, y)}, two_d=True)
    >>> d.extra["eigenvalues"]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..core.directions import NORMS, Directions, direction_keys, normalize_direction
from ..errors import LandscapeError
from .hessian import HessianOperator, check_finite_weights
from .lanczos import lanczos

__all__ = ["hessian_directions"]



def hessian_directions(
    model: nn.Module,
    splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str = "cpu",
    two_d: bool = True,
    dir_type: str = "weights",
    norm: str = "none",
    ignore: str = "none",
    seed: int = 0,
    loss: Any = "cross_entropy",
    tol: float = 1e-4,
    max_iter: int = 150,
    batch_size: int | None = None,
) -> Directions:
    """The top one or two Hessian eigenvectors (of the train split, or the first split) as directions.

    Eigenvectors are unit vectors over the covered parameters (`ignore="none"`: every
    parameter; `"biasbn"`: weights with 2+ dims), zero elsewhere (BatchNorm buffers under
    `dir_type="states"`). `norm="filter"` (or `layer`, `weight`) then rescales their 2+ dim
    tensors against the weights like random directions; 1-D tensors keep their eigenvector
    entries. The eigenvalues and residuals are recorded in `extra`.
    """
    if norm not in NORMS:
        raise LandscapeError(f"--norm {norm!r} is not one of {', '.join(NORMS)}")
    check_finite_weights(model.state_dict(), "--dirs hessian")
    split = "train" if "train" in splits else next(iter(splits))
    x, y = splits[split]
    op = HessianOperator(model, x, y, loss, ignore, batch_size, device)
    res = lanczos(op.matvec, op.dim, 2 if two_d else 1, False, max_iter, tol, seed, op.device,
                  torch.float32, vectors=True)
    if res.vectors is None or not bool(torch.isfinite(res.vectors).all()):
        raise LandscapeError(
            "--dirs hessian: the Hessian-vector products at the checkpoint are not finite (the "
            "loss overflows there); choose random directions instead"
        )
    keys = direction_keys(model, dir_type)
    state = model.state_dict()
    covered = set(op.keys)

    def as_direction(vec: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = op.unflatten(vec.cpu())
        out = {}
        for k in keys:
            w = state[k].detach().cpu()
            d = parts[k].float() if k in covered else torch.zeros(w.shape)
            if k in covered and w.dim() >= 2 and norm != "none":
                d = normalize_direction(d, w.float(), norm)
            out[k] = d.to(w.dtype)
        return out

    xd = as_direction(res.vectors[0])
    yd = as_direction(res.vectors[1]) if two_d else None
    extra = {
        "eigenvalues": [float(v) for v in res.values],
        "residuals": [float(r) for r in res.residuals],
        "lanczos_iterations": res.iterations,
        "hessian_params": "all" if ignore == "none" else "2d",
        "hessian_split": split,
        "hessian_samples": op.n,
    }
    return Directions(xd, yd, "hessian", dir_type, norm, ignore, int(seed), extra)

