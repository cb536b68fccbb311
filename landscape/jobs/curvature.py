"""Curvature maps: the largest and smallest Hessian eigenvalue at every grid point.

Li et al. (2018) back their pictures with curvature: at each point of the plane they take the
Hessian's extreme eigenvalues and map |lambda_min / lambda_max|. Near zero, the slice's
apparent convexity is real; large values mark regions of strong negative curvature that a 2D
slice hides.

`CurvatureEvaluator` is added to a surface job by `landscape surface --curvature`; it is called on
the same chunks of grid points as the loss evaluator, so its `max_eig` / `min_eig` arrays are
sharded, written and resumed exactly like the losses. At a point (a, b) the weights are
center + a x + b y on the directions' keys (as for the losses); the Hessian is that of the mean
loss over the train split (or the job's first split), over the weights with 2+ dimensions, in
eval mode (or with BatchNorm statistics re-estimated at the point under `--bn recompute`).
Eigenvalues come from Lanczos (`landscape.engine.lanczos.lanczos`) with tolerance `TOL` relative to
the largest |eigenvalue|, started from the same seeded vector at every point.

Example:
    >>> ev = CurvatureEvaluator(job)
    >>> ev(np.array([[0.0, 0.0], [0.5, -0.5]]))["max_eig"]
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch

from ..engine.batchnorm import recompute_batchnorm
from ..engine.evaluate import state_at as _state_at  # the method below has the same name
from ..engine.hessian import HessianOperator
from ..engine.lanczos import lanczos
from .job import SurfaceJob

__all__ = ["CurvatureEvaluator", "TOL", "MAX_ITER", "point_curvature"]

TOL = 1e-3  # residual <= TOL * max|eigenvalue| for both ends of the spectrum
MAX_ITER = 100  # Lanczos iterations (Hessian-vector products) per point, at most


class CurvatureEvaluator:
    """Max and min Hessian eigenvalue at grid coordinates [k, ndim] -> {"max_eig", "min_eig"}."""

    is_curvature = True

    def __init__(
        self,
        job: SurfaceJob,
        tol: float = TOL,
        max_iter: int = MAX_ITER,
        seed: int = 0,
        ignore: str = "biasbn",
    ) -> None:
        target = job.target
        split = "train" if "train" in target.splits else next(iter(target.splits))
        x, y = target.splits[split]
        self.split = split
        self.op = HessianOperator(
            target.model, x, y, target.loss, ignore, job.engine.batch_size, job.engine.device, torch.float32
        )
        self.device = self.op.device
        self.dirs = job.directions.to(self.device)
        self.keys = self.dirs.keys()
        self.center = {k: v.detach().clone() for k, v in self.op.model.state_dict().items()}
        self.bn_mode = target.bn_mode
        self.bn_data = None
        if self.bn_mode == "recompute":
            self.bn_data = target.bn_data.to(self.device)
            self._bn_model = copy.deepcopy(self.op.model)
        self.tol, self.max_iter, self.seed = tol, max_iter, seed
        self.stats: dict[str, float] = {"points": 0, "seconds": 0.0, "iterations": 0}

    def state_at(self, c: np.ndarray) -> dict[str, torch.Tensor]:
        """The weights at grid coordinates c: center + a x + b y (the loss evaluator's formula)."""
        state = _state_at(self.center, self.dirs, c)
        if self.bn_mode == "recompute":
            self._bn_model.load_state_dict(state)
            recompute_batchnorm(self._bn_model, self.bn_data, self.op.batch_size)
            state = {k: v.detach().clone() for k, v in self._bn_model.state_dict().items()}
        return state

    def __call__(self, coords: np.ndarray) -> dict[str, np.ndarray]:
        coords = np.atleast_2d(np.asarray(coords, dtype=np.float64))
        start = time.perf_counter()
        hi, lo = np.empty(len(coords)), np.empty(len(coords))
        for i, c in enumerate(coords):
            hi[i], lo[i] = self._extremes(self.state_at(c))
        self.stats["points"] += len(coords)
        self.stats["seconds"] += time.perf_counter() - start
        return {"max_eig": hi, "min_eig": lo}

    def _extremes(self, state: dict[str, torch.Tensor]) -> tuple[float, float]:
        self.op.set_state(state)
        res = lanczos(
            self.op.matvec, self.op.dim, 1, True, self.max_iter, self.tol, self.seed,
            self.device, torch.float32, explicit_residuals=False,
        )
        self.stats["iterations"] += res.iterations
        assert res.min_value is not None
        return float(res.values[0]), float(res.min_value)


def point_curvature(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    state: dict[str, torch.Tensor] | None = None,
    loss: Any = "cross_entropy",
    tol: float = TOL,
    max_iter: int = MAX_ITER,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> tuple[float, float]:
    """(max, min) Hessian eigenvalue of the mean loss on (x, y) at `state` (default: the model's)."""
    op = HessianOperator(model, x, y, loss, "biasbn", None, device)
    if state is not None:
        op.set_state(state)
    res = lanczos(op.matvec, op.dim, 1, True, max_iter, tol, seed, op.device, torch.float32,
                  explicit_residuals=False)
    assert res.min_value is not None
    return float(res.values[0]), float(res.min_value)
