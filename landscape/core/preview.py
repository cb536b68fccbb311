"""Previews of a surface still being computed: the finest complete level over the whole range.

Points are computed coarse to fine (`landscape.core.grid.coarse_to_fine`), so a partial file holds
complete levels: full sub-grids (every 2^k-th index of each axis, both ends included). `preview`
turns a partial surface into the finest such sub-grid (coordinates and arrays sliced), with
`attrs["preview"]` saying which (levels counted from each axis's zero coordinate, as
`landscape.io.storage.SurfaceWriter.pending` orders them), so that `plot`, `report` and `info`
show the whole range early instead of a strip. A complete surface, or one with no complete level (a file computed in
another order), is returned as it is. `thin` takes such a sub-grid of a huge complete surface, so
that a report of it stays small.

Example:
    >>> s = preview(read_surface("surfaces/resnet20.h5"))  # doctest: +SKIP
    >>> preview_note(s)  # doctest: +SKIP
    'preview: 27x27 of 51x51, every 2nd point; 800/2601 computed'
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .grid import axis_anchor, level_points, level_spacings

if TYPE_CHECKING:  # annotations only
    from .loss_surface import Surface

__all__ = ["Level", "complete_level", "preview", "preview_note", "level_key", "surface_anchors", "thin", "thinned_note"]


@dataclass(frozen=True)
class Level:
    """A complete level of a partial grid: its spacing and the kept indices of each axis."""

    spacing: int
    indices: tuple[np.ndarray, ...]  # per axis, increasing

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(i) for i in self.indices)


def surface_anchors(surface: Surface) -> tuple[int, ...]:
    """The index each axis's levels are anchored at: its zero coordinate, else 0 (as computed)."""
    axes = (surface.x,) if surface.y is None else (surface.x, surface.y)
    return tuple(axis_anchor(a) for a in axes)[: surface.computed.ndim]


def complete_level(computed: np.ndarray, anchors: tuple[int, ...] | None = None) -> Level | None:
    """The finest level whose every point is computed (None when not even the coarsest is);
    levels as `landscape.core.grid.point_levels` with these anchors.

    Example:
        >>> done = np.zeros((5, 5), bool); done[::2, ::2] = True
        >>> lv = complete_level(done); lv.spacing, lv.shape
        (2, (3, 3))
        >>> complete_level(np.zeros((5, 5), bool)) is None
        True
    """
    computed = np.asarray(computed, dtype=bool)
    best = None
    anchors = anchors if anchors is not None else tuple(0 for _ in computed.shape)
    for spacing in level_spacings(computed.shape, anchors):
        indices = tuple(level_points(n, spacing, a) for n, a in zip(computed.shape, anchors))
        if not computed[np.ix_(*indices)].all():
            break
        best = Level(spacing, indices)
    return best


def level_key(surface: Surface) -> tuple[int | None, int]:
    """What a preview shows, as a comparable value: (spacing of the complete level or None,
    points done when complete else -1). It changes when a new level completes."""
    if surface.done == surface.computed.size:
        return (1, surface.done)
    level = complete_level(surface.computed, surface_anchors(surface))
    return (None if level is None else level.spacing, -1)


def preview(surface: Surface) -> Surface:
    """The finest complete level of a partial surface as a surface of its own (else unchanged).

    Arrays of the grid's shape (values, `point_seconds`, `point_rank`) are sliced to the
    sub-grid; `attrs["preview"]` records the spacing, both shapes and the points done.
    """
    if surface.done == surface.computed.size or surface.computed.size == 0:
        return surface
    level = complete_level(surface.computed, surface_anchors(surface))
    if level is None or level.spacing == 1:
        return surface
    take = np.ix_(*level.indices)
    arrays = {
        k: np.asarray(v)[take] if np.shape(v) == surface.shape else v for k, v in surface.arrays.items()
    }
    xi = level.indices[0]
    yi = level.indices[1] if surface.y is not None else None
    note: dict[str, Any] = {
        "spacing": level.spacing,
        "shape": list(level.shape),
        "of": list(surface.shape),
        "done": surface.done,
        "total": int(surface.computed.size),
    }
    return replace(
        surface,
        x=np.asarray(surface.x)[xi],
        y=None if yi is None or surface.y is None else np.asarray(surface.y)[yi],
        arrays=arrays,
        computed=np.asarray(surface.computed)[take],
        attrs={**surface.attrs, "preview": note},
    )


def preview_note(surface: Surface) -> str | None:
    """'preview: 13x13 of 51x51, every 4th point; 700/2601 computed' for a preview, else None."""
    p = surface.attrs.get("preview")
    if not isinstance(p, dict):
        return None
    try:
        shape = "x".join(str(int(n)) for n in p["shape"])
        full = "x".join(str(int(n)) for n in p["of"])
        return (
            f"preview: {shape} of {full}, every {_ordinal(int(p['spacing']))} point; "
            f"{int(p['done'])}/{int(p['total'])} computed"
        )
    except (KeyError, TypeError, ValueError):  # a hand-made attribute: no note rather than an error
        return None


def _ordinal(n: int) -> str:
    """'2nd', '4th', '32nd'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def thin(surface: Surface, max_points: int) -> Surface:
    """`surface` with at most about `max_points` points per axis: every k-th point (from the
    centre, both ends kept, as `level_points`), so that a view of a huge grid stays small;
    `attrs["thinned"]` records the spacing and both shapes. A small surface is unchanged.

    Example:
        >>> thin(read_surface("surfaces/huge.h5"), 201).attrs["thinned"]  # doctest: +SKIP
        {'spacing': 3, 'shape': [201, 201], 'of': [601, 601]}
    """
    spacing = max(-(-(n - 1) // max(max_points - 1, 1)) for n in surface.shape)
    if spacing <= 1:
        return surface
    anchors = surface_anchors(surface)
    indices = [level_points(n, spacing, a) for n, a in zip(surface.shape, anchors)]
    take = np.ix_(*indices)
    arrays = {k: np.asarray(v)[take] if np.shape(v) == surface.shape else v for k, v in surface.arrays.items()}
    traj = surface.trajectory
    if traj:  # a path of as many points as a huge grid, thinned alike
        step = max(1, -(-max(np.size(v) for v in traj.values()) // (4 * max_points)))
        traj = {k: np.asarray(v)[::step] for k, v in traj.items()}
    note = {"spacing": spacing, "shape": [len(i) for i in indices], "of": list(surface.shape)}
    return replace(
        surface,
        x=np.asarray(surface.x)[indices[0]],
        y=None if surface.y is None else np.asarray(surface.y)[indices[1]],
        arrays=arrays,
        computed=np.asarray(surface.computed)[take],
        attrs={**surface.attrs, "thinned": note},
        trajectory=traj,
    )


def thinned_note(surface: Surface) -> str | None:
    """'shown at every 3rd point (201x201 of 601x601)' for a thinned surface, else None."""
    p = surface.attrs.get("thinned")
    if not isinstance(p, dict):
        return None
    try:
        shape = "x".join(str(int(n)) for n in p["shape"])
        full = "x".join(str(int(n)) for n in p["of"])
        return f"shown at every {_ordinal(int(p['spacing']))} point ({shape} of {full})"
    except (KeyError, TypeError, ValueError):
        return None
