"""Figures of a curve's surface (`landscape surface --curve`): the curve against the line, and
the ends and bend(s) marked on the plane.

`landscape plot FILE` (every view) adds `<stem>_curve.<fmt>` for such a file.

Example:
    >>> artists = plot_curve_profile(read_surface("surfaces/curve_1d.h5"), "train", ax)  # doctest: +SKIP
    >>> marks = plot_curve_nodes(read_surface("surfaces/curve.h5"), ax)                   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import LandscapeError
from ..io.outputs import check_output
from .figure_files import save_figure
from .figure_style import FONT_PT, SINGLE_FIGSIZE
from .plotting import plot_contour

if TYPE_CHECKING:
    from ..core.loss_surface import Surface

__all__ = ["is_curve_surface", "plot_curve_profile", "plot_curve_nodes", "bezier_path", "save_curve_plot"]


def is_curve_surface(surface: Surface) -> bool:
    return surface.attrs.get("dir_kind") in ("curve", "curve_plane") and isinstance(surface.attrs.get("curve"), dict)


def plot_curve_profile(surface: Surface, split: str = "train", ax: Any = None) -> dict[str, Any]:
    """The loss of `split` along the curve and along the line against t, the barrier in the
    legend; returns {"curve": Line2D, "line": Line2D}."""
    name = f"{split}_loss"
    if surface.ndim != 1 or name not in surface.arrays or f"line_{name}" not in surface.arrays:
        raise LandscapeError(f"{surface.path} holds no 1D curve profile of {name} (make one with "
                             "`landscape surface --curve FILE --x=0:1:21`)")
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.gca()
    metrics = surface.metrics
    out = {}
    for path, key, style in (("curve", name, "-o"), ("line", f"line_{name}", "--s")):
        b = metrics.get(f"{path}_barrier_{name}")
        label = f"{split}: {path}" + ("" if b is None else f" (barrier {b:.3g})")
        (out[path],) = ax.plot(surface.x, surface.arrays[key], style, ms=3, lw=1.2, label=label)
    ax.set_xlabel("t", fontsize=FONT_PT)
    ax.set_ylabel("loss (BatchNorm recomputed at each t)", fontsize=FONT_PT)
    ax.legend(fontsize=FONT_PT)
    return out


def bezier_path(nodes: list[list[float]], n: int = 101) -> np.ndarray:
    """[n, 2] plane coordinates of the quadratic Bezier curve with control points `nodes`."""
    (a, c, b) = (np.asarray(p, dtype=float) for p in nodes)
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * a + 2 * t * (1 - t) * c + t**2 * b


def plot_curve_nodes(surface: Surface, ax: Any) -> dict[str, Any]:
    """Mark the ends and bend(s) on a 2D view of the curve's plane, and draw the curve (bezier:
    exact, it lies in the plane; polychain: its projection) and the line; returns the artists."""
    info = surface.attrs.get("curve") or {}
    nodes = info.get("nodes")
    if surface.ndim != 2 or not isinstance(nodes, list) or len(nodes) < 3:
        raise LandscapeError(f"{surface.path} is not the plane of a curve (make one with "
                             "`landscape surface --curve FILE --x=... --y=...`)")
    pts = np.asarray(nodes, dtype=float)
    path = bezier_path(nodes) if info.get("kind") == "bezier" else pts
    (curve,) = ax.plot(path[:, 0], path[:, 1], "-", color="tab:red", lw=1.4, label="curve")
    (line,) = ax.plot(pts[[0, -1], 0], pts[[0, -1], 1], "--", color="0.3", lw=1.0, label="line")
    ends = ax.scatter(pts[[0, -1], 0], pts[[0, -1], 1], marker="o", color="k", zorder=5, label="ends")
    bends = ax.scatter(pts[1:-1, 0], pts[1:-1, 1], marker="^", color="tab:red", zorder=5, label="bend")
    ax.legend(fontsize=FONT_PT, loc="best")
    return {"curve": curve, "line": line, "ends": ends, "bends": bends}


def save_curve_plot(surface: Surface, out_dir: str | Path, fmt: str = "png", dpi: int = 150) -> Path | None:
    """Write `<stem>_curve.<fmt>` for a curve's surface (1D: curve vs line for each split; 2D:
    train-loss contours with the ends and bend marked); its path, else None."""
    from matplotlib.figure import Figure

    if not is_curve_surface(surface):
        return None
    path = Path(out_dir) / f"{Path(surface.path).stem}_curve.{fmt}"
    check_output(path, fmt, "plot")
    fig = Figure(figsize=SINGLE_FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    if surface.ndim == 1:
        for split in ("train", "test"):
            if f"line_{split}_loss" in surface.arrays:
                plot_curve_profile(surface, split, ax)
    else:
        loss = "train_loss" if "train_loss" in surface.arrays else "test_loss"
        plot_contour(surface, loss, ax)
        plot_curve_nodes(surface, ax)
    save_figure(fig, path, fmt, dpi, "write plot")
    return path
