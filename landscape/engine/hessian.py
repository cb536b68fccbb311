"""Curvature of the loss at a point: Hessian-vector products, Lanczos eigenvalues, Hutchinson trace.

The Hessian is that of the *mean* loss over all the chosen samples (not one mini-batch). A
Hessian-vector product (HVP) is computed by double back-propagation, batch by batch over data
that were moved to the device once; each batch contributes the HVP of its summed loss divided by
the total sample count, so the result does not depend on the batch size. The model is in eval
mode (BatchNorm uses its running statistics, as for the surfaces).

By default the Hessian covers the parameters with 2 or more dimensions (convolution and linear
weights), as in Li et al. (2018); `ignore="none"` covers every parameter.

- `HessianOperator`: v -> H v; the eigenvalues and the trace come from `landscape.engine.lanczos`
  (Lanczos with residual bounds, Hutchinson), which sees only these products.
- `hessian_spectrum`: both for a model and data (`landscape.jobs.hessian_job.compute_hessian` is
  what `landscape hessian` runs on a checkpoint); `landscape.engine.hessian_directions` gives the
  top eigenvectors as plotting directions.

Everything is deterministic given `seed`.

Example:
    >>> op = HessianOperator(model, x, y)                  # mean cross-entropy over (x, y)
    >>> res = lanczos(op.matvec, op.dim, top_k=3, smallest=True, tol=1e-4)
    >>> res.values, res.residuals, res.min_value
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..core.directions import tied_keys
from ..core.spectrum import SpectralDensity
from ..errors import LandscapeError
from ..system.cpu import guard_onednn
from .lanczos import LanczosResult, TraceResult, exact_trace, hutchinson_trace, lanczos
from .losses import cross_entropy, mse, resolve_loss, sum_loss
from .spectral_density import DensityConfig, spectral_density

__all__ = [
    "HESSIAN_IGNORES",
    "HessianOperator",
    "LanczosResult",
    "TraceResult",
    "HessianResult",
    "hessian_keys",
    "lanczos",
    "hutchinson_trace",
    "exact_trace",
    "hessian_spectrum",
    "check_finite_weights",
]

HESSIAN_IGNORES = ("biasbn", "none")  # biasbn: weights with 2+ dims only (the paper); none: all


def hessian_keys(model: nn.Module, ignore: str = "biasbn") -> list[str]:
    """Names of the parameters the Hessian covers, in model order."""
    if ignore not in HESSIAN_IGNORES:
        raise LandscapeError(f"--ignore {ignore!r} is not one of {', '.join(HESSIAN_IGNORES)}")
    keys = [k for k, p in model.named_parameters() if ignore == "none" or p.dim() >= 2]
    if not keys:
        raise LandscapeError(
            f"model {type(model).__name__} has no parameters with 2+ dimensions; use --ignore none"
        )
    return keys


def check_finite_weights(state: Mapping[str, torch.Tensor], where: str) -> None:
    """Refuse weights holding NaN or inf in one line naming the first such tensor: their
    Hessian is undefined (a surface of them is computed, and shows NaN, honestly)."""
    for k, v in state.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            bad = int((~torch.isfinite(v)).sum())
            raise LandscapeError(
                f"{where}: tensor {k!r} holds NaN or inf ({bad} of {v.numel()} values), so its "
                "Hessian is undefined; use a checkpoint from before training diverged"
            )


# ---------------------------------------------------------------------------------------------
# Hessian-vector products


def _default_batch_size(x: torch.Tensor) -> int:
    """About 2**19 input values per batch (256 CIFAR images, all 8x8 digits), 32 to 4096 samples."""
    per_sample = max(int(x[0].numel()), 1) if len(x) else 1
    return int(min(4096, max(32, 2**19 // per_sample)))


class HessianOperator:
    """v -> H v, H the Hessian of the mean loss over (x, y) w.r.t. the covered parameters.

    Vectors are flat, in the order of `keys` (see `flatten` / `unflatten`). `set_state` moves
    the operator to other weights (e.g. a grid point) without copying the data again.
    `hvps` counts the products computed.
    """

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        loss: Any = "cross_entropy",
        ignore: str = "biasbn",
        batch_size: int | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if len(x) == 0:
            raise LandscapeError("no samples to compute the Hessian on; check --max-samples and --split")
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = copy.deepcopy(model).to(self.device).eval()
        guard_onednn(self.model)  # weight gradients of tiny strided 1x1 convs: see landscape/system/cpu.py
        if dtype != torch.float32:
            self.model.to(dtype)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.keys = hessian_keys(self.model, ignore)
        self.ignore = ignore
        state = self.model.state_dict()
        self.shapes = [tuple(state[k].shape) for k in self.keys]
        self.numels = [int(state[k].numel()) for k in self.keys]
        self.dim = int(sum(self.numels))
        self.x = x.to(self.device, dtype) if x.is_floating_point() else x.to(self.device)
        self.y = y.to(self.device, dtype) if y.is_floating_point() else y.to(self.device)
        self.n = int(len(x))
        self.batch_size = int(batch_size or _default_batch_size(x))
        self.loss_name, self._loss_fn = resolve_loss(loss)
        self.hvps = 0
        self.set_state(state)

    def set_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Evaluate the Hessian at these weights (a full state dict of the model)."""
        own = self.model.state_dict()
        full = {}
        for k, ref in own.items():
            v = state[k].detach().to(self.device)
            full[k] = v.to(ref.dtype) if ref.is_floating_point() else v
        self.params = {k: full[k].clone().requires_grad_(True) for k in self.keys}
        self.rest = {k: v for k, v in full.items() if k not in self.params and k not in tied_keys(self.model)}

    # -- flat vectors <-> tensors ----------------------------------------------------------------

    def flatten(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Concatenate tensors over `keys` into one float64 vector [dim]."""
        return torch.cat([tensors[k].detach().reshape(-1).to(self.device, torch.float64) for k in self.keys])

    def unflatten(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a flat vector [dim] into tensors shaped like the covered parameters."""
        out, i = {}, 0
        for k, shape, n in zip(self.keys, self.shapes, self.numels):
            out[k] = vec[i : i + n].reshape(shape)
            i += n
        return out

    # -- the loss and its derivatives ------------------------------------------------------------

    def _batch_loss_sum(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """Sum of per-sample losses of one batch, differentiable w.r.t. `self.params`."""
        from torch.func import functional_call

        out = functional_call(self.model, (self.params, self.rest), (xb,))
        if self.loss_name == "cross_entropy":  # no cast: float64 stays float64
            return cross_entropy(out, yb, reduction="sum", dtype=None)
        if self.loss_name == "mse":
            return mse(out, yb, dtype=None).sum()
        return sum_loss(self._loss_fn, self.loss_name, out, yb)

    def _batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        b = self.batch_size
        return [(self.x[i : i + b], self.y[i : i + b]) for i in range(0, self.n, b)]

    def loss(self) -> float:
        """Mean loss over the data at the current state."""
        with torch.no_grad():
            total = sum(float(self._batch_loss_sum(xb, yb)) for xb, yb in self._batches())
        return total / self.n

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H v for a flat vector v [dim]; returns a float64 vector [dim]."""
        if v.shape != (self.dim,):
            raise ValueError(f"expected a vector of shape ({self.dim},), got {tuple(v.shape)}")
        vt = self.unflatten(v.to(self.device, self.dtype))
        params = list(self.params.values())
        total = torch.zeros(self.dim, dtype=torch.float64, device=self.device)
        with torch.enable_grad():
            for xb, yb in self._batches():
                # weight len(batch)/N: the batch's mean loss times its share of the data
                loss = self._batch_loss_sum(xb, yb) / self.n
                grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
                dot = sum(
                    (g * vt[k]).sum() for g, k in zip(grads, self.keys) if g is not None and g.requires_grad
                )
                if not isinstance(dot, torch.Tensor):  # loss linear in every covered parameter
                    continue
                hv = torch.autograd.grad(dot, params, allow_unused=True)
                total += torch.cat([
                    (h if h is not None else torch.zeros_like(p)).reshape(-1).double()
                    for h, p in zip(hv, params)
                ])
        self.hvps += 1
        return total

    def dense(self) -> torch.Tensor:
        """The full Hessian [dim, dim] from dim HVPs (tiny models only; for checks)."""
        eye = torch.eye(self.dim, dtype=torch.float64, device=self.device)
        return torch.stack([self.matvec(e) for e in eye])


# ---------------------------------------------------------------------------------------------
# a model's spectrum


@dataclass
class HessianResult:
    """What `landscape hessian` reports (see `to_dict` for the JSON form)."""

    eigenvalues: list[float]
    residuals: list[float]
    eigen_iterations: list[int]
    iterations: int
    converged: bool
    n_params: int
    n_samples: int
    ignore: str
    loss: str
    tol: float
    seed: int
    min_eigenvalue: float | None = None
    min_residual: float | None = None
    min_iterations: int | None = None
    trace: TraceResult | None = None
    hvps: int = 0
    seconds: float = 0.0
    mean_loss: float | None = None
    vectors: torch.Tensor | None = None  # [top_k, n_params] (not serialized)
    min_vector: torch.Tensor | None = None
    density: SpectralDensity | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "eigenvalues": [float(v) for v in self.eigenvalues],
            "residuals": [float(r) for r in self.residuals],
            "eigen_iterations": [int(i) for i in self.eigen_iterations],
        }
        if self.min_eigenvalue is not None:
            out["min_eigenvalue"] = float(self.min_eigenvalue)
            out["min_residual"] = float(self.min_residual or 0.0)
            out["min_iterations"] = int(self.min_iterations or 0)
            if self.eigenvalues and self.eigenvalues[0] != 0:
                out["eig_ratio"] = abs(self.min_eigenvalue / self.eigenvalues[0])
        if self.trace is not None:
            out["trace"] = self.trace.value
            out["trace_stderr"] = self.trace.stderr
            out["trace_samples"] = self.trace.samples
            out["trace_method"] = self.trace.method
        if self.density is not None:
            out["density"] = self.density.to_dict()
        out.update(
            lanczos_iterations=self.iterations,
            converged=bool(self.converged),
            tol=self.tol,
            seed=self.seed,
            n_params=self.n_params,
            n_samples=self.n_samples,
            params="all" if self.ignore == "none" else "2d",
            ignore=self.ignore,
            loss=self.loss,
            mean_loss=self.mean_loss,
            hvps=self.hvps,
            seconds=round(self.seconds, 4),
        )
        out.update(self.extra)
        return out


def hessian_spectrum(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    top_k: int = 5,
    smallest: bool = False,
    trace: bool = False,
    trace_samples: int = 100,
    trace_tol: float | None = 0.01,
    exact: bool = False,
    max_iter: int = 100,
    tol: float = 1e-3,
    seed: int = 0,
    loss: Any = "cross_entropy",
    ignore: str = "biasbn",
    batch_size: int | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    vectors: bool = False,
    density: DensityConfig | None = None,
) -> HessianResult:
    """Top eigenvalues, optionally the smallest, the trace and the spectral density (SLQ,
    `landscape.engine.spectral_density`) of the mean loss's Hessian on (x, y).

    Example:
        >>> r = hessian_spectrum(model, ds.x_train, ds.y_train, top_k=3, smallest=True, trace=True)
        >>> r.eigenvalues[0], r.residuals[0], r.trace.value, r.trace.stderr
    """
    start = time.perf_counter()
    op = HessianOperator(model, x, y, loss, ignore, batch_size, device, dtype)
    res = lanczos(
        op.matvec, op.dim, top_k, smallest, max_iter, tol, seed, op.device,
        torch.float64 if dtype == torch.float64 else torch.float32, vectors,
    )
    tr = None
    if trace:
        tr = (
            exact_trace(op.matvec, op.dim, op.device)
            if exact
            else hutchinson_trace(op.matvec, op.dim, trace_samples, trace_tol, seed=seed, device=op.device)
        )
    dens = None
    if density is not None:
        dens = spectral_density(op.matvec, op.dim, density.probes, density.steps, seed, density.sigma,
                                density.points, op.device, torch.float64 if dtype == torch.float64 else torch.float32)
    return HessianResult(
        eigenvalues=[float(v) for v in res.values],
        residuals=[float(r) for r in res.residuals],
        eigen_iterations=list(res.converged_at),
        iterations=res.iterations,
        converged=res.converged,
        n_params=op.dim,
        n_samples=op.n,
        ignore=ignore,
        loss=op.loss_name,
        tol=tol,
        seed=seed,
        min_eigenvalue=res.min_value,
        min_residual=res.min_residual,
        min_iterations=res.min_converged_at,
        trace=tr,
        density=dens,
        hvps=op.hvps,
        seconds=time.perf_counter() - start,
        mean_loss=op.loss(),
        vectors=res.vectors,
        min_vector=res.min_vector,
    )
