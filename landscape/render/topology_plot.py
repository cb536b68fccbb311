"""`landscape plot --minima`: the local minima of a loss (`landscape.core.topology`) over a 2D view.

The deepest minimum (one per connected region of computed points: it never dies) is a star;
every other minimum a triangle, the deepest few labelled with their depth (the rise of the
loss from the minimum to the saddle where its basin merges into a deeper one).

Example:
    >>> fig = Figure(); ax = fig.add_subplot()
    >>> plot_contour(surface, "train_loss", ax)
    >>> drawn = plot_minima(surface, "train_loss", ax)       # {"deepest": ..., "minima": ..., "labels": [...]}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.topology import sublevel_topology
from ..errors import LandscapeError
from .figure_style import FONT_PT
from .views import surface_values

if TYPE_CHECKING:
    from ..core.loss_surface import Surface

__all__ = ["plot_minima", "LABELLED"]

LABELLED = 5  # depth labels on the deepest minima that die (more would cover the contours)


def plot_minima(surface: Surface, surf: str, ax: Any, labelled: int = LABELLED) -> dict[str, Any]:
    """Mark the local minima of array `surf` (2D) on `ax`; return the artists by role.

    Returns {"deepest": PathCollection, "minima": PathCollection or None, "labels": [Text]}.
    """
    if surface.y is None:
        raise LandscapeError(f"{surface.path} is a 1D curve; --minima marks the minima of a 2D surface")
    z = surface_values(surface, surf)
    t = sublevel_topology(z)
    x, y = np.asarray(surface.x), np.asarray(surface.y)
    deepest = [b for b in t.basins if b.death is None]
    others = [b for b in t.basins if b.death is not None]
    out: dict[str, Any] = {"labels": []}
    out["deepest"] = ax.scatter(
        [x[b.index[0]] for b in deepest], [y[b.index[1]] for b in deepest], marker="*", s=120,
        color="tab:red", edgecolors="white", linewidths=0.6, zorder=5, label="deepest minimum",
    )
    out["minima"] = None
    if others:
        out["minima"] = ax.scatter(
            [x[b.index[0]] for b in others], [y[b.index[1]] for b in others], marker="v", s=36,
            color="tab:orange", edgecolors="black", linewidths=0.5, zorder=5,
            label=f"local minima ({len(others)})",
        )
    for b in others[:labelled]:  # `basins` lists the deepest first
        out["labels"].append(ax.annotate(
            f"{b.depth:.2g}", (x[b.index[0]], y[b.index[1]]), xytext=(3, -9), textcoords="offset points",
            fontsize=FONT_PT, color="tab:orange", zorder=6,
        ))
    return out
