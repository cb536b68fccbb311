"""The eigenvalue density of a symmetric operator by stochastic Lanczos quadrature (SLQ).

For a unit probe u, m Lanczos steps from u give a tridiagonal T_m with eigenvalues theta_i
(the nodes) and eigenvectors s_i; the weights w_i = s_i[0]**2 (squared first components) sum to
1, and sum_i w_i f(theta_i) is the m-point Gauss quadrature of u^T f(H) u, exact for every
polynomial f of degree below 2m. With u = z / sqrt(dim), z Rademacher (entries +-1), the mean
over probes of u^T f(H) u estimates tr f(H) / dim: the spectral density is the mean over probes
of the discrete measures sum_i w_i delta(t - theta_i) (Lin, Saad & Yang 2016; Ghorbani et al.
2019; PyHessian's `density()`). Lanczos runs with full reorthogonalization (`lanczos_step`);
if the Krylov space of a probe is invariant before m steps, that probe stops there (its
quadrature is then exact).

What is stored (`landscape.core.spectrum.SpectralDensity.to_dict`): the nodes and weights of every probe, the probe
count, the steps, the seed, and a density on a grid, smoothed by a Gaussian of standard
deviation `sigma` (default 1 % of the nodes' range), integrating to 1.

Example:
    >>> h = torch.diag(torch.linspace(-1.0, 2.0, 50, dtype=torch.float64))
    >>> d = spectral_density(lambda v: h @ v, 50, probes=4, steps=20)
    >>> round(d.moment(1) * 50, 6), float(h.trace())   # Rademacher probes: exact for a diagonal H
    (25.0, 25.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..core.spectrum import SpectralDensity, smooth_density
from ..errors import LandscapeError
from .lanczos import Matvec, lanczos_step, tridiagonal

__all__ = ["DensityConfig", "spectral_density", "slq", "rademacher_probes"]

_SEED_OFFSET = 2_000_003  # probes differ from the Lanczos start and the Hutchinson vectors of one seed


@dataclass(frozen=True)
class DensityConfig:
    """How to estimate the density: probe vectors, Lanczos steps, smoothing and its grid.

    `sigma` None: 1 % of the range of the nodes (min to max over all probes).
    """

    probes: int = 10
    steps: int = 80
    sigma: float | None = None
    points: int = 1000

    def __post_init__(self) -> None:
        if self.probes < 1:
            raise LandscapeError(f"--density-probes must be at least 1, got {self.probes}")
        if self.steps < 1:
            raise LandscapeError(f"--density-steps must be at least 1, got {self.steps}")
        if self.sigma is not None and not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise LandscapeError(f"--density-sigma must be a positive number, got {self.sigma}")
        if self.points < 2:
            raise LandscapeError(f"the density grid needs at least 2 points, got {self.points}")


def rademacher_probes(dim: int, probes: int, seed: int = 0) -> torch.Tensor:
    """`probes` Rademacher vectors [probes, dim] (entries +-1, float64), seeded."""
    g = torch.Generator().manual_seed(int(seed) + _SEED_OFFSET)
    return (torch.randint(0, 2, (probes, dim), generator=g, dtype=torch.int8) * 2 - 1).double()


def slq(matvec: Matvec, probes: torch.Tensor, steps: int, device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Nodes and weights of each probe (rows of `probes`, any scale: each is normalized)."""
    device = torch.device(device)
    dim = probes.shape[1]
    steps = min(int(steps), dim)
    all_nodes, all_weights = [], []
    for z in probes:
        basis = torch.empty(steps, dim, dtype=dtype, device=device)
        v = z.to(device, dtype)
        basis[0] = v / v.norm()
        alpha: list[float] = []
        beta: list[float] = []
        for j in range(steps):
            a, w = lanczos_step(matvec, basis, j, beta)
            alpha.append(a)
            b = float(w.norm())
            scale = max(max(abs(x) for x in alpha), 1e-30)
            if j + 1 == steps or b <= 1e-10 * scale:  # done, or the Krylov space is invariant
                break
            beta.append(b)
            basis[j + 1] = w / b
        theta, s = np.linalg.eigh(tridiagonal(alpha, beta))
        all_nodes.append(theta)
        all_weights.append(s[0, :] ** 2)  # squared first components of the eigenvectors of T
    return all_nodes, all_weights


def spectral_density(matvec: Matvec, dim: int, probes: int = 10, steps: int = 80, seed: int = 0,
                     sigma: float | None = None, points: int = 1000, device: torch.device | str = "cpu",
                     dtype: torch.dtype = torch.float64) -> SpectralDensity:
    """SLQ density of the operator `matvec` of size `dim` (see the module docstring)."""
    cfg = DensityConfig(probes, steps, sigma, points)  # checks the numbers
    if dim < 1:
        raise LandscapeError("the Hessian covers no parameters")
    nodes, weights = slq(matvec, rademacher_probes(dim, cfg.probes, seed), cfg.steps, device, dtype)
    lo = min(float(t.min()) for t in nodes)
    hi = max(float(t.max()) for t in nodes)
    sig = cfg.sigma if cfg.sigma is not None else max(0.01 * (hi - lo), 1e-12 * max(abs(lo), abs(hi), 1.0))
    grid, dens = smooth_density(nodes, weights, sig, cfg.points)
    return SpectralDensity(tuple(nodes), tuple(weights), dim, min(cfg.steps, dim), int(seed), float(sig), grid, dens)
