"""The eigenvalue density of a Hessian as a value: what `landscape hessian --density` stores.

`SpectralDensity` holds the stochastic Lanczos quadrature nodes and weights of every probe and a
Gaussian-smoothed density on a grid (computed by `landscape.engine.spectral_density`); it is read
back from a file's `hessian` attribute and drawn by `landscape.render.density_plot`. Numbers only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import LandscapeError

__all__ = ["SpectralDensity", "smooth_density"]


@dataclass(frozen=True)
class SpectralDensity:
    """SLQ nodes and weights per probe, and the smoothed density on `grid` (see module docstring)."""

    nodes: tuple[np.ndarray, ...]  # per probe, ascending, [m_p] (m_p <= steps)
    weights: tuple[np.ndarray, ...]  # per probe, [m_p], each summing to 1
    dim: int
    steps: int
    seed: int
    sigma: float
    grid: np.ndarray  # [points]
    density: np.ndarray  # [points]

    @property
    def probes(self) -> int:
        return len(self.nodes)

    def moment(self, k: int) -> float:
        """Estimate of tr(H^k) / dim: the mean over probes of sum_i w_i theta_i^k."""
        return float(np.mean([np.sum(w * t**k) for t, w in zip(self.nodes, self.weights)]))

    @property
    def support(self) -> tuple[float, float]:
        """The smallest and the largest node over all probes (Ritz values: inside the spectrum)."""
        return float(min(t.min() for t in self.nodes)), float(max(t.max() for t in self.nodes))

    def to_dict(self) -> dict[str, object]:
        lo, hi = self.support
        return {
            "method": "stochastic Lanczos quadrature (Rademacher probes, full reorthogonalization)",
            "probes": self.probes,
            "steps": self.steps,
            "seed": self.seed,
            "dim": self.dim,
            "nodes": [t.tolist() for t in self.nodes],
            "weights": [w.tolist() for w in self.weights],
            "sigma": self.sigma,
            "grid": self.grid.tolist(),
            "density": self.density.tolist(),
            "trace_estimate": self.moment(1) * self.dim,
            "frobenius_sq_estimate": self.moment(2) * self.dim,
            "support": [lo, hi],
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> SpectralDensity:
        """Read back `to_dict` (from a JSON attribute): numbers only, checked."""
        try:
            nodes = tuple(np.asarray(t, dtype=np.float64) for t in d["nodes"])  # type: ignore[union-attr]
            weights = tuple(np.asarray(w, dtype=np.float64) for w in d["weights"])  # type: ignore[union-attr]
            grid = np.asarray(d["grid"], dtype=np.float64)
            dens = np.asarray(d["density"], dtype=np.float64)
            out = cls(nodes, weights, int(d["dim"]), int(d["steps"]), int(d["seed"]),  # type: ignore[arg-type]
                      float(d["sigma"]), grid, dens)  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as e:
            raise LandscapeError(f"the stored spectral density is damaged ({e}); recompute it with "
                                 "`landscape hessian --density`") from None
        if not nodes or grid.shape != dens.shape or any(t.shape != w.shape for t, w in zip(nodes, weights)):
            raise LandscapeError("the stored spectral density is damaged (shapes do not match); recompute "
                                 "it with `landscape hessian --density`")
        return out


def smooth_density(nodes: list[np.ndarray], weights: list[np.ndarray], sigma: float,
                   points: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(grid, density): the mean over probes of sum_i w_i N(t; theta_i, sigma^2) on a grid
    from 4 sigma below the smallest node to 4 sigma above the largest."""
    lo = min(float(t.min()) for t in nodes) - 4 * sigma
    hi = max(float(t.max()) for t in nodes) + 4 * sigma
    grid = np.linspace(lo, hi, points)
    t = np.concatenate(nodes)
    w = np.concatenate(weights) / len(nodes)
    dens = np.zeros_like(grid)
    for start in range(0, len(t), 256):  # [points, 256] at a time
        d = (grid[:, None] - t[None, start : start + 256]) / sigma
        dens += (np.exp(-0.5 * d**2) * w[None, start : start + 256]).sum(axis=1)
    return grid, dens / (sigma * math.sqrt(2 * math.pi))
