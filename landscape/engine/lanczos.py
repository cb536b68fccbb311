"""Extreme eigenvalues and the trace of a symmetric operator given only as v -> H v.

- `lanczos`: the largest eigenvalues and the smallest one, by the Lanczos method with full
  reorthogonalization; each Ritz pair comes with its residual norm ||H v - lambda v||, a bound
  on the eigenvalue's error, and the iteration at which it converged.
- `hutchinson_trace`: tr(H) ~ mean of z^T H z over Rademacher vectors z, with its standard
  error; `exact_trace` sums e_i^T H e_i over all basis vectors (tiny operators only).

Pure linear algebra (no models, no files); `landscape.engine.hessian` supplies the Hessian's products.
Everything is deterministic given `seed`.

Example:
    >>> h = torch.diag(torch.tensor([3.0, 1.0, -2.0], dtype=torch.float64))
    >>> res = lanczos(lambda v: h @ v, 3, top_k=1, smallest=True, dtype=torch.float64)
    >>> round(float(res.values[0]), 6), round(res.min_value, 6)
    (3.0, -2.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import LandscapeError

__all__ = [
    "Matvec", "LanczosResult", "TraceResult", "lanczos", "lanczos_step", "tridiagonal", "hutchinson_trace",
    "exact_trace",
]

Matvec = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class LanczosResult:
    """Extreme eigenpairs of a symmetric operator.

    `values` are the `top_k` largest eigenvalues, descending; `residuals[i]` is
    ||H v_i - values[i] v_i|| for the unit Ritz vector v_i (|lambda - values[i]| is at most
    that); `converged_at[i]` is the Lanczos iteration at which pair i met the tolerance (the
    last iteration if it never did). `min_*` describe the smallest eigenvalue when asked for.
    """

    values: np.ndarray
    residuals: np.ndarray
    converged_at: list[int]
    iterations: int
    converged: bool
    vectors: torch.Tensor | None = None  # [top_k, dim], unit, float64
    min_value: float | None = None
    min_residual: float | None = None
    min_converged_at: int | None = None
    min_vector: torch.Tensor | None = None  # [dim]
    matvecs: int = 0


def _random_unit(dim: int, g: torch.Generator, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    v = torch.randn(dim, generator=g, dtype=torch.float64).to(device, dtype)
    return v / v.norm()


def tridiagonal(alpha: Sequence[float], beta: Sequence[float]) -> np.ndarray:
    """The symmetric tridiagonal matrix T [m, m] with diagonal `alpha` and off-diagonal `beta`."""
    m = len(alpha)
    t = np.diag(np.asarray(alpha, dtype=np.float64))
    if m > 1:
        off = np.asarray(beta[: m - 1], dtype=np.float64)
        t += np.diag(off, 1) + np.diag(off, -1)
    return t


def lanczos(
    matvec: Matvec,
    dim: int,
    top_k: int = 1,
    smallest: bool = False,
    max_iter: int = 100,
    tol: float = 1e-3,
    seed: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
    vectors: bool = False,
    explicit_residuals: bool = True,
) -> LanczosResult:
    """The `top_k` largest (and, with `smallest`, the smallest) eigenvalues of a symmetric operator.

    Lanczos with full reorthogonalization (twice, classical Gram-Schmidt) from a seeded Gaussian
    start. It stops when every wanted Ritz pair has a residual estimate beta_m |s_m| at most
    `tol` times the largest |Ritz value| (so `tol` is relative to the spectral norm), or after
    `max_iter` iterations (one matvec each). If the Krylov space becomes invariant early, it
    continues from a fresh random vector orthogonal to the basis, so repeated eigenvalues are
    found too. With `explicit_residuals` the reported residuals are ||H v - lambda v||
    recomputed with one extra matvec per pair. The basis is kept in `dtype` ([iterations, dim]).

    A product that is not finite (the loss overflows at these weights, e.g. at a diverged grid
    point of a curvature map) ends the iteration: every value and residual is NaN, not converged.
    """
    if top_k < 0 or (top_k == 0 and not smallest):
        raise LandscapeError(f"--top-k must be at least 1 (or give --min), got {top_k}")
    if dim < 1:
        raise LandscapeError("the Hessian covers no parameters")
    if top_k + int(smallest) > dim:
        raise LandscapeError(f"asked for {top_k + int(smallest)} eigenvalues of a {dim}x{dim} Hessian")
    if not tol > 0:
        raise LandscapeError(f"--tol must be positive, got {tol}")
    device = torch.device(device)
    g = torch.Generator().manual_seed(int(seed))
    max_iter = int(min(max(max_iter, top_k + int(smallest)), dim))
    need = top_k + int(smallest)
    min_iter = min(dim, max_iter, max(10, 2 * need))
    basis = torch.empty(max_iter, dim, dtype=dtype, device=device)
    alpha: list[float] = []
    beta: list[float] = []
    v = _random_unit(dim, g, device, dtype)
    conv_at: list[int | None] = [None] * need
    theta = s = None
    m = 0
    done = False
    matvecs = 0
    for j in range(max_iter):
        basis[j] = v
        a, w = lanczos_step(matvec, basis, j, beta)
        matvecs += 1
        if not (math.isfinite(a) and bool(torch.isfinite(w).all())):
            return _not_finite(top_k, smallest, j, matvecs)
        b = float(w.norm())
        alpha.append(a)
        m = j + 1
        theta, s = np.linalg.eigh(tridiagonal(alpha, beta))
        scale = max(float(np.abs(theta).max()), 1e-30)
        wanted = _wanted(len(theta), top_k, smallest)
        est = [b * abs(s[-1, i]) if i is not None else math.inf for i in wanted]
        for t, e in enumerate(est):
            if e <= tol * scale:
                conv_at[t] = conv_at[t] or m
            else:
                conv_at[t] = None
        if m >= min_iter and all(c is not None for c in conv_at):
            done = True
            break
        if m == max_iter:
            break
        if b <= 1e-10 * scale:  # invariant subspace: restart orthogonally to the basis
            v = _random_unit(dim, g, device, dtype)
            for _ in range(2):
                v = v - basis[:m].T @ (basis[:m] @ v)
            v = v / v.norm()
            beta.append(0.0)
        else:
            v = w / b
            beta.append(b)
    assert theta is not None and s is not None
    wanted = _wanted(len(theta), top_k, smallest)
    ritz = s[:, [i for i in wanted if i is not None]]  # [m, n_wanted]
    y = (torch.from_numpy(ritz.T.copy()).to(device, dtype) @ basis[:m]).double()  # [n_wanted, dim]
    y = y / y.norm(dim=1, keepdim=True)
    vals = np.array([theta[i] for i in wanted if i is not None], dtype=np.float64)
    if explicit_residuals:
        res = []
        for i in range(len(vals)):
            hv = matvec(y[i].to(dtype)).to(device).double()
            matvecs += 1
            res.append(float((hv - vals[i] * y[i]).norm()))
        res_arr = np.array(res)
    else:
        res_arr = np.array([b * abs(s[-1, i]) for i in wanted if i is not None])
    conv = [c if c is not None else m for c in conv_at]
    out = LanczosResult(
        values=vals[:top_k],
        residuals=res_arr[:top_k],
        converged_at=conv[:top_k],
        iterations=m,
        converged=done,
        vectors=y[:top_k] if vectors else None,
        matvecs=matvecs,
    )
    if smallest:
        out.min_value = float(vals[-1])
        out.min_residual = float(res_arr[-1])
        out.min_converged_at = conv[-1]
        out.min_vector = y[-1] if vectors else None
    return out


def _not_finite(top_k: int, smallest: bool, iterations: int, matvecs: int) -> LanczosResult:
    """The honest result of an operator whose products are not finite: NaN everywhere."""
    nan = float("nan")
    out = LanczosResult(
        values=np.full(top_k, nan), residuals=np.full(top_k, nan), converged_at=[iterations] * top_k,
        iterations=iterations, converged=False, matvecs=matvecs,
    )
    if smallest:
        out.min_value, out.min_residual, out.min_converged_at = nan, nan, iterations
    return out


def lanczos_step(matvec: Matvec, basis: torch.Tensor, j: int, beta: Sequence[float]) -> tuple[float, torch.Tensor]:
    """One Lanczos step from the unit vector basis[j]: (alpha_j, the next residual w).

    w = H v_j - alpha_j v_j - beta_{j-1} v_{j-1}, then orthogonalized twice (classical
    Gram-Schmidt) against every basis vector so far: full reorthogonalization, so the Ritz
    values do not repeat ("ghosts") however many steps are taken. `basis` is [steps, dim].
    """
    v = basis[j]
    w = matvec(v).to(basis.device, basis.dtype)
    a = float(torch.dot(w, v))
    w = w - a * v
    if j > 0:
        w = w - beta[j - 1] * basis[j - 1]
    for _ in range(2):
        w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
    return a, w


def _wanted(m: int, top_k: int, smallest: bool) -> list[int | None]:
    """Indices into ascending Ritz values: the top_k largest (descending), then the smallest."""
    top: list[int | None] = [m - 1 - i if m - 1 - i >= 0 else None for i in range(top_k)]
    if smallest:
        # the smallest must be a different Ritz value than the top ones
        top.append(0 if m > top_k else None)
    return top


# ---------------------------------------------------------------------------------------------
# the trace


@dataclass
class TraceResult:
    """tr(H) estimate, its standard error, and the number of matvecs (samples) it took."""

    value: float
    stderr: float
    samples: int
    method: str  # hutchinson | exact


def hutchinson_trace(
    matvec: Matvec,
    dim: int,
    max_samples: int = 100,
    rel_tol: float | None = 0.01,
    min_samples: int = 10,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> TraceResult:
    """Hutchinson's estimator with Rademacher vectors: mean of z^T H z, standard error s/sqrt(n).

    Stops after `max_samples`, or earlier once (at least `min_samples` taken) the standard error
    is at most `rel_tol` times |estimate|.
    """
    if max_samples < 2:
        raise LandscapeError(f"--trace-samples must be at least 2 (for a standard error), got {max_samples}")
    g = torch.Generator().manual_seed(int(seed) + 1_000_003)  # not the Lanczos start vector
    vals: list[float] = []
    mean = stderr = float("nan")
    for n in range(1, max_samples + 1):
        z = (torch.randint(0, 2, (dim,), generator=g, dtype=torch.int8) * 2 - 1).to(device, torch.float64)
        vals.append(float(torch.dot(z, matvec(z).to(device, torch.float64))))
        if n >= 2:
            arr = np.asarray(vals)
            mean = float(arr.mean())
            stderr = float(arr.std(ddof=1) / math.sqrt(n))
            if rel_tol is not None and n >= min_samples and stderr <= rel_tol * abs(mean):
                break
    return TraceResult(mean, stderr, len(vals), "hutchinson")


def exact_trace(matvec: Matvec, dim: int, device: torch.device | str = "cpu", limit: int = 20_000) -> TraceResult:
    """tr(H) = sum of e_i^T H e_i over all `dim` basis vectors (dim matvecs; tiny models only)."""
    if dim > limit:
        raise LandscapeError(
            f"an exact trace takes one Hessian-vector product per parameter ({dim:,}); use the "
            "Hutchinson estimate (drop --exact-trace) for models this size"
        )
    total = 0.0
    for i in range(dim):
        e = torch.zeros(dim, dtype=torch.float64, device=device)
        e[i] = 1.0
        total += float(matvec(e)[i])
    return TraceResult(total, 0.0, dim, "exact")
