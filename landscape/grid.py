"""Grid specs (`-1:1:51`) and the order of grid points (chunks: `landscape.executor`).

A grid of shape [nx] or [nx, ny] stores value [i, j] at (x[i], y[j]). Points are numbered in
C order (flat = i * ny + j), which is right for non-square grids.

Example:
    >>> g = Grid(Axis.parse("-1:1:3"), Axis.parse("0:1:2"))
    >>> g.shape, g.coords_of([0, 5]).tolist()
    ((3, 2), [[-1.0, 0.0], [1.0, 1.0]])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import LandscapeError

__all__ = ["Axis", "Grid", "MAX_GRID_POINTS"]

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
