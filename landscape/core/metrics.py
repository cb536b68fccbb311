"""Scalar metrics of a surface: centre values, loss rise within a radius, basin width, curvature.

Definitions (also in the README):

- `center_<split>_loss`, `center_<split>_acc`: values at the grid point nearest (0, 0).
- `max_rise_r<r>`: the largest increase of the loss over its centre value among the computed grid
  points within Euclidean distance r of the centre (in step units of the directions).
- `basin_width_x`, `basin_width_y`: walking from the centre along each axis (the other
  coordinate held at 0), in both directions, the distance at which the loss first exceeds the
  centre's by `margin` (linear interpolation between grid points); the width is the sum of both
  sides. When the loss never exceeds the margin inside the grid, the grid's extent is used and
  `basin_width_capped` is true.
- `basin_fraction`: the fraction of computed grid points whose loss is within `margin` of the
  centre's (the sub-level set, a 2D proxy of the basin's area on the grid).
- `flat_curvature_fraction` (with curvature maps): among the basin's points (loss within
  `margin`), the fraction where |lambda_min / lambda_max| < 0.01, that is, where the slice's
  convexity is real.
- `top_eigenvalue`: the Hessian's largest eigenvalue at the centre (from `landscape hessian` or
  from the curvature map's centre point).
- 2D only, the topology of the loss (`landscape.core.topology`, 8-connected, uncomputed and
  non-finite points excluded): `local_minima`, `persistence` ([birth, death] of each basin
  of the sublevel-set merge tree, death None for the deepest), `centre_basin_fraction`,
  `centre_basin_level` and `centre_basin_depth` (the saddle where the centre's basin merges
  into a deeper one, and its height above the basin's minimum; None in the deepest basin).

The loss is the train loss when the surface has it, else the first loss array.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["surface_metrics", "basin_half_width", "MARGIN", "RADII"]

MARGIN = 0.1
RADII = (0.25, 0.5)


def _loss_name(arrays: dict[str, np.ndarray]) -> str | None:
    if "train_loss" in arrays:
        return "train_loss"
    return next((k for k in arrays if k.endswith("_loss")), None)


def _center_index(x: np.ndarray, y: np.ndarray | None) -> tuple[int, ...]:
    ix = int(np.argmin(np.abs(x)))
    return (ix,) if y is None else (ix, int(np.argmin(np.abs(y))))


def basin_half_width(coords: np.ndarray, loss: np.ndarray, start: int, step: int, level: float) -> tuple[float, bool]:
    """Distance from coords[start] walking by `step` until loss > level; (distance, capped)."""
    i = start
    while 0 <= i + step < len(coords):
        j = i + step
        if not np.isfinite(loss[j]) or loss[j] > level:
            if np.isfinite(loss[j]) and np.isfinite(loss[i]) and loss[j] != loss[i]:
                t = (level - loss[i]) / (loss[j] - loss[i])
                t = float(np.clip(t, 0.0, 1.0))
            else:
                t = 0.5 if not np.isfinite(loss[j]) else 1.0
            return float(abs(coords[i] + t * (coords[j] - coords[i]) - coords[start])), False
        i = j
    return float(abs(coords[i] - coords[start])), True


def surface_metrics(surface: Any, margin: float = MARGIN, radii: tuple[float, ...] = RADII) -> dict[str, Any]:
    """Compute the scalar metrics of a `Surface` (see the module docstring for definitions)."""
    arrays, computed = surface.arrays, surface.computed
    x, y = surface.x, surface.y
    c = _center_index(x, y)
    out: dict[str, Any] = {"margin": margin}
    if not computed[c]:
        out["note"] = "centre not computed yet"
        return out
    for name, arr in arrays.items():
        if name.endswith(("_loss", "_acc")):
            out[f"center_{name}"] = float(arr[c])
    name = _loss_name(arrays)
    if name is None:
        return out
    loss = np.where(computed, arrays[name], np.nan)
    center = float(loss[c])
    out["metric_loss"] = name
    if y is None:
        dist = np.abs(x - x[c[0]])
    else:
        gx, gy = np.meshgrid(x - x[c[0]], y - y[c[1]], indexing="ij")
        dist = np.hypot(gx, gy)
    for r in radii:
        mask = (dist <= r + 1e-12) & computed
        with np.errstate(invalid="ignore"):  # inf - inf at a diverged centre
            rises = np.where(mask, loss - center, np.nan)
        known = rises[~np.isnan(rises)]  # all-NaN (diverged everywhere): no rise, no warning
        rise = float(known.max()) if known.size else np.nan
        out[f"max_rise_r{r:g}"] = float(rise) if np.isfinite(rise) else None
    level = center + margin
    capped = False
    axes = [("x", x, loss if y is None else loss[:, c[1]], c[0])]
    if y is not None:
        axes.append(("y", y, loss[c[0], :], c[1]))
    for axis, coords, line, start in axes:
        left, cap_l = basin_half_width(coords, line, start, -1, level)
        right, cap_r = basin_half_width(coords, line, start, +1, level)
        out[f"basin_width_{axis}"] = left + right
        capped = capped or cap_l or cap_r
    out["basin_width_capped"] = capped
    finite = computed & np.isfinite(loss)
    in_basin = finite & (loss <= level)
    out["basin_fraction"] = float(in_basin.sum() / max(computed.sum(), 1))
    if y is not None:
        from .topology import topology_metrics

        out.update(topology_metrics(loss, finite, (c[0], c[1])))
    if "max_eig" in arrays and "min_eig" in arrays:
        ratio = np.abs(arrays["min_eig"] / arrays["max_eig"])
        sel = in_basin & np.isfinite(ratio)
        out["flat_curvature_fraction"] = float((ratio[sel] < 0.01).mean()) if sel.any() else None
        if np.isfinite(arrays["max_eig"][c]):
            out["top_eigenvalue"] = float(arrays["max_eig"][c])
    hess = surface.attrs.get("hessian") if hasattr(surface, "attrs") else None
    if isinstance(hess, dict) and hess.get("eigenvalues"):
        out["top_eigenvalue"] = float(hess["eigenvalues"][0])
    return out
