"""Matplotlib figures of a surface on one axes: 1D curves, contours, heatmaps, 3D surfaces.

Every plot function takes an `ax` (a new figure is made when it is None) and returns what it
drew, so a notebook gets the same figures as `landscape plot` and tests can check the artists.
Only the object-oriented API and the Agg renderer are used: nothing here opens a window.

Example:
    >>> from matplotlib.figure import Figure
    >>> from landscape.io.storage import read_surface
    >>> s = read_surface("surfaces/resnet20.h5")
    >>> fig = Figure()
    >>> cs = plot_contour(s, "train_loss", ax=fig.add_subplot())
    >>> fig.savefig("contour.png")

What each view shows (values, levels) is decided in `landscape.render.views` and the words on
it in `landscape.render.labels`; titles, notes and colour bars are put on an axes by
`landscape.render.decorations`; sizes, ticks, camera and light are `landscape.render.figure_style`;
the figures `landscape plot` writes, and writing them to files, are
`landscape.render.figure_files`; several nets side by side are `landscape.render.comparison`.
Arrays are stored as [nx, ny] with value [i, j] at (x[i], y[j]) (see `landscape.io.storage`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import LandscapeError
from .decorations import axes_note, axes_width, decorate_axes, new_axes, set_surface_title
from .figure_style import (
    CAMERA_AZIM,
    CAMERA_ELEV,
    CLIPPED_COLOR,
    FONT_PT,
    shade_faces,
    tick_text,
    tidy_ticks,
    wrap_text,
)
from .labels import SURF_LABELS, axis_label, smooth_note, surface_title
from .views import (
    EIG_RATIO_MAX,
    KINDS,
    SPLIT_COLORS,
    as_drawable,
    available_surfs,
    colour_range,
    contour_levels,
    default_surfs,
    finite_values,
    padded_range,
    refine_grid,
    surface_values,
)

if TYPE_CHECKING:  # the value type draws itself through these modules: no import at run time
    from ..core.loss_surface import Surface

__all__ = [
    "plot_surface",
    "plot_line",
    "plot_slices",
    "plot_contour",
    "plot_contourf",
    "plot_heatmap",
    "plot_surface3d",
    "plot_eig_ratio",
    "plot_trajectory",
    "needs_2d",
]


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
        finite = finite_values(values)
        if log:
            finite = finite[finite > 0]
        clim = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    clim = padded_range(*clim)
    if log:
        return LogNorm(vmin=max(clim[0], 1e-300), vmax=clim[1])
    return Normalize(vmin=clim[0], vmax=clim[1])


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
    smooth: bool = True,
    norm: Any = None,
) -> Any:
    """Contour lines (labelled) or, with `filled`, filled contours; returns the QuadContourSet.

    `smooth`: the lines are drawn on a finer grid interpolated from the stored one (for drawing
    only; `views.refine_grid`), and the title says so. `norm` overrides the colour mapping (a
    comparison colours contours and 3D views with one norm).
    """
    z = surface_values(surface, surf, zmax)
    X, Y = _mesh(surface)
    fine = refine_grid(surface.x, surface.y, z) if smooth else (surface.x, surface.y, z, 1)
    factor = fine[3]
    lv = np.asarray(levels, dtype=float) if levels is not None else contour_levels(z, vmin, vmax, vlevel, log)
    if surf == "eig_ratio" and levels is None and vmin is None and vmax is None and vlevel is None:
        lv = np.linspace(0.0, EIG_RATIO_MAX, 11)[1:-1] if not filled else np.linspace(0.0, EIG_RATIO_MAX, 11)
        clim = clim or (0.0, EIG_RATIO_MAX)
    if ax is None:
        ax = new_axes()
    finite = finite_values(z)
    constant = float(finite.min()) == float(finite.max())
    if filled and len(lv) < 2:  # a constant: one band around its value fills the plane
        lv = np.array(padded_range(float(lv[0]) if len(lv) else float(finite.min()), float(finite.max())))
    if clim is None and len(lv) > 1:
        clim = colour_range(lv, z)
    norm = norm if norm is not None else _norm(clim, z, log)
    if factor > 1:
        X, Y = np.meshgrid(fine[0], fine[1], indexing="ij")
        z = fine[2]
    zz = np.ma.masked_invalid(z)
    cmap = cmap or _default_cmap(surf)
    if constant and not filled:
        axes_note(ax, f"constant: {float(finite.min()):.4g} at every computed point")
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
            ax.clabel(cs, drawn[:: max(1, -(-len(drawn) // 5))], fmt=tick_text, fontsize=FONT_PT, inline=True)
        lowest = float(finite.min())
        if len(lv) and lowest > lv[-1] and not constant:  # nothing to draw: say so rather than leave a blank panel
            ax.text(0.5, 0.5, f"above the top level ({lv[-1]:.3g}) everywhere\nlowest value {lowest:.3g}",
                    transform=ax.transAxes, ha="center", va="center", fontsize=FONT_PT, color="0.3")
    ax.set_aspect("auto")
    decorate_axes(ax, surface, surf, title, smooth_note(factor))
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
        ax = new_axes()
    mesh = ax.pcolormesh(
        surface.x, surface.y, np.ma.masked_invalid(z).T,  # pcolormesh wants [ny, nx]
        shading="nearest", cmap=cmap or _default_cmap(surf), norm=_norm(clim, z, log),
    )
    decorate_axes(ax, surface, surf, title)
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
    short_labels: bool = False,
) -> Any:
    """A 3D surface on a `projection='3d'` axes (log: z is log10 of the value, ticks show values).

    `clim` (colour scale) and `zlim` (z range) are in drawn units, so log10 with `log`; panels
    that share them are on one scale. The faces are lit by one light (`figure_style`) and seen
    from the shared camera; faces above `zmax` are drawn grey at the cap, not in the top colour.
    Returns the Poly3DCollection (its norm and colour map are the colour bar's).
    """
    z = surface_values(surface, surf, zmax)
    above = surface_values(surface, surf) > zmax if zmax is not None else np.zeros(z.shape, bool)
    X, Y = _mesh(surface)
    if log:
        z = _log10(z)
        if not np.isfinite(z).any():
            raise LandscapeError(f"--log needs positive values, and {surf!r} has none")
    if surf == "eig_ratio":
        clim = clim or (0.0, EIG_RATIO_MAX)
    if ax is None:
        ax = new_axes("3d")
    if not hasattr(ax, "zaxis"):
        raise LandscapeError("a 3D surface needs a 3D axes: fig.add_subplot(projection='3d')")
    norm = _norm(clim, z, False)
    art = _lit_surface(ax, X, Y, z, above, norm, cmap or _default_cmap(surf))
    finite = finite_values(z)
    ax.set_zlim(*padded_range(*(zlim if zlim is not None else (float(finite.min()), float(finite.max())))))
    ax.view_init(elev=CAMERA_ELEV, azim=CAMERA_AZIM)
    xl, yl = ("x step", "y step") if short_labels else (axis_label(surface, "x"), axis_label(surface, "y"))
    ax.set_xlabel(wrap_text(xl.split(" (")[0], 0.6 * axes_width(ax)), fontsize=FONT_PT, labelpad=-2)
    ax.set_ylabel(wrap_text(yl.split(" (")[0], 0.6 * axes_width(ax)), fontsize=FONT_PT, labelpad=-2)
    ax.set_zlabel(SURF_LABELS.get(surf, surf) + (" (log scale)" if log else ""), fontsize=FONT_PT, labelpad=0)
    tidy_ticks(ax)
    if log:
        _log_ticks(ax.zaxis, ax.get_zlim())
    if title:
        set_surface_title(ax, surface, surface_title(surface, surf))
    return art


def _log_ticks(axis: Any, lim: tuple[float, float]) -> None:
    """An axis in log10 units labelled with the values: 0.01, 0.1, 1, 10 (whole decades when
    the range spans two or more)."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    axis.set_major_locator(MaxNLocator(nbins=4, integer=lim[1] - lim[0] >= 2, steps=[1, 2, 2.5, 5, 10]))
    axis.set_major_formatter(FuncFormatter(lambda v, _p: tick_text(10.0**v)))


def _lit_surface(ax: Any, X: np.ndarray, Y: np.ndarray, z: np.ndarray, above: np.ndarray, norm: Any, cmap: str) -> Any:
    """plot_surface with one colour per cell (its corners' mean, as matplotlib colours a cell),
    lit by one light; cells with a corner above the cap grey."""
    import warnings

    import matplotlib

    cell = np.full(z.shape, np.nan)
    with warnings.catch_warnings():  # a cell with no computed corner (a partial surface): NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        cell[:-1, :-1] = np.nanmean(np.stack([z[:-1, :-1], z[1:, :-1], z[:-1, 1:], z[1:, 1:]]), axis=0)
    colour_map = matplotlib.colormaps[cmap]
    rgba = colour_map(norm(np.ma.masked_invalid(cell)))
    rgba = shade_faces(z, rgba)
    clipped = np.zeros(z.shape, bool)
    clipped[:-1, :-1] = above[:-1, :-1] | above[1:, :-1] | above[:-1, 1:] | above[1:, 1:]
    rgba[clipped] = CLIPPED_COLOR
    art = ax.plot_surface(X, Y, np.ma.masked_invalid(z), facecolors=rgba, rstride=1, cstride=1,
                          linewidth=0, antialiased=False, shade=False)
    art.set_cmap(colour_map)
    art.set_norm(norm)
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
        ax = new_axes()
    drawn = _draw_lines(ax, {n: (surface.x, v, "-") for n, v in values.items()}, log)
    if ylim is not None:
        ax.set_ylim(*padded_range(*ylim))
    ax.set_xlabel(wrap_text(axis_label(surface, surface.curve_axis), axes_width(ax)), fontsize=FONT_PT)
    if title:
        set_surface_title(ax, surface, surface_title(surface))
    return drawn


def _draw_lines(ax: Any, lines: dict[str, tuple[np.ndarray, np.ndarray, str]], log: bool) -> dict[str, Any]:
    """Draw named lines: *_acc on a twin axis, others on `ax`. Keys may carry a ' (suffix)'."""
    loss, acc, twin = [], [], None
    for label, (x, v, style) in lines.items():
        name = label.split(" ")[0]
        if len(x) == 1:
            style = "o"  # a single point: a marker, since a line of one point draws nothing
        color = SPLIT_COLORS.get(_split_of(name), None)
        text = SURF_LABELS.get(name, name) + label[len(name):]
        if name.endswith("_acc"):
            if twin is None:
                twin = ax.twinx()
                twin.set_ylabel("accuracy (%)", fontsize=FONT_PT)
                twin.tick_params(labelsize=FONT_PT)
            (ln,) = twin.plot(x, v, style, color=color, alpha=0.75, lw=1.2, label=text, dashes=(4, 2))
            acc.append(ln)
        else:
            (ln,) = ax.plot(x, v, style, color=color, lw=1.6, label=text)
            loss.append(ln)
    if log and loss:
        ax.set_yscale("log")
    names = {label.split(" ")[0] for label in lines}
    if any(n.endswith("_loss") for n in names):
        ax.set_ylabel("loss" + (" (log scale)" if log else ""), fontsize=FONT_PT)
    elif names:
        ax.set_ylabel(SURF_LABELS.get(next(iter(names)), ""), fontsize=FONT_PT)
    tidy_ticks(ax)
    handles = loss + acc
    if handles:
        ax.legend(handles, [h.get_label() for h in handles], fontsize=FONT_PT, loc="best")
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
        ax = new_axes()
    drawn = _draw_lines(ax, lines, log)
    ax.set_xlabel("step along the direction", fontsize=FONT_PT)
    if title:
        set_surface_title(ax, surface, surface_title(surface) + " · slices")
    return drawn


def plot_trajectory(surface: Surface, ax: Any) -> list[Any]:
    """Overlay the projected training path (PCA directions) on a 2D plot; returns its lines."""
    t = surface.trajectory
    if not t or "x" not in t or "y" not in t:
        raise LandscapeError(
            f"{surface.path} holds no training trajectory; make the surface with "
            "`landscape surface --pca SNAPSHOTS...` (or drop --trajectory)"
        )
    from .paths_plot import is_multi_run, plot_paths

    if is_multi_run(surface):  # several runs on one plane: a colour and a legend entry each
        return plot_paths(surface, ax)
    tx, ty = np.asarray(t["x"]), np.asarray(t["y"])
    lines = ax.plot(tx, ty, "-o", color="tab:red", ms=3, lw=1.2, label="training path")
    epochs = np.asarray(t.get("epochs", np.arange(len(tx))))
    for k in {0, len(tx) - 1}:
        ax.annotate(f"epoch {epochs[k]}", (tx[k], ty[k]), fontsize=FONT_PT, color="tab:red",
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
        raise needs_2d(surface, kind)
    surf = surf or _first_loss(surface)
    func = {"contour": plot_contour, "contourf": plot_contourf, "heatmap": plot_heatmap,
            "surface": plot_surface3d}[kind]
    return func(surface, surf, ax, **kwargs)


def needs_2d(surface: Surface, kind: str) -> LandscapeError:
    """The error for a 2D view (`kind`) asked of a 1D curve."""
    return LandscapeError(f"{surface.path} is a 1D curve; --kind {kind} needs a 2D surface (use --kind line)")


def _first_loss(surface: Surface) -> str:
    names = available_surfs(surface)
    if "train_loss" in names:
        return "train_loss"
    loss = [n for n in names if n.endswith("_loss")]
    if not (loss or names):
        raise LandscapeError(f"{surface.path} holds no arrays to draw")
    return (loss or names)[0]
