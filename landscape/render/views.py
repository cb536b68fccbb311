"""What a figure shows, decided without drawing: values, contour levels, colour ranges, limits.

The pure half of the figures (nothing is drawn here; matplotlib's tick locator only picks round
contour levels): which arrays a surface can show, the values a view draws (log, clipping, the
curvature ratio), contour levels and colour ranges shared by several panels (`shared_log_scale`
for the comparison figure and the report alike), whether several surfaces can share one scale,
and the limits on what one figure may draw. The words on a figure (labels, titles, captions) are
`landscape.render.labels`. `landscape.render.plotting` and `landscape.render.report` draw with
these, so the matplotlib figures and the HTML report agree.

Example:
    >>> contour_levels([np.linspace(0.1, 3.0, 50)], 0.1, 10.0, 0.5)[:3]  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import LandscapeError

if TYPE_CHECKING:  # annotations only
    from ..core.loss_surface import Surface

__all__ = [
    "available_surfs",
    "default_surfs",
    "eig_ratio",
    "surface_values",
    "display_cap",
    "auto_zmax",
    "finite_values",
    "contour_levels",
    "colour_range",
    "comparison_problem",
    "as_drawable",
    "check_pixels",
    "padded_range",
    "default_zscale",
    "refine_grid",
    "ZSCALES",
    "NothingToDraw",
    "SURFS",
    "KINDS",
    "KINDS_2D",
    "PAPER_LEVELS",
    "EIG_RATIO_MAX",
    "MIN_LEVELS_DRAWN",
    "MAX_LEVELS",
    "MAX_PIXELS",
    "SPLIT_COLORS",
]

SURFS = ("train_loss", "train_acc", "test_loss", "test_acc")
KINDS = ("auto", "line", "contour", "contourf", "heatmap", "surface", "all")
KINDS_2D = ("contour", "contourf", "heatmap", "surface")
PAPER_LEVELS = (0.1, 10.0, 0.5)  # the paper's contour defaults: vmin, vmax, vlevel
EIG_RATIO_MAX = 0.5  # the paper's |lambda_min / lambda_max| colour scale is 0..0.5
MIN_LEVELS_DRAWN = 4  # fewer paper-default levels inside the data range: pick levels from the data
MAX_LEVELS = 1000  # contour levels one figure may draw (--vlevel 1e-9 would ask for billions)
ZSCALES = ("linear", "log")  # z of a 3D view: the values, or log10 of them (the paper's loss views)
MAX_PIXELS = 50_000_000  # pixels one raster figure may have (about 200 MB of RGBA while drawn)


class NothingToDraw(LandscapeError):
    """An array whose computed points are all NaN or infinite: its views are skipped with a note."""


# one colour per split in the figures and the report (matplotlib's tab:blue and tab:orange)
SPLIT_COLORS = {"train": "#1f77b4", "test": "#ff7f0e"}


def available_surfs(surface: Surface) -> list[str]:
    """What `--surf` can name for this file: loss/accuracy arrays, curvature maps, `eig_ratio`."""
    names = [k for k in surface.arrays if k.endswith(("_loss", "_acc"))]
    names.sort(key=lambda k: SURFS.index(k) if k in SURFS else len(SURFS))
    if "max_eig" in surface.arrays and "min_eig" in surface.arrays:
        names += ["eig_ratio", "max_eig", "min_eig"]
    return names


def default_surfs(surface: Surface) -> list[str]:
    """The arrays `landscape plot` draws when no --surf is given: all that exist."""
    names = [k for k in available_surfs(surface) if k in SURFS]
    if "eig_ratio" in available_surfs(surface):
        names.append("eig_ratio")
    return names


def eig_ratio(surface: Surface) -> np.ndarray:
    """|lambda_min / lambda_max| at every computed point (NaN elsewhere), as in the paper."""
    if "max_eig" not in surface.arrays or "min_eig" not in surface.arrays:
        raise LandscapeError(
            f"{surface.path} has no curvature maps (max_eig, min_eig); compute them with "
            "`landscape surface ... --curvature`"
        )
    mx, mn = surface.arrays["max_eig"], surface.arrays["min_eig"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(mn / mx)
    return np.where(surface.computed, ratio, np.nan)


def surface_values(surface: Surface, surf: str, zmax: float | None = None) -> np.ndarray:
    """The array to draw: NaN where not computed, clipped at `zmax`; errors in one line.

    `surf` is an array name or `eig_ratio` (clipped to the paper's 0..0.5 scale).
    """
    if surf == "eig_ratio":
        z = np.clip(eig_ratio(surface), 0.0, EIG_RATIO_MAX)
    elif surf in surface.arrays and surf in available_surfs(surface):
        z = np.where(surface.computed, np.asarray(surface.arrays[surf], dtype=np.float64), np.nan)
    else:
        raise LandscapeError(
            f"{surface.path} has no {surf!r}; it holds: {', '.join(available_surfs(surface)) or 'nothing'}"
            " (pick one with --surf)"
        )
    if not np.isfinite(z).any():
        if surface.done:
            raise NothingToDraw(
                f"{surface.path}: {surf!r} has no finite value to draw ({surface.done} computed "
                "points, all NaN or infinite: the net diverged there)"
            )
        raise LandscapeError(
            f"{surface.path}: no computed values in {surf!r} yet ({surface.done} of "
            f"{surface.computed.size} points done); run or resume `landscape surface` first"
        )
    if zmax is not None:
        z = np.minimum(z, zmax)
    return z


def display_cap(
    clim: tuple[float, float], data: tuple[float, float], zmax: float | None
) -> tuple[float | None, tuple[float, float]]:
    """A 3D view's z cap when none was asked for: the colour range's top, if the data reach
    more than twice as high (a few diverged corner points would otherwise flatten the basin)."""
    if zmax is not None or not data[1] > 2 * clim[1] or not clim[1] > data[0]:
        return None, data
    return clim[1], (data[0], clim[1])


def auto_zmax(
    surface: Surface, surf: str, zmax: float | None = None,
    vmin: float | None = None, vmax: float | None = None, vlevel: float | None = None,
) -> float | None:
    """The z clip a 3D view gets when none was asked for (see `display_cap`), else None."""
    if zmax is not None:
        return None
    z = surface_values(surface, surf)
    levels = contour_levels(z, vmin, vmax, vlevel)
    if len(levels) < 2:
        return None
    finite = finite_values(z)
    cap, _ = display_cap(colour_range(levels, z), (float(finite.min()), float(finite.max())), None)
    return cap


def finite_values(values: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    arrs = [values] if isinstance(values, np.ndarray) else list(values)
    flat = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrs])
    return flat[np.isfinite(flat)]


def _nice_levels(lo: float, hi: float, n: int) -> np.ndarray:
    from matplotlib.ticker import MaxNLocator

    ticks = MaxNLocator(nbins=n, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    inside = ticks[(ticks > lo) & (ticks < hi)]
    return inside if len(inside) >= 2 else np.linspace(lo, hi, n + 2)[1:-1]


def contour_levels(
    values: np.ndarray | Sequence[np.ndarray],
    vmin: float | None = None,
    vmax: float | None = None,
    vlevel: float | None = None,
    log: bool = False,
    n: int = 12,
) -> np.ndarray:
    """Contour levels: the paper's `arange(vmin, vmax, vlevel)` (0.1, 10, 0.5 by default).

    Explicit vmin/vmax/vlevel are always honoured. With the defaults, when fewer than
    `MIN_LEVELS_DRAWN` levels fall inside the data's range (a digits net has loss ~0.01 at the
    centre), about `n` round levels are taken from the data range instead. With `log`, levels
    are log-spaced between vmin (default: the smallest positive value) and vmax (default: the
    largest value). `values` may be one array or several (shared levels for a comparison).
    """
    finite = finite_values(values)
    if not finite.size:
        raise LandscapeError("nothing to draw: no finite values")
    lo, hi = float(finite.min()), float(finite.max())
    if log:
        pos = finite[finite > 0]
        if not pos.size:
            raise LandscapeError("--log needs positive values, and this surface has none")
        a = float(vmin) if vmin is not None else float(pos.min())
        b = float(vmax) if vmax is not None else hi
        if vmin is None and vmax is None and a >= b:
            return np.array([a])  # a constant: one level (drawn as one band, see plot_contour)
        if not 0 < a < b < float("inf"):
            raise LandscapeError(f"--log levels need 0 < vmin < vmax, got {a:g} and {b:g}")
        return np.geomspace(a, b, n)
    a, b, step = (
        PAPER_LEVELS[0] if vmin is None else float(vmin),
        PAPER_LEVELS[1] if vmax is None else float(vmax),
        PAPER_LEVELS[2] if vlevel is None else float(vlevel),
    )
    if not step > 0:
        raise LandscapeError(f"--vlevel must be positive, got {step:g}")
    if not b > a:
        raise LandscapeError(f"--vmax must be above --vmin, got vmin {a:g} and vmax {b:g}")
    count = (b - a) / step
    if not count <= MAX_LEVELS:  # also catches an infinite count
        raise LandscapeError(
            f"--vlevel {step:g} between {a:g} and {b:g} gives {count:.3g} contour levels; at most "
            f"{MAX_LEVELS} are drawn (choose --vlevel {(b - a) / MAX_LEVELS:.3g} or more)"
        )
    levels = np.arange(a, b, step)
    if vmin is not None or vmax is not None or vlevel is not None:
        return levels
    if hi <= lo:
        return np.array([lo])
    if int(((levels > lo) & (levels < hi)).sum()) >= MIN_LEVELS_DRAWN:
        return levels
    return _nice_levels(lo, hi, n)


def colour_range(levels: Sequence[float], values: np.ndarray | Sequence[np.ndarray]) -> tuple[float, float]:
    """Colour limits: the part of the levels' range that the data reach.

    A loss that explodes to 100 at the grid's edge then does not paint the basin one colour.
    """
    finite = finite_values(values)
    lo, hi = float(levels[0]), float(levels[-1])
    clim = (max(lo, float(finite.min())), min(hi, float(finite.max())))
    return clim if clim[1] > clim[0] else (lo, hi)



def _coords_text(s: Surface) -> str:
    text = f"{len(s.x)} on x {s.x[0]:g}..{s.x[-1]:g}"
    if s.y is not None:
        text = f"{len(s.x)}x{len(s.y)} on x {s.x[0]:g}..{s.x[-1]:g}, y {s.y[0]:g}..{s.y[-1]:g}"
    return text


def comparison_problem(surfaces: Sequence[Surface]) -> str | None:
    """Why these surfaces cannot be shown on one scale (grids, direction kinds, norms), or None."""
    first = surfaces[0]
    name0 = Path(first.path).name
    for s in surfaces[1:]:
        name = Path(s.path).name
        if s.ndim != first.ndim:
            return f"{name0} is {first.ndim}D but {name} is {s.ndim}D"
        same = s.shape == first.shape and np.allclose(s.x, first.x) and (
            s.y is None or np.allclose(s.y, first.y)
        )
        if not same:
            return f"grids differ: {name0} is {_coords_text(first)}, {name} is {_coords_text(s)}"
        for key, what in (("dir_kind", "direction kinds"), ("norm", "direction normalizations")):
            a, b = first.attrs.get(key), s.attrs.get(key)
            if "paper" in (first.source, s.source) and None in (a, b):
                continue  # the paper's files record no settings: unknown is no contradiction
            if a != b:
                return (
                    f"{what} differ: {name0} has {a or 'none recorded'}, "
                    f"{name} has {b or 'none recorded'}"
                )
    return None


def as_drawable(surface: Surface) -> Surface:
    """A 2D surface with one row or column (1xN, Nx1, 1x1) as the 1D curve it is; else itself.

    Contours and 3D views need at least 2x2 points; a single row is drawn as a curve along its
    long axis (`Surface.curve_axis` says which), a single point as a marker.
    """
    if surface.y is None or min(surface.shape) > 1:
        return surface
    along_y = len(surface.x) == 1 and len(surface.y) > 1
    coords = surface.y if along_y else surface.x
    arrays = {k: np.asarray(v).reshape(-1) if np.ndim(v) == 2 else v for k, v in surface.arrays.items()}
    return replace(
        surface, x=coords, y=None, arrays=arrays, computed=surface.computed.reshape(-1),
        trajectory=None, curve_axis="y" if along_y else "x",
    )


def check_pixels(fig: Any, dpi: int, fmt: str = "png") -> None:
    """Refuse a figure of more than `MAX_PIXELS` pixels at `dpi` (before drawing it)."""
    w, h = fig.get_size_inches()
    pixels = w * dpi * h * dpi
    if pixels > MAX_PIXELS:
        best = int((MAX_PIXELS / (w * h)) ** 0.5)
        raise LandscapeError(
            f"--dpi {dpi} would draw a {w * dpi:.0f}x{h * dpi:.0f}-pixel {fmt}; at most "
            f"{MAX_PIXELS // 1_000_000} million pixels are drawn (use --dpi {best} or less)"
        )


def padded_range(lo: float, hi: float) -> tuple[float, float]:
    """A range around a single value (a constant surface), so the axis is not singular."""
    if hi > lo:
        return lo, hi
    pad = max(abs(lo) * 1e-3, 1e-3)
    return lo - pad, hi + pad


def default_zscale(surf: str) -> str:
    """'log' for a loss (the paper's 3D views: basin and walls both visible), else 'linear'."""
    return "log" if surf.endswith("_loss") else "linear"


def refine_grid(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, target: int = 100, max_factor: int = 8
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """A finer grid for DRAWING contours: cubic (Catmull-Rom) interpolation of z [nx, ny].

    Returns (x', y', z', factor): `factor` - 1 points are inserted between neighbours, so that
    the finer axes have about `target` intervals (factor 1 and the inputs unchanged when z has
    a NaN, as a partial surface does, or fewer than 3 points on an axis). Each interpolated value
    lies between its two neighbours on the stored grid (no overshoot: a loss stays positive and
    no contour appears that the stored values do not cross). Stored values are never changed.
    """
    if min(z.shape) < 3 or not np.isfinite(z).all():
        return x, y, z, 1
    factor = int(np.clip(np.ceil(target / (max(z.shape) - 1)), 1, max_factor))
    if factor == 1:
        return x, y, z, 1
    zz = _cubic_along(_cubic_along(np.asarray(z, dtype=float), factor, 0), factor, 1)
    return _finer(x, factor), _finer(y, factor), zz, factor


def _finer(c: np.ndarray, factor: int) -> np.ndarray:
    n = len(c)
    return np.interp(np.arange((n - 1) * factor + 1) / factor, np.arange(n), np.asarray(c, dtype=float))


def _cubic_along(z: np.ndarray, factor: int, axis: int) -> np.ndarray:
    z = np.moveaxis(z, axis, 0)
    n = z.shape[0]
    u = np.arange((n - 1) * factor + 1) / factor
    i = np.minimum(np.floor(u).astype(int), n - 2)
    s = (u - i).reshape(-1, *([1] * (z.ndim - 1)))
    padded = np.concatenate([2 * z[:1] - z[1:2], z, 2 * z[-1:] - z[-2:-1]])  # linear ends
    p0, p1, p2, p3 = (padded[i + 1 + k] for k in (-1, 0, 1, 2))
    v = 0.5 * (2 * p1 + (p2 - p0) * s + (2 * p0 - 5 * p1 + 4 * p2 - p3) * s**2 + (3 * p1 - p0 - 3 * p2 + p3) * s**3)
    v = np.clip(v, np.minimum(p1, p2), np.maximum(p1, p2))
    v = np.where(s == 0, p1, np.where(s == 1, p2, v))  # the stored points themselves: exact
    return np.moveaxis(v, 0, axis)


def log_ceiling(values: Sequence[np.ndarray | None]) -> float | None:
    """The top of a shared log scale: a decade above the median panel's highest value, so one
    diverged net (a loss of 1e15 at its edges) does not flatten every other panel. None when
    there is nothing positive.

    Example:
        >>> log_ceiling([np.array([0.1, 40.0]), np.array([0.2, 60.0]), np.array([1.0, 1e15])])
        1000.0
    """
    tops = [float(np.nanmax(v[np.isfinite(v) & (v > 0)])) for v in values
            if v is not None and (np.isfinite(v) & (v > 0)).any()]
    if not tops:
        return None
    return float(10.0 ** (math.ceil(math.log10(float(np.median(tops)))) + 1))


def shared_log_scale(
    values: Sequence[np.ndarray | None], data: tuple[float, float], zmax: float | None = None
) -> tuple[tuple[float, float], float | None]:
    """The colour range of several panels on one log scale, and the cap above which their values
    are drawn capped (None when nothing is): `zmax` when given, else `log_ceiling`. `data` is the
    (min, max) of the positive values drawn. Shared by the comparison figure and the report.

    Example:
        >>> shared_log_scale([np.array([0.1, 40.0]), np.array([0.2, 60.0]), np.array([1.0, 1e15])], (0.1, 1e15))
        ((0.1, 1000.0), 1000.0)
    """
    ceiling = log_ceiling(values) if zmax is None else None
    top = max(min(data[1], zmax if zmax is not None else ceiling or data[1]), data[0])
    cap = ceiling if ceiling is not None and ceiling < data[1] else None
    clim = (data[0], top) if top > data[0] else (data[0] / 1.1, data[0] * 1.1)  # a constant: a band
    return clim, cap
