"""Topology of a 2D surface: local minima, the merge tree of its sublevel sets, basin areas.

The sublevel set {loss <= t} of a surface grows as t rises: a new component is born at each
local minimum, and two components merge at a saddle. By the elder rule the component whose
minimum is higher (the younger) dies there, and the pair (birth, death) = (its minimum, the
saddle) is its 0-dimensional persistence pair; depth = death - birth is how far the loss must
rise to leave that basin for a deeper one. The deepest minimum of each connected region of the
grid never dies (death None).

Choices, stated:

- **8-connectivity**: cells sharing an edge or a corner are neighbours. With 4-connectivity a
  valley running diagonally across the grid (random directions put valleys at any angle) is a
  chain of separate "minima"; 8-connectivity is also what image libraries use for minima
  (scikit-image's `local_minima` default) and what a cubical complex of the cells gives.
- **Excluded cells**: points not computed yet, and non-finite losses (a diverged net), are not
  part of the surface: they connect nothing. A grid cut in two by them has two regions, each
  with its own deepest minimum that never dies.
- **Ties**: cells are ordered by (loss, grid index), so equal values are processed in a fixed
  order; a merge at the level of both births (depth 0, an artefact of a plateau or exact tie) is
  not a pair. A local minimum is therefore a connected plateau of equal values whose
  neighbours are all higher, counted once.
- **Basins**: each cell belongs to the basin of the deepest minimum of its own sublevel
  component at its own level (the component of {loss <= loss(cell)} that holds it). For a
  minimum that dies at saddle s, its basin is its sublevel component just below s; the deepest
  minimum's basin is every cell not in another's. The basins partition the computed cells.

The algorithm is a union-find over the cells in increasing order (O(n log n)); a library
(gudhi's cubical complexes) gives the same pairs, which the tests check, but neither the
basins nor the minima's places, and it would be a compiled dependency for 60 lines.

Example:
    >>> x = np.linspace(-2, 2, 41)
    >>> X, Y = np.meshgrid(x, x, indexing="ij")
    >>> t = sublevel_topology(X**4 - 2 * X**2 + Y**2)       # minima at (+-1, 0), saddle at 0
    >>> len(t.basins), [round(b.depth, 6) for b in t.basins if b.death is not None]
    (2, [1.0])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Basin", "Topology", "sublevel_topology", "topology_metrics", "topology_line", "MAX_PAIRS"]

MAX_PAIRS = 64  # persistence pairs kept in a file's metrics (the deepest; `local_minima` counts all)
_OFFSETS = tuple((di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1) if (di, dj) != (0, 0))


@dataclass(frozen=True)
class Basin:
    """One local minimum: its grid index, its loss (birth), and the saddle where it dies."""

    index: tuple[int, int]
    birth: float
    death: float | None = None  # None: the deepest minimum of its region (never dies)
    saddle: tuple[int, int] | None = None

    @property
    def depth(self) -> float | None:
        return None if self.death is None else self.death - self.birth


@dataclass(frozen=True)
class Topology:
    """The minima of a surface (deepest first: those that never die, then by depth) and the
    basin label of every cell ([nx, ny], an index into `basins`; -1 for excluded cells)."""

    basins: tuple[Basin, ...]
    labels: np.ndarray

    def basin_of(self, index: tuple[int, int]) -> int:
        """The basin (index into `basins`) that holds grid cell `index`; -1 if excluded."""
        return int(self.labels[index])

    def area(self, basin: int) -> float:
        """Fraction of the included cells in basin `basin`."""
        return float((self.labels == basin).sum() / max(int((self.labels >= 0).sum()), 1))


def sublevel_topology(values: np.ndarray, mask: np.ndarray | None = None) -> Topology:
    """Minima, persistence pairs and basins of a 2D array (see the module docstring).

    `mask` (same shape, bool) marks the cells to include; non-finite values are excluded too.
    """
    z = np.asarray(values, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"topology needs a 2D array, got shape {z.shape}")
    nx, ny = z.shape
    ok = np.isfinite(z) if mask is None else np.asarray(mask, bool) & np.isfinite(z)
    flat = z.ravel()
    order = np.flatnonzero(ok.ravel())
    order = order[np.argsort(flat[order], kind="stable")]  # (value, index): a total order
    rank = np.full(z.size, -1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    parent = np.full(z.size, -1, dtype=np.int64)  # union-find over processed cells
    root_basin: dict[int, int] = {}  # root cell -> basin id (its oldest minimum)
    births: list[int] = []  # basin id -> cell of its minimum
    deaths: dict[int, int] = {}  # basin id -> cell of its saddle
    alias: dict[int, int] = {}  # a depth-0 basin -> the one it is part of
    label = np.full(z.size, -1, dtype=np.int64)

    def find(c: int) -> int:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    values = flat[order]
    cuts = np.flatnonzero(np.diff(values)) + 1  # groups of equal values
    for group in np.split(order, cuts):
        for c in group.tolist():
            _add_cell(c, nx, ny, parent, find, rank, flat, root_basin, births, deaths, alias)
        for c in group.tolist():  # labelled once its whole level is in: ties see each other
            label[c] = root_basin[find(c)]
    return _assemble(z, births, deaths, alias, label)


def _add_cell(c: int, nx: int, ny: int, parent: np.ndarray, find: Callable[[int], int], rank: np.ndarray,
              flat: np.ndarray, root_basin: dict[int, int], births: list[int], deaths: dict[int, int],
              alias: dict[int, int]) -> None:
    """Union-find step for cell `c`: a new basin, or the merge of its neighbours' components
    into the oldest (the elder rule); a younger one dies here, or is a tie when at its own level."""
    i, j = divmod(c, ny)
    roots = set()
    for di, dj in _OFFSETS:
        a, b = i + di, j + dj
        if 0 <= a < nx and 0 <= b < ny and parent[a * ny + b] >= 0:
            roots.add(find(a * ny + b))
    parent[c] = c
    if not roots:
        root_basin[c] = len(births)
        births.append(c)
        return
    oldest = min(roots, key=lambda r: rank[births[root_basin[r]]])  # its minimum came first
    keep = root_basin[oldest]
    for r in roots - {oldest}:
        dead = root_basin.pop(r)
        if flat[c] > flat[births[dead]]:
            deaths[dead] = c
        else:  # merged at its own level: a plateau or a tie, not a basin
            alias[dead] = keep
        parent[r] = oldest
    parent[c] = oldest


def _assemble(z: np.ndarray, births: list[int], deaths: dict[int, int], alias: dict[int, int],
              label: np.ndarray) -> Topology:
    """Drop the depth-0 basins, sort the rest (never-dying first, then deepest), relabel cells."""
    ny = z.shape[1]
    flat = z.ravel()

    def resolve(b: int) -> int:
        while b in alias:
            b = alias[b]
        return b

    real = [b for b in range(len(births)) if b not in alias]

    def key(b: int) -> tuple[int, float, int]:
        d = deaths.get(b)
        return (0, float(flat[births[b]]), b) if d is None else (1, -float(flat[d] - flat[births[b]]), b)

    real.sort(key=key)
    new_id = {b: k for k, b in enumerate(real)}
    lut = np.array([new_id[resolve(b)] for b in range(len(births))] + [-1], dtype=np.int64)
    labels = lut[label].reshape(z.shape)  # -1 indexes the trailing -1
    basins = []
    for b in real:
        m, d = births[b], deaths.get(b)
        basins.append(Basin(
            index=divmod(m, ny), birth=float(flat[m]),
            death=None if d is None else float(flat[d]), saddle=None if d is None else divmod(d, ny),
        ))
    return Topology(tuple(basins), labels)


def topology_metrics(loss: np.ndarray, computed: np.ndarray, centre: tuple[int, int]) -> dict[str, object]:
    """The metrics a 2D surface stores (keys below; definitions in the module docstring).

    - `local_minima`: how many (8-connected; plateaus once; excluded cells connect nothing).
    - `persistence`: [birth, death] of the `MAX_PAIRS` deepest basins, never-dying ones first
      (death None), then by depth.
    - `centre_basin_fraction`: fraction of the included cells in the centre's basin.
    - `centre_basin_level`, `centre_basin_depth`: the saddle where the centre's basin merges
      into a deeper one, and its height above the basin's minimum (None: the centre lies in
      the deepest basin of its region).
    """
    t = sublevel_topology(loss, computed)
    out: dict[str, object] = {
        "local_minima": len(t.basins),
        "persistence": [[b.birth, b.death] for b in t.basins[:MAX_PAIRS]],
    }
    k = t.basin_of(centre)
    if k >= 0:
        b = t.basins[k]
        out["centre_basin_fraction"] = t.area(k)
        out["centre_basin_level"] = b.death
        out["centre_basin_depth"] = b.depth
    return out


def topology_line(m: dict[str, object]) -> str | None:
    """`landscape info`'s line for the topology metrics, or None when there are none.

    Example:
        >>> topology_line({"local_minima": 2, "persistence": [[0.0, None], [-1.0, 0.0]],
        ...                "centre_basin_fraction": 0.25, "centre_basin_level": 0.0})
        "2 local minima; depths 1 (+1 never dies); centre's basin 25% of the grid, merges at 0"
    """
    n = m.get("local_minima")
    pairs = m.get("persistence")
    if not isinstance(n, int) or not isinstance(pairs, list):
        return None
    depths = [d - b for b, d in pairs if isinstance(d, (int, float)) and isinstance(b, (int, float))]
    essential = sum(1 for p in pairs if p[1] is None)
    shown = ", ".join(f"{d:.3g}" for d in depths[:4]) + (", ..." if len(depths) > 4 else "")
    line = f"{n} local minim{'um' if n == 1 else 'a'}"
    if depths:
        line += f"; depths {shown} (+{essential} never dies)"
    frac = m.get("centre_basin_fraction")
    if isinstance(frac, float):
        level = m.get("centre_basin_level")
        where = f", merges at {level:.4g}" if isinstance(level, (int, float)) else " (the deepest)"
        line += f"; centre's basin {100 * frac:.3g}% of the grid{where}"
    return line
