"""Matplotlib figures of a surface: 1D curves, contours, heatmaps, 3D surfaces, comparisons.

Every plot function takes an `ax` (a new figure is made when it is None) and returns what it
drew, so a notebook gets the same figures as `landscape plot` and tests can check the artists.
Only the object-oriented API and the Agg renderer are used: nothing here opens a window.

Example:
    >>> from matplotlib.figure import Figure
    >>> from landscape.storage import read_surface
    >>> s = read_surface("surfaces/resnet20.h5")
    >>> fig = Figure()
    >>> cs = plot_contour(s, "train_loss", ax=fig.add_subplot())
    >>> fig.savefig("contour.png")

Arrays are stored as [nx, ny] with value [i, j] at (x[i], y[j]) (see `landscape.storage`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import LandscapeError
from .outputs import atomic_write, check_output, output_error
from .text import printable

if TYPE_CHECKING:  # the value type draws itself through these modules: no import at run time
    from .loss_surface import Surface

__all__ = [
    "KINDS",
    "SURFS",
    "MAX_LEVELS",
    "MAX_PIXELS",
    "NothingToDraw",
    "as_drawable",
    "check_pixels",
    "PAPER_LEVELS",
    "EIG_RATIO_MAX",
    "Comparison",
    "available_surfs",
    "surface_values",
    "eig_ratio",
    "contour_levels",
    "colour_range",
    "display_cap",
    "auto_zmax",
    "axis_label",
    "surface_title",
    "surf_label",
    "partial_note",
    "file_metrics",
    "metric_summary",
    "comparison_problem",
    "plot_surface",
    "plot_line",
    "plot_slices",
    "plot_contour",
    "plot_contourf",
    "plot_heatmap",
    "plot_surface3d",
    "plot_eig_ratio",
    "plot_trajectory",
    "plot_comparison",
    "save_plots",
    "save_comparison",
]

SURFS = ("train_loss", "train_acc", "test_loss", "test_acc")
KINDS = ("auto", "line", "contour", "contourf", "heatmap", "surface", "all")
KINDS_2D = ("contour", "contourf", "heatmap", "surface")
PAPER_LEVELS = (0.1, 10.0, 0.5)  # the paper's contour defaults: vmin, vmax, vlevel
EIG_RATIO_MAX = 0.5  # the paper's |lambda_min / lambda_max| colour scale is 0..0.5
MIN_LEVELS_DRAWN = 4  # fewer paper-default levels inside the data range: pick levels from the data
MAX_LEVELS = 1000  # contour levels one figure may draw (--vlevel 1e-9 would ask for billions)
MAX_PIXELS = 50_000_000  # pixels one raster figure may have (about 200 MB of RGBA while drawn)


class NothingToDraw(LandscapeError):
    """An array whose computed points are all NaN or infinite: its views are skipped with a note."""

_LABELS = {
    "train_loss": "train loss",
    "test_loss": "test loss",
    "train_acc": "train accuracy (%)",
    "test_acc": "test accuracy (%)",
    "eig_ratio": "|λmin / λmax|",
    "max_eig": "largest Hessian eigenvalue",
    "min_eig": "smallest Hessian eigenvalue",
}
_COLORS = {"train": "tab:blue", "test": "tab:orange"}
_NORM_WORDS = {
    "filter": "filter-normalized",
    "layer": "layer-normalized",
    "weight": "weight-scaled",
    "none": "not normalized",
}


# ---------------------------------------------------------------------------------------------
# values, levels and labels (pure; no matplotlib)


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
    finite = _finite(z)
    cap, _ = display_cap(colour_range(levels, z), (float(finite.min()), float(finite.max())), None)
    return cap


def _finite(values: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
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
    finite = _finite(values)
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
    finite = _finite(values)
    lo, hi = float(levels[0]), float(levels[-1])
    clim = (max(lo, float(finite.min())), min(hi, float(finite.max())))
    return clim if clim[1] > clim[0] else (lo, hi)


def _directions_meta(surface: Surface) -> dict[str, Any]:
    d = surface.attrs.get("directions")
    return d if isinstance(d, dict) else {}


def axis_label(surface: Surface, axis: str = "x") -> str:
    """'x: random direction (filter-normalized) step', 'y: PC2 (12.5% of variance) step', ..."""
    return printable(_axis_label(surface, axis))


def _axis_label(surface: Surface, axis: str) -> str:
    a = surface.attrs
    kind = a.get("dir_kind")
    norm = _NORM_WORDS.get(str(a.get("norm")), str(a.get("norm") or ""))
    k = 0 if axis == "x" else 1
    if surface.source == "paper" or kind is None:
        return f"{axis}: direction step (from a file of the paper's code)"
    if kind == "pca":
        ratio = _directions_meta(surface).get("explained_variance_ratio") or []
        known = isinstance(ratio, list) and len(ratio) > k and isinstance(ratio[k], (int, float))
        var = f" ({100 * float(ratio[k]):.1f}% of variance)" if known else ""
        return f"{axis}: PCA component {k + 1}{var} step"
    if kind == "interpolate":
        return f"{axis}: interpolation α (0 = checkpoint, 1 = checkpoint 2)"
    if kind == "plane":
        return f"{axis}: step towards checkpoint {k + 2} (0 = checkpoint, 1 = checkpoint {k + 2})"
    if kind == "hessian":
        return f"{axis}: Hessian eigenvector {k + 1} ({norm}) step"
    if kind == "file":
        return f"{axis}: direction from file ({norm}) step"
    return f"{axis}: {kind} direction ({norm}) step"


def surface_title(surface: Surface, surf: str | None = None) -> str:
    """'resnet20 on digits · random directions, filter-normalized · train loss'."""
    return printable(_surface_title(surface, surf))


def _surface_title(surface: Surface, surf: str | None) -> str:
    a = surface.attrs
    if surface.source == "paper":
        head = f"{Path(surface.path).stem} (paper's file layout)"
    else:
        model = a.get("model") or Path(surface.path).stem
        ds = a.get("dataset")
        data = ds.get("name") if isinstance(ds, dict) else None
        kind = a.get("dir_kind")
        dirs = ""
        if kind:
            norm = _NORM_WORDS.get(str(a.get("norm")), str(a.get("norm") or ""))
            dirs = f"{kind} directions, {norm}" if kind in ("random", "hessian", "file") else f"{kind} directions"
        head = " · ".join(p for p in (f"{model} on {data}" if data else str(model), dirs) if p)
    return head if surf is None else f"{head} · {_LABELS.get(surf, surf)}"


def partial_note(surface: Surface) -> str | None:
    """'partial: 120 of 315 points computed' for a surface still being computed, else None."""
    if surface.done == surface.computed.size:
        return None
    return f"partial: {surface.done} of {surface.computed.size} points computed"


def surf_label(surf: str) -> str:
    """'train loss', 'test accuracy (%)', '|λmin / λmax|', ... for an array name."""
    return _LABELS.get(surf, surf)


def file_metrics(surface: Surface) -> dict[str, Any]:
    """The scalar metrics the file stores, else computed now (`landscape.metrics`); {} on failure."""
    m = surface.metrics
    if not m:
        from .metrics import surface_metrics

        try:
            with warnings.catch_warnings():  # all-NaN slices of a diverged net: no caption, no noise
                warnings.simplefilter("ignore", RuntimeWarning)
                m = surface_metrics(surface)
        except Exception:  # metrics are a caption; never let them stop a plot
            m = {}
    return m


def metric_summary(surface: Surface, surf: str = "train_loss") -> str:
    """Key scalar metrics for a caption: centre value, basin widths, top eigenvalue."""
    m = file_metrics(surface)
    parts = []
    if isinstance(m.get(f"center_{surf}"), (int, float)):
        parts.append(f"centre {m[f'center_{surf}']:.3g}")
    widths = [f"{ax} {m[f'basin_width_{ax}']:.2f}" for ax in "xy" if isinstance(m.get(f"basin_width_{ax}"), (int, float))]
    if widths:
        parts.append("basin width " + ", ".join(widths) + ("+" if m.get("basin_width_capped") else ""))
    if isinstance(m.get("top_eigenvalue"), (int, float)):
        parts.append(f"λmax {m['top_eigenvalue']:.3g}")
    return " · ".join(parts)


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


def _note(ax: Any, text: str) -> Any:
    """A note in the middle of an axes (a view with nothing to draw says why)."""
    return ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center",
                   fontsize=8, color="0.3", wrap=True)


def _padded(lo: float, hi: float) -> tuple[float, float]:
    """A range around a single value (a constant surface), so the axis is not singular."""
    if hi > lo:
        return lo, hi
    pad = max(abs(lo) * 1e-3, 1e-3)
    return lo - pad, hi + pad


# ---------------------------------------------------------------------------------------------
# drawing


def _new_axes(projection: str | None = None, figsize: tuple[float, float] = (6.0, 4.8)) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig.add_subplot(projection=projection)


def _mesh(surface: Surface) -> tuple[np.ndarray, np.ndarray]:
    if surface.y is None:
        raise LandscapeError(
            f"{surface.path} is a 1D curve; this view needs a 2D surface (use --kind line)"
        )
    if min(surface.shape) < 2:
        raise LandscapeError(
            f"{surface.path} is a {surface.shape[0]}x{surface.shape[1]} grid; contours and 3D views "
            "need at least 2x2 points (draw it as a curve: --kind line, or `as_drawable`)"
        )
    return np.meshgrid(surface.x, surface.y, indexing="ij")  # each [nx, ny], like the arrays


def _norm(clim: tuple[float, float] | None, values: np.ndarray, log: bool) -> Any:
    from matplotlib.colors import LogNorm, Normalize

    if clim is None:
        finite = _finite(values)
        if log:
            finite = finite[finite > 0]
        clim = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    clim = _padded(*clim)
    if log:
        return LogNorm(vmin=max(clim[0], 1e-300), vmax=clim[1])
    return Normalize(vmin=clim[0], vmax=clim[1])


def _decorate(ax: Any, surface: Surface, surf: str, title: bool = True) -> None:
    ax.set_xlabel(axis_label(surface, "x"))
    if surface.y is not None:
        ax.set_ylabel(axis_label(surface, "y"))
    if title:
        _set_title(ax, surface, surface_title(surface, surf))


def _set_title(ax: Any, surface: Surface, text: str) -> None:
    """`text` as the axes title; while the surface is partial, the note on a second line."""
    note = partial_note(surface)
    ax.set_title(text + (f"\n{note}" if note else ""), fontsize=9)


def _default_cmap(surf: str) -> str:
    return "viridis" if surf.endswith("_loss") or surf == "eig_ratio" else "viridis_r"


def plot_contour(
    surface: Surface,
    surf: str = "train_loss",
    ax: Any = None,
    *,
    levels: Sequence[float] | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    vlevel: float | None = None,
    log: bool = False,
    zmax: float | None = None,
    clim: tuple[float, float] | None = None,
    filled: bool = False,
    labels: bool = True,
    cmap: str | None = None,
    trajectory: bool = False,
    title: bool = True,
) -> Any:
    """Contour lines (labelled) or, with `filled`, filled contours; returns the QuadContourSet."""
    z = surface_values(surface, surf, zmax)
    X, Y = _mesh(surface)
    lv = np.asarray(levels, dtype=float) if levels is not None else contour_levels(z, vmin, vmax, vlevel, log)
    if surf == "eig_ratio" and levels is None and vmin is None and vmax is None and vlevel is None:
        lv = np.linspace(0.0, EIG_RATIO_MAX, 11)[1:-1] if not filled else np.linspace(0.0, EIG_RATIO_MAX, 11)
        clim = clim or (0.0, EIG_RATIO_MAX)
    if ax is None:
        ax = _new_axes()
    finite = _finite(z)
    constant = float(finite.min()) == float(finite.max())
    if filled and len(lv) < 2:  # a constant: one band around its value fills the plane
        lv = np.array(_padded(float(lv[0]) if len(lv) else float(finite.min()), float(finite.max())))
    if clim is None and len(lv) > 1:
        clim = colour_range(lv, z)
    norm = _norm(clim, z, log)
    zz = np.ma.masked_invalid(z)
    cmap = cmap or _default_cmap(surf)
    if constant and not filled:
        _note(ax, f"constant: {float(finite.min()):.4g} at every computed point")
    try:
        if filled:
            cs = ax.contourf(X, Y, zz, levels=lv, cmap=cmap, norm=norm, extend="both")
        else:
            cs = ax.contour(X, Y, zz, levels=lv, cmap=cmap, norm=norm, linewidths=1.0)
    except ValueError as e:  # levels matplotlib cannot separate (e.g. 1e-300..1e300 in log)
        raise LandscapeError(
            f"cannot draw {len(lv)} contour levels from {lv[0]:g} to {lv[-1]:g} ({e}); choose "
            "other --vmin, --vmax or --vlevel"
        ) from None
    if not filled:
        drawn = [level for level, segs in zip(cs.levels, cs.allsegs) if any(len(seg) for seg in segs)]
        if labels and drawn:
            ax.clabel(cs, drawn[:: max(1, len(drawn) // 8)], fmt="%.3g", fontsize=7, inline=True)
        lowest = float(finite.min())
        if len(lv) and lowest > lv[-1] and not constant:  # nothing to draw: say so rather than leave a blank panel
            ax.text(0.5, 0.5, f"above the top level ({lv[-1]:.3g}) everywhere\nlowest value {lowest:.3g}",
                    transform=ax.transAxes, ha="center", va="center", fontsize=8, color="0.3")
    ax.set_aspect("auto")
    _decorate(ax, surface, surf, title)
    if trajectory:
        plot_trajectory(surface, ax)
    return cs


def plot_contourf(surface: Surface, surf: str = "train_loss", ax: Any = None, **kwargs: Any) -> Any:
    """Filled contours (see `plot_contour`); returns the QuadContourSet."""
    return plot_contour(surface, surf, ax, filled=True, **kwargs)


def plot_heatmap(
    surface: Surface,
    surf: str = "train_loss",
    ax: Any = None,
    *,
    log: bool = False,
    zmax: float | None = None,
    clim: tuple[float, float] | None = None,
    cmap: str | None = None,
    trajectory: bool = False,
    title: bool = True,
) -> Any:
    """A cell per grid point (uncomputed points blank); returns the QuadMesh."""
    z = surface_values(surface, surf, zmax)
    _mesh(surface)
    if surf == "eig_ratio":
        clim = clim or (0.0, EIG_RATIO_MAX)
    if ax is None:
        ax = _new_axes()
    mesh = ax.pcolormesh(
        surface.x, surface.y, np.ma.masked_invalid(z).T,  # pcolormesh wants [ny, nx]
        shading="nearest", cmap=cmap or _default_cmap(surf), norm=_norm(clim, z, log),
    )
    _decorate(ax, surface, surf, title)
    if trajectory:
        plot_trajectory(surface, ax)
    return mesh


def plot_eig_ratio(surface: Surface, ax: Any = None, **kwargs: Any) -> Any:
    """The paper's |lambda_min / lambda_max| heatmap on its 0..0.5 scale; returns the QuadMesh."""
    if surface.y is None:
        return plot_line(surface, ["eig_ratio"], ax)
    return plot_heatmap(surface, "eig_ratio", ax, clim=(0.0, EIG_RATIO_MAX), **kwargs)


def _log10(z: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(z > 0, np.log10(np.where(z > 0, z, 1.0)), np.nan)


def plot_surface3d(
    surface: Surface,
    surf: str = "train_loss",
    ax: Any = None,
    *,
    log: bool = False,
    zmax: float | None = None,
    clim: tuple[float, float] | None = None,
    zlim: tuple[float, float] | None = None,
    cmap: str | None = None,
    title: bool = True,
) -> Any:
    """A 3D surface on a `projection='3d'` axes (log: z is log10 of the value).

    `clim` (colour scale) and `zlim` (z range) are in drawn units, so log10 with `log`; panels
    that share them are on one scale. Returns the Poly3DCollection.
    """
    z = surface_values(surface, surf, zmax)
    X, Y = _mesh(surface)
    if log:
        z = _log10(z)
        if not np.isfinite(z).any():
            raise LandscapeError(f"--log needs positive values, and {surf!r} has none")
    if surf == "eig_ratio":
        clim = clim or (0.0, EIG_RATIO_MAX)
    if ax is None:
        ax = _new_axes("3d")
    if not hasattr(ax, "zaxis"):
        raise LandscapeError("a 3D surface needs a 3D axes: fig.add_subplot(projection='3d')")
    norm = _norm(clim, z, False)
    art = ax.plot_surface(
        X, Y, np.ma.masked_invalid(z), cmap=cmap or _default_cmap(surf), norm=norm,
        rstride=1, cstride=1, linewidth=0, antialiased=False,
    )
    finite = _finite(z)
    ax.set_zlim(*_padded(*(zlim if zlim is not None else (float(finite.min()), float(finite.max())))))
    ax.set_xlabel(axis_label(surface, "x"), fontsize=7)
    ax.set_ylabel(axis_label(surface, "y"), fontsize=7)
    ax.set_zlabel(("log10 " if log else "") + _LABELS.get(surf, surf), fontsize=7)
    ax.tick_params(labelsize=7)
    if title:
        _set_title(ax, surface, surface_title(surface, surf))
    return art


def _split_of(name: str) -> str:
    return name.split("_", 1)[0]


def plot_line(
    surface: Surface,
    surfs: Sequence[str] | None = None,
    ax: Any = None,
    *,
    log: bool = False,
    zmax: float | None = None,
    ylim: tuple[float, float] | None = None,
    title: bool = True,
) -> dict[str, Any]:
    """A 1D curve: losses on the left axis, accuracies on a twin right axis, train and test together.

    For a 2D surface, draws the slices through the centre instead (see `plot_slices`).
    Returns {'loss': [Line2D], 'acc': [Line2D], 'twin': Axes or None}.
    """
    surface = as_drawable(surface)
    if surface.y is not None:
        return plot_slices(surface, surfs, ax, log=log, zmax=zmax, title=title)
    names = list(surfs) if surfs else default_surfs(surface)
    values = {n: surface_values(surface, n, zmax if not n.endswith("_acc") else None) for n in names}
    if ax is None:
        ax = _new_axes()
    drawn = _draw_lines(ax, {n: (surface.x, v, "-") for n, v in values.items()}, log)
    if ylim is not None:
        ax.set_ylim(*_padded(*ylim))
    ax.set_xlabel(axis_label(surface, surface.curve_axis))
    if title:
        _set_title(ax, surface, surface_title(surface))
    return drawn


def _draw_lines(ax: Any, lines: dict[str, tuple[np.ndarray, np.ndarray, str]], log: bool) -> dict[str, Any]:
    """Draw named lines: *_acc on a twin axis, others on `ax`. Keys may carry a ' (suffix)'."""
    loss, acc, twin = [], [], None
    for label, (x, v, style) in lines.items():
        name = label.split(" ")[0]
        if len(x) == 1:
            style = "o"  # a single point: a marker, since a line of one point draws nothing
        color = _COLORS.get(_split_of(name), None)
        text = _LABELS.get(name, name) + label[len(name):]
        if name.endswith("_acc"):
            if twin is None:
                twin = ax.twinx()
                twin.set_ylabel("accuracy (%)")
            (ln,) = twin.plot(x, v, style, color=color, alpha=0.75, lw=1.2, label=text, dashes=(4, 2))
            acc.append(ln)
        else:
            (ln,) = ax.plot(x, v, style, color=color, lw=1.6, label=text)
            loss.append(ln)
    if log and loss:
        ax.set_yscale("log")
    names = {label.split(" ")[0] for label in lines}
    if any(n.endswith("_loss") for n in names):
        ax.set_ylabel("loss" + (" (log scale)" if log else ""))
    elif names:
        ax.set_ylabel(_LABELS.get(next(iter(names)), ""))
    handles = loss + acc
    if handles:
        ax.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="best")
    return {"loss": loss, "acc": acc, "twin": twin}


def plot_slices(
    surface: Surface,
    surfs: Sequence[str] | None = None,
    ax: Any = None,
    *,
    log: bool = False,
    zmax: float | None = None,
    title: bool = True,
) -> dict[str, Any]:
    """1D slices of a 2D surface through the centre: along x at y=0 (solid), along y at x=0 (dotted)."""
    X, _ = _mesh(surface)
    names = list(surfs) if surfs else default_surfs(surface)
    ix = int(np.argmin(np.abs(surface.x)))
    iy = int(np.argmin(np.abs(surface.y)))
    lines: dict[str, tuple[np.ndarray, np.ndarray, str]] = {}
    for n in names:
        z = surface_values(surface, n, zmax if not n.endswith("_acc") else None)
        lines[f"{n} (along x, y={surface.y[iy]:g})"] = (surface.x, z[:, iy], "-")
        lines[f"{n} (along y, x={surface.x[ix]:g})"] = (surface.y, z[ix, :], ":")
    if ax is None:
        ax = _new_axes()
    drawn = _draw_lines(ax, lines, log)
    ax.set_xlabel("step along the direction")
    if title:
        _set_title(ax, surface, surface_title(surface) + " · slices")
    return drawn


def plot_trajectory(surface: Surface, ax: Any) -> list[Any]:
    """Overlay the projected training path (PCA directions) on a 2D plot; returns its lines."""
    t = surface.trajectory
    if not t or "x" not in t or "y" not in t:
        raise LandscapeError(
            f"{surface.path} holds no training trajectory; make the surface with "
            "`landscape surface --pca SNAPSHOTS...` (or drop --trajectory)"
        )
    tx, ty = np.asarray(t["x"]), np.asarray(t["y"])
    lines = ax.plot(tx, ty, "-o", color="tab:red", ms=3, lw=1.2, label="training path")
    epochs = np.asarray(t.get("epochs", np.arange(len(tx))))
    for k in {0, len(tx) - 1}:
        ax.annotate(f"epoch {epochs[k]}", (tx[k], ty[k]), fontsize=7, color="tab:red",
                    xytext=(3, 3), textcoords="offset points")
    return lines


def plot_surface(surface: Surface, surf: str | None = None, kind: str = "auto", ax: Any = None, **kwargs: Any) -> Any:
    """One view of a surface on one axes: 'auto' is a curve (1D) or labelled contours (2D).

    kind: line | contour | contourf | heatmap | surface (3D; `ax` must be a 3D axes).
    Other keyword arguments go to the plot function (levels, vmin, vmax, vlevel, log, zmax, ...).
    """
    if kind not in KINDS or kind == "all":
        raise LandscapeError(f"kind {kind!r} is not one of {', '.join(k for k in KINDS if k != 'all')}")
    surface = as_drawable(surface)
    if kind == "auto":
        kind = "line" if surface.ndim == 1 else ("heatmap" if surf == "eig_ratio" else "contour")
    if kind == "line":
        return plot_line(surface, [surf] if surf else None, ax, **kwargs)
    if surface.ndim == 1:
        raise _needs_2d(surface, kind)
    surf = surf or _first_loss(surface)
    func = {"contour": plot_contour, "contourf": plot_contourf, "heatmap": plot_heatmap,
            "surface": plot_surface3d}[kind]
    return func(surface, surf, ax, **kwargs)


def _needs_2d(surface: Surface, kind: str) -> LandscapeError:
    return LandscapeError(f"{surface.path} is a 1D curve; --kind {kind} needs a 2D surface (use --kind line)")


def _first_loss(surface: Surface) -> str:
    names = available_surfs(surface)
    if "train_loss" in names:
        return "train_loss"
    loss = [n for n in names if n.endswith("_loss")]
    if not (loss or names):
        raise LandscapeError(f"{surface.path} holds no arrays to draw")
    return (loss or names)[0]


# ---------------------------------------------------------------------------------------------
# files


def _kinds(surface: Surface, kind: str, surf: str) -> list[str]:
    if kind not in KINDS:
        raise LandscapeError(f"--kind {kind!r} is not one of {', '.join(KINDS)}")
    if surface.ndim == 1:
        if kind not in ("auto", "all", "line"):
            raise _needs_2d(surface, kind)
        return ["line"]
    if kind == "auto":
        return ["heatmap"] if surf == "eig_ratio" else list(KINDS_2D)
    if kind == "all":
        return [*KINDS_2D, "line"]
    return [kind]


def save_plots(
    surface: Surface,
    out_dir: str | Path = "plots",
    surfs: Sequence[str] | None = None,
    kind: str = "auto",
    fmt: str = "png",
    dpi: int = 150,
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    vlevel: float | None = None,
    log: bool = False,
    zmax: float | None = None,
    trajectory: bool = False,
    on_skip: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write every requested view to `out_dir/<file stem>_<surf>_<kind>.<fmt>`; return the paths.

    A 1D file gets one figure with all its curves (`<stem>_line.<fmt>`) unless `surfs` is given;
    a 1xN or Nx1 grid is drawn as a curve (see `as_drawable`). An array with no finite value
    (the net diverged everywhere) is skipped: `on_skip` gets a one-line note; without
    `on_skip`, `NothingToDraw` is raised.
    """
    from matplotlib.figure import Figure

    if fmt not in ("png", "pdf", "svg"):
        raise LandscapeError(f"--format {fmt!r} is not one of png, pdf, svg")
    check_pixels(Figure(figsize=(6.4, 5.2)), dpi, fmt)
    surface = as_drawable(surface)
    if surface.ndim == 1:
        _kinds(surface, kind, "")  # a 2D view of a curve: refused in one line
    names = list(surfs) if surfs else default_surfs(surface)
    if not names:
        raise LandscapeError(f"{surface.path} holds no loss or accuracy arrays to draw")
    drawable = []
    for n in names:  # fail on a bad name before writing anything
        try:
            surface_values(surface, n)
            drawable.append(n)
        except NothingToDraw as e:
            if on_skip is None:
                raise
            on_skip(f"skipped {n}: {str(e).split(': ', 1)[-1]}")
    if trajectory and not surface.trajectory:
        plot_trajectory(surface, None)  # raises the one-line error
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise LandscapeError(f"--out {out} is a file; plot writes into a folder: give a folder name")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(e, "create folder", out) from None
    stem = Path(surface.path).stem
    written: list[Path] = []
    levels = {"vmin": vmin, "vmax": vmax, "vlevel": vlevel, "log": log, "zmax": zmax}

    def save(fig: Any, name: str) -> None:
        path = out / f"{name}.{fmt}"
        check_output(path, fmt, "plot")
        with atomic_write(path, "write plot") as tmp:
            fig.savefig(tmp, dpi=dpi, format=fmt, bbox_inches="tight")
        written.append(path)

    names = drawable
    if not names:
        return written
    if surface.ndim == 1:
        if surfs:
            groups = [[n] for n in names]
        else:  # curves share one figure; the curvature ratio (0..0.5) gets its own
            groups = [[n for n in names if n != "eig_ratio"], ["eig_ratio"] if "eig_ratio" in names else []]
            groups = [g for g in groups if g]
        for group in groups:
            fig = Figure(figsize=(6.4, 4.4))
            plot_line(surface, group, fig.add_subplot(), log=log, zmax=zmax)
            single = surfs or group == ["eig_ratio"]
            save(fig, f"{stem}_{group[0]}_line" if single else f"{stem}_line")
        return written
    for n in names:
        for k in _kinds(surface, kind, n):
            save(_view_figure(surface, n, k, levels, trajectory), f"{stem}_{n}_{k}")
    return written


def _view_figure(surface: Surface, n: str, k: str, levels: dict[str, Any], trajectory: bool) -> Any:
    """One figure of `landscape plot`: view `k` of array `n` of a 2D surface."""
    from matplotlib.figure import Figure

    log, zmax = levels["log"], levels["zmax"]
    if k == "line":
        fig = Figure(figsize=(6.4, 4.4))
        plot_slices(surface, [n], fig.add_subplot(), log=log, zmax=zmax)
    elif k == "surface":
        fig = Figure(figsize=(6.4, 5.2))
        ax = fig.add_subplot(projection="3d")
        cap = None if log or n == "eig_ratio" else auto_zmax(
            surface, n, zmax, levels["vmin"], levels["vmax"], levels["vlevel"])
        art = plot_surface3d(surface, n, ax, log=log, zmax=zmax if cap is None else cap)
        if cap is not None:
            ax.set_title(ax.get_title() + f"\n(z clipped at {cap:.3g}; --zmax to choose)", fontsize=9)
        fig.colorbar(art, ax=ax, shrink=0.6, pad=0.1)
    else:
        fig = Figure(figsize=(6.4, 5.2))
        ax = fig.add_subplot()
        if k == "heatmap":
            art = plot_heatmap(surface, n, ax, log=log, zmax=zmax, trajectory=trajectory)
        else:
            art = plot_contour(surface, n, ax, filled=k == "contourf", trajectory=trajectory, **levels)
        if k != "contour":
            fig.colorbar(art, ax=ax)
    return fig


# ---------------------------------------------------------------------------------------------
# comparison


@dataclass
class Comparison:
    """What `plot_comparison` drew: one column per surface, on one shared scale."""

    figure: Any
    surf: str
    levels: np.ndarray
    clim: tuple[float, float]  # colour scale (of the values, not log10)
    zlim: tuple[float, float] | None = None  # z range of the 3D row (log10 with `log`)
    contours: list[Any] = field(default_factory=list)  # QuadContourSet per 2D surface
    surfaces3d: list[Any] = field(default_factory=list)  # Poly3DCollection per 2D surface
    lines: list[dict[str, Any]] = field(default_factory=list)  # per 1D surface
    axes: list[Any] = field(default_factory=list)
    mismatch: str | None = None
    zcap: float | None = None  # the 3D row's z clip when the data reach far above the colour scale
    notes: list[str] = field(default_factory=list)  # panels skipped (no finite value), one line each


def _grid_shape(n: int, max_cols: int = 4) -> tuple[int, int]:
    """Columns and rows of panel pairs: at most `max_cols` nets side by side, then wrap."""
    rows = -(-n // max_cols)
    cols = -(-n // rows)
    return cols, rows


def _panel_title(surface: Surface, surf: str) -> str:
    a = surface.attrs
    ds = a.get("dataset")
    data = ds.get("name") if isinstance(ds, dict) else None
    head = f"{a.get('model') or Path(surface.path).stem}" + (f" on {data}" if data else "")
    lines = [head]
    summary = metric_summary(surface, surf)
    if summary:
        lines.append(summary)
    note = partial_note(surface)
    if note:
        lines.append(note)
    return "\n".join(printable(line) for line in lines)


def plot_comparison(
    surfaces: Sequence[Surface],
    surf: str = "train_loss",
    fig: Any = None,
    *,
    allow_mismatch: bool = False,
    log: bool = False,
    zmax: float | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    vlevel: float | None = None,
) -> Comparison:
    """Side-by-side panels (contours on top, 3D below) with shared levels and colour scale.

    Refuses surfaces on different grids or with different direction kinds or normalizations
    unless `allow_mismatch` (then the difference is written under the figure).
    """
    from matplotlib.figure import Figure

    if len(surfaces) < 1:
        raise LandscapeError("compare needs at least one surface file")
    surfaces = [as_drawable(s) for s in surfaces]
    problem = comparison_problem(surfaces) if len(surfaces) > 1 else None
    if problem and not allow_mismatch:
        raise LandscapeError(f"cannot compare: {problem} (pass --allow-mismatch to draw them anyway)")
    if len({s.ndim for s in surfaces}) > 1:
        raise LandscapeError(f"cannot compare 1D and 2D files in one figure: {problem}")
    values, notes = _panel_values(surfaces, surf, zmax)
    shown = [v for v in values if v is not None]
    n = len(surfaces)
    two_d = surfaces[0].ndim == 2
    cols, rows = _grid_shape(n) if two_d else (n, 1)  # 2D: (contour, 3D) pairs, wrapped
    if fig is None:
        fig = Figure(figsize=(4.0 * cols + 1.0, (8.0 if two_d else 4.2) * rows), layout="constrained")
    if not two_d:
        finite = _finite(shown)
        pad = 0.05 * (finite.max() - finite.min() or 1.0)
        ylim = (float(finite.min() - pad), float(finite.max() + pad))
        if log and (finite > 0).any():
            ylim = (float(finite[finite > 0].min()) / 1.2, float(finite.max()) * 1.2)
        comp = Comparison(fig, surf, np.array([]), ylim, mismatch=problem, notes=notes)
        for k, s in enumerate(surfaces):
            ax = fig.add_subplot(1, n, k + 1)
            if values[k] is None:
                _note(ax, f"{Path(s.path).name}: no finite {surf_label(surf)}")
                comp.lines.append({})
            else:
                comp.lines.append(plot_line(s, [surf], ax, log=log, zmax=zmax, ylim=ylim, title=False))
            ax.set_title(_panel_title(s, surf), fontsize=8)
            comp.axes.append(ax)
        _mismatch_note(fig, problem)
        return comp
    levels = contour_levels(shown, vmin, vmax, vlevel, log)
    finite = _finite(shown)
    if log:
        finite = finite[finite > 0]
    data = (float(finite.min()), float(finite.max())) if finite.size else (1.0, 10.0)
    clim = data
    if len(levels) > 1:
        explicit = vmin is not None or vmax is not None
        clim = (float(levels[0]), float(levels[-1])) if explicit else colour_range(levels, shown)
    to3d = (lambda v: (float(np.log10(v[0])), float(np.log10(v[1])))) if log else (lambda v: v)
    cap, drawn_range = display_cap(clim, data, zmax)
    comp = Comparison(fig, surf, levels, clim, to3d(drawn_range), mismatch=problem, zcap=cap, notes=notes)
    for k, s in enumerate(surfaces):
        row, col = divmod(k, cols)
        ax = fig.add_subplot(2 * rows, cols, 2 * row * cols + col + 1)
        ax3 = fig.add_subplot(2 * rows, cols, (2 * row + 1) * cols + col + 1, projection="3d")
        if values[k] is None:
            _note(ax, f"{Path(s.path).name}: no finite {surf_label(surf)}")
            cs = art = None
        else:
            cs = plot_contour(s, surf, ax, levels=levels, log=log, zmax=zmax, clim=clim, title=False)
            art = plot_surface3d(
                s, surf, ax3, log=log, zmax=zmax if cap is None else cap, clim=to3d(clim), zlim=comp.zlim,
                title=False,
            )
        ax.set_title(_panel_title(s, surf), fontsize=8)
        # the direction kind and norm are shared: say it once, in the figure's title
        ax.set_xlabel("x step")
        ax.set_ylabel("y step" if col == 0 else "")
        ax3.set_xlabel("x step", fontsize=7)
        ax3.set_ylabel("y step", fontsize=7)
        comp.contours.append(cs)
        comp.surfaces3d.append(art)
        comp.axes += [ax, ax3]
    first = next(a for a in comp.surfaces3d if a is not None)
    fig.colorbar(first, ax=comp.axes, shrink=0.5, label=("log10 " if log else "") + _LABELS.get(surf, surf))
    dirs = surface_title(surfaces[0]).split(" · ", 1)[1:] if not problem else []
    clipped = [f"3D clipped at {cap:.3g}"] if cap is not None else []
    fig.suptitle(" · ".join([_LABELS.get(surf, surf), *dirs, "shared levels and colour scale", *clipped]), fontsize=10)
    _mismatch_note(fig, problem)
    return comp


def _panel_values(
    surfaces: Sequence[Surface], surf: str, zmax: float | None
) -> tuple[list[np.ndarray | None], list[str]]:
    """Each surface's values (None where nothing is finite, with a note); raises when none is."""
    values: list[np.ndarray | None] = []
    notes = []
    for s in surfaces:
        try:
            values.append(surface_values(s, surf, zmax))
        except NothingToDraw as e:
            values.append(None)
            notes.append(f"skipped the panel of {e}")
    if all(v is None for v in values):
        raise NothingToDraw(f"nothing to compare: no file has a finite {surf!r}")
    return values, notes


def _mismatch_note(fig: Any, problem: str | None) -> None:
    if problem:
        fig.text(0.01, 0.005, f"note: {problem}", fontsize=7, color="tab:red")


def save_comparison(
    surfaces: Sequence[Surface], out: str | Path, surf: str = "train_loss", dpi: int = 120,
    on_skip: Callable[[str], None] | None = None, **kwargs: Any,
) -> Path | None:
    """Draw `plot_comparison` and write it to `out` (format from the suffix); return the path.

    Panels (or, when no file has a finite value, the whole figure: None is returned) are
    skipped with a one-line note to `on_skip`; without it, `NothingToDraw` is raised.
    """
    out = Path(out)
    fmt = out.suffix.lstrip(".").lower() or "png"
    if fmt not in ("png", "pdf", "svg"):
        raise LandscapeError(f"--out {out}: use a .png, .pdf or .svg file name")
    out = out if out.suffix else out.with_suffix(".png")
    check_output(out, fmt)
    try:
        comp = plot_comparison(surfaces, surf, **kwargs)
    except NothingToDraw as e:
        if on_skip is None:
            raise
        on_skip(f"skipped the figure: {e}")
        return None
    for note in comp.notes:
        if on_skip is None:
            raise NothingToDraw(note)
        on_skip(note)
    check_pixels(comp.figure, dpi, fmt)
    with atomic_write(out, "write figure", make_folder=True) as tmp:
        comp.figure.savefig(tmp, dpi=dpi, format=fmt, bbox_inches="tight")
    return out
