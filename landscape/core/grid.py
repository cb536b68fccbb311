"""Grid specs (`-1:1:51`) and the order of grid points (chunks: `landscape.jobs.executor`).

A grid of shape [nx] or [nx, ny] stores value [i, j] at (x[i], y[j]). Points are numbered in
C order (flat = i * ny + j), which is right for non-square grids.

Points are computed coarse to fine (`coarse_to_fine`): first every 2^K-th index of each axis
(counted from the centre, both ends always included), then each level adds the points that
halve the spacing, down to spacing 1. After each level the points done so far form a full
sub-grid over the whole range, so a file still being computed can be drawn
(`landscape.core.preview`): for -1:1:51 by -1:1:51, the spacing-2 level (27x27 = 729 of 2601 points,
the centre included) is complete after 28% of the run.

Example:
    >>> g = Grid(Axis.parse("-1:1:3"), Axis.parse("0:1:2"))
    >>> g.shape, g.coords_of([0, 5]).tolist()
    ((3, 2), [[-1.0, 0.0], [1.0, 1.0]])
    >>> g = Grid(Axis.parse("-1:1:51"), Axis.parse("-1:1:51"))
    >>> g.anchors(), len(level_points(51, 2, anchor=25)) ** 2, int(g.order()[0])
    ((25, 25), 729, 0)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ..errors import LandscapeError

__all__ = [
    "Axis",
    "Grid",
    "MAX_GRID_POINTS",
    "axis_anchor",
    "level_spacings",
    "level_points",
    "point_levels",
    "coarse_to_fine",
    "level_breaks",
]

# The largest surface any command computes or reads: 10 million grid points (a 3162 x 3162
# grid; 80 MB per float64 array). Larger grids are refused before anything is allocated.
MAX_GRID_POINTS = 10_000_000


@dataclass(frozen=True)
class Axis:
    """`num` evenly spaced coordinates from `start` to `stop` inclusive."""

    start: float
    stop: float
    num: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and math.isfinite(self.stop)):
            raise LandscapeError(f"grid axis {self.spec()} has a non-finite end")
        if self.num < 1:
            raise LandscapeError(f"grid axis {self.spec()} needs at least 1 point")
        if self.num > MAX_GRID_POINTS:
            raise LandscapeError(
                f"grid axis {self.spec()}: {self.num} points is more than the {MAX_GRID_POINTS} a "
                "surface may hold; use fewer points (e.g. 401), or split the range over several files"
            )
        if self.num > 1 and not self.stop > self.start:
            raise LandscapeError(
                f"grid axis {self.spec()}: MIN must be below MAX (write MIN:MAX:NUM, e.g. -1:1:51)"
            )
        if self.num > 1 and not _distinct(self.start, self.stop, self.num):
            raise LandscapeError(
                f"grid axis {self.spec()}: its points collide in float64 (the range is too small for "
                f"{self.num} distinct coordinates, or too large to subtract); widen the range or use fewer points"
            )

    @classmethod
    def parse(cls, spec: str, name: str = "x") -> Axis:
        """Parse `MIN:MAX:NUM` (for example `-1:1:51`)."""
        parts = str(spec).split(":")
        if len(parts) != 3:
            raise LandscapeError(
                f"--{name}={spec!r} is not MIN:MAX:NUM (for example --{name}=-1:1:51)"
            )
        try:
            start, stop = float(parts[0]), float(parts[1])
            num = int(parts[2])
        except ValueError:
            raise LandscapeError(
                f"--{name}={spec!r}: MIN and MAX must be numbers and NUM an integer "
                f"(for example --{name}=-1:1:51)"
            ) from None
        try:
            return cls(start, stop, num)
        except LandscapeError as e:
            raise LandscapeError(f"--{name}={spec!r}: {str(e).split(': ', 1)[-1]}") from None

    def spec(self) -> str:
        """`MIN:MAX:NUM`, short where that is exact (it identifies the grid in surface files)."""
        return f"{_exact(self.start)}:{_exact(self.stop)}:{self.num}"

    def coords(self) -> np.ndarray:
        return np.linspace(self.start, self.stop, self.num, dtype=np.float64)


def _distinct(start: float, stop: float, num: int) -> bool:
    """Whether `num` linspace coordinates from `start` to `stop` are finite and strictly
    increasing in float64 (what a surface file's reader requires). Exact: the coordinates are
    computed only when the step is within a few units in the last place of the ends."""
    with np.errstate(over="ignore", invalid="ignore"):
        step = (stop - start) / (num - 1)
    if not math.isfinite(step):
        return False
    far = max(abs(start), abs(stop), stop - start)
    if far < 1e300 and step > 8 * math.ulp(far):
        return True  # linspace's rounding (an ulp or two per value) cannot reorder or overflow these
    with np.errstate(over="ignore", invalid="ignore"):
        coords = np.linspace(start, stop, num, dtype=np.float64)
    return bool(np.isfinite(coords).all() and (np.diff(coords) > 0).all())


def _exact(value: float) -> str:
    """`1`, `0.1`, `1e+20`; the full repr only when the short form would round the value."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


@dataclass(frozen=True)
class Grid:
    """A 1D (y is None) or 2D grid of step sizes along the directions."""

    x: Axis
    y: Axis | None = None

    def __post_init__(self) -> None:
        if self.num_points > MAX_GRID_POINTS:
            raise LandscapeError(
                f"grid {self.x.spec()} by {self.y.spec() if self.y else ''} has {self.num_points} "
                f"points, more than the {MAX_GRID_POINTS} a surface may hold; use fewer points per "
                "axis, or split the range over several files"
            )

    @classmethod
    def from_coords(cls, x: np.ndarray, y: np.ndarray | None = None) -> Grid:
        """The grid whose axes run over these coordinates (a surface's `x`, `y`)."""
        ax = Axis(float(x[0]), float(x[-1]), len(x))
        return cls(ax, Axis(float(y[0]), float(y[-1]), len(y)) if y is not None else None)

    @property
    def ndim(self) -> int:
        return 1 if self.y is None else 2

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.x.num,) if self.y is None else (self.x.num, self.y.num)

    @property
    def num_points(self) -> int:
        return int(np.prod(self.shape))

    def coords_of(self, flat: np.ndarray | list[int]) -> np.ndarray:
        """Coordinates [k, ndim] (float64) of the points with these flat indices."""
        flat = np.asarray(flat, dtype=np.int64)
        xs = self.x.coords()
        if self.y is None:
            return xs[flat][:, None]
        ix, iy = np.divmod(flat, self.y.num)
        return np.stack([xs[ix], self.y.coords()[iy]], axis=1)

    def anchors(self) -> tuple[int, ...]:
        """Per axis, the index its levels are anchored at: its zero coordinate, else 0."""
        return tuple(axis_anchor(a.coords()) for a in (self.x, self.y) if a is not None)

    def order(self) -> np.ndarray:
        """Flat indices of every point, coarse to fine, anchored at the centre (`coarse_to_fine`)."""
        return coarse_to_fine(self.shape, self.anchors())

    def center_index(self) -> int | None:
        """Flat index of the point at (0, 0) if the grid has it, else None."""
        idx = []
        for axis in (self.x, self.y):
            if axis is None:
                continue
            hits = np.flatnonzero(np.isclose(axis.coords(), 0.0, atol=1e-12))
            if not len(hits):
                return None
            idx.append(int(hits[0]))
        return int(np.ravel_multi_index(tuple(idx), self.shape))


# ---------------------------------------------------------------------------------------------
# coarse-to-fine order
#
# An axis's levels are anchored at one index (`anchors`, default 0): the level at spacing s keeps
# the indices congruent to the anchor modulo s, and both ends. Surfaces anchor each axis at its
# zero coordinate (`axis_anchor`: the trained weights), so that every preview holds the centre:
# on the default -1:1:51 axis, index 25 is odd and would otherwise only come in the last level.


def axis_anchor(coords: np.ndarray) -> int:
    """Index of the coordinate 0 (the centre of the landscape) if the axis has it, else 0.

    Example:
        >>> axis_anchor(np.linspace(-1, 1, 51)), axis_anchor(np.linspace(0.5, 1, 3))
        (25, 0)
    """
    hits = np.flatnonzero(np.isclose(np.asarray(coords, dtype=np.float64), 0.0, atol=1e-12))
    return int(hits[0]) if len(hits) else 0


def _anchors(shape: tuple[int, ...], anchors: tuple[int, ...] | None) -> tuple[int, ...]:
    return tuple(0 for _ in shape) if anchors is None else tuple(int(a) for a in anchors)


def level_spacings(shape: tuple[int, ...], anchors: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """Index spacings of the levels, coarsest first: powers of two down to 1.

    The coarsest is the largest power of two within the longest reach from an anchor to an end
    of its axis, so level 0 holds the ends and the anchor of each axis.

    Example:
        >>> level_spacings((51, 51)), level_spacings((51, 51), (25, 25)), level_spacings((1, 1))
        ((32, 16, 8, 4, 2, 1), (16, 8, 4, 2, 1), (1,))
    """
    reach = max(max(a, n - 1 - a) for n, a in zip(shape, _anchors(shape, anchors)))
    top = 1 << (reach.bit_length() - 1) if reach > 1 else 1
    return tuple(top >> k for k in range(top.bit_length()))


def level_points(n: int, spacing: int, anchor: int = 0) -> np.ndarray:
    """Indices of an axis of `n` points kept at `spacing`: every `spacing`-th from the anchor
    (both ways), and both ends.

    Example:
        >>> level_points(51, 4).tolist()
        [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 50]
        >>> level_points(51, 16, anchor=25).tolist(), level_points(1, 4).tolist()
        ([0, 9, 25, 41, 50], [0])
    """
    idx = np.arange(anchor % spacing, n, spacing, dtype=np.int64)
    return np.union1d(idx, np.array([0, n - 1], dtype=np.int64))


def point_levels(shape: tuple[int, ...], anchors: tuple[int, ...] | None = None) -> np.ndarray:
    """The level of every point (int array of `shape`; 0 = coarsest, see `level_spacings`).

    A point is in the first level whose spacing keeps its index on every axis; the points of
    levels 0..k together are the full sub-grid `level_points(n, spacing_k, anchor)` of each axis.

    Example:
        >>> point_levels((5,)).tolist(), point_levels((3, 3)).tolist()
        ([0, 2, 1, 2, 0], [[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    """
    anchors = _anchors(shape, anchors)
    spacings = level_spacings(shape, anchors)
    per_axis = []
    for n, anchor in zip(shape, anchors):
        lv = np.full(n, len(spacings) - 1, dtype=np.int64)
        for k in range(len(spacings) - 1, -1, -1):  # finest first: coarser levels overwrite
            lv[level_points(n, spacings[k], anchor)] = k
        per_axis.append(lv)
    return functools.reduce(np.maximum, np.ix_(*per_axis))  # [n0, n1, ...]: the finer axis decides


def coarse_to_fine(shape: tuple[int, ...], anchors: tuple[int, ...] | None = None) -> np.ndarray:
    """Flat indices of every grid point, level by level (coarsest first), C order in a level.

    Example:
        >>> coarse_to_fine((5,)).tolist(), coarse_to_fine((3, 3)).tolist()
        ([0, 4, 2, 1, 3], [0, 2, 6, 8, 1, 3, 4, 5, 7])
    """
    levels = point_levels(tuple(int(n) for n in shape), anchors).ravel()
    return np.argsort(levels, kind="stable").astype(np.int64)


def level_breaks(grid: Grid, flat: np.ndarray) -> tuple[int, ...]:
    """Positions in `flat` (points in coarse-to-fine order, e.g. the pending ones) where a new
    level starts: a chunk that ends there puts each level in the file as soon as it is done.

    Example:
        >>> g = Grid(Axis.parse("-1:1:5"))
        >>> g.order().tolist(), level_breaks(g, g.order())
        ([0, 2, 4, 1, 3], (3,))
    """
    levels = point_levels(grid.shape, grid.anchors()).ravel()[np.asarray(flat, dtype=np.int64)]
    return tuple(int(i) + 1 for i in np.flatnonzero(np.diff(levels)))
