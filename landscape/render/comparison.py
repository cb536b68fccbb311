"""The comparison figure: several nets side by side on one shared scale.

One column per surface (at most four side by side, then wrapped): a contour panel above a 3D
panel for a 2D surface, the curves for a 1D one. Contour levels and the colour scale are shared
by every panel (`landscape.render.views`), so the panels can be compared by eye. A loss is drawn with
log10 z in the 3D row and one log colour scale over all the data, basin to walls, as the paper's
figures; with a linear z (`zscale='linear'`, or accuracy) the 3D row is clipped where the data
rise far above the colour scale, the clipped faces are grey and the figure says so. Sizes and
text follow `landscape.render.figure_style`.

Example:
    >>> comp = plot_comparison([read_surface(p) for p in paths], "train_loss")  # doctest: +SKIP
    >>> comp.figure.savefig("compare.png")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import LandscapeError
from ..io.outputs import check_output
from ..system.text import printable
from .decorations import add_colorbar, axes_note
from .figure_files import save_figure
from .figure_style import FONT_PT, PANEL_WIDTH, tidy_ticks, wrap_text
from .labels import (
    SURF_LABELS,
    metric_summary,
    partial_note,
    smooth_note,
    surf_label,
    surface_title,
)
from .plotting import plot_contour, plot_line, plot_surface3d
from .views import (
    ZSCALES,
    NothingToDraw,
    as_drawable,
    check_pixels,
    colour_range,
    comparison_problem,
    contour_levels,
    default_zscale,
    display_cap,
    finite_values,
    refine_grid,
    shared_log_scale,
    surface_values,
)

if TYPE_CHECKING:  # annotations only
    from ..core.loss_surface import Surface

__all__ = ["Comparison", "plot_comparison", "save_comparison"]


@dataclass
class Comparison:
    """What `plot_comparison` drew: one column per surface, on one shared scale."""

    figure: Any
    surf: str
    levels: np.ndarray
    clim: tuple[float, float]  # colour scale (of the values, not log10)
    zlim: tuple[float, float] | None = None  # z range of the 3D row (log10 with zscale 'log')
    contours: list[Any] = field(default_factory=list)  # QuadContourSet per 2D surface
    surfaces3d: list[Any] = field(default_factory=list)  # Poly3DCollection per 2D surface
    lines: list[dict[str, Any]] = field(default_factory=list)  # per 1D surface
    axes: list[Any] = field(default_factory=list)
    mismatch: str | None = None
    zcap: float | None = None  # the 3D row's z clip when the data reach far above the colour scale
    notes: list[str] = field(default_factory=list)  # panels skipped (no finite value), one line each
    zscale: str = "linear"  # the 3D row's z: the values or their log10


def _grid_shape(n: int, max_cols: int = 4) -> tuple[int, int]:
    """Columns and rows of panel pairs: at most `max_cols` nets side by side, then wrap."""
    rows = -(-n // max_cols)
    cols = -(-n // rows)
    return cols, rows


def unmet_criterion_note(trained: Any) -> str | None:
    """"not converged: ..." for a net trained to a criterion it missed (its panel is no fair peer)."""
    if not isinstance(trained, dict) or trained.get("criterion_met") != 0.0:
        return None
    try:
        return (f"NOT CONVERGED: train loss {float(trained['train_loss']):.3g} > {float(trained['target_loss']):g} "
                f"after {int(trained['epochs_used'])} epochs")
    except (KeyError, TypeError, ValueError):
        return "NOT CONVERGED (missed its training criterion)"


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
    unmet = unmet_criterion_note(a.get("checkpoint_metrics"))
    if unmet:
        lines.append(unmet)
    return wrap_text("\n".join(printable(line) for line in lines), PANEL_WIDTH)


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
    zscale: str | None = None,
) -> Comparison:
    """Side-by-side panels (contours on top, 3D below) with shared levels and colour scale.

    Refuses surfaces on different grids or with different direction kinds or normalizations
    unless `allow_mismatch` (then the difference is written under the figure). `zscale`: the
    3D row's z, linear or log (None: log for a loss, as the paper; `log` forces log); with log,
    contours and 3D views are coloured on one log scale over the whole data range and nothing
    is clipped unless `zmax` asks.
    """
    from matplotlib.colors import LogNorm
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
    cols, rows = _grid_shape(n)  # at most 4 nets side by side (2D: contour above 3D), wrapped
    if fig is None:
        fig = Figure(figsize=(PANEL_WIDTH * cols + 0.9, (2 * PANEL_WIDTH + 0.9 if two_d else 3.4) * rows + 0.4),
                     layout="constrained")
    if not two_d:
        finite = finite_values(shown)
        pad = 0.05 * (finite.max() - finite.min() or 1.0)
        ylim = (float(finite.min() - pad), float(finite.max() + pad))
        if log and (finite > 0).any():
            ylim = (float(finite[finite > 0].min()) / 1.2, float(finite.max()) * 1.2)
        comp = Comparison(fig, surf, np.array([]), ylim, mismatch=problem, notes=notes)
        for k, s in enumerate(surfaces):
            ax = fig.add_subplot(rows, cols, k + 1)
            if values[k] is None:
                axes_note(ax, f"{Path(s.path).name}: no finite {surf_label(surf)}")
                comp.lines.append({})
            else:
                comp.lines.append(plot_line(s, [surf], ax, log=log, zmax=zmax, ylim=ylim, title=False))
            ax.set_title(_panel_title(s, surf), fontsize=FONT_PT)
            comp.axes.append(ax)
        _mismatch_note(fig, problem)
        return comp
    if zscale is not None and zscale not in ZSCALES:
        raise LandscapeError(f"--zscale {zscale!r} is not one of {', '.join(ZSCALES)}")
    levels = contour_levels(shown, vmin, vmax, vlevel, log)
    finite = finite_values(shown)
    zlog = log or (zscale or default_zscale(surf)) == "log"
    if zlog and not (finite > 0).any():
        zlog = False  # nothing positive to take a log of: linear
    if log or zlog:
        finite = finite[finite > 0]
    data = (float(finite.min()), float(finite.max())) if finite.size else (1.0, 10.0)
    clim = data
    if len(levels) > 1:
        explicit = vmin is not None or vmax is not None
        clim = (float(levels[0]), float(levels[-1])) if explicit else colour_range(levels, shown)
    to3d = (lambda v: (float(np.log10(v[0])), float(np.log10(v[1])))) if zlog else (lambda v: v)
    log_cap = None
    if zlog and not log:  # one log colour scale over everything drawn: basin and walls
        clim, log_cap = shared_log_scale(values, data, zmax)
    cap, drawn_range = display_cap(clim, data, zmax) if not zlog else (log_cap, (data[0], clim[1]))
    comp = Comparison(fig, surf, levels, clim, to3d(drawn_range), mismatch=problem, zcap=cap, notes=notes,
                      zscale="log" if zlog else "linear")
    norm = LogNorm(*clim) if zlog else None  # contours coloured as the 3D views
    factor = 1
    for k, s in enumerate(surfaces):
        row, col = divmod(k, cols)
        ax = fig.add_subplot(2 * rows, cols, 2 * row * cols + col + 1)
        ax3 = fig.add_subplot(2 * rows, cols, (2 * row + 1) * cols + col + 1, projection="3d")
        if values[k] is None:
            axes_note(ax, f"{Path(s.path).name}: no finite {surf_label(surf)}")
            cs = art = None
        else:
            cs = plot_contour(s, surf, ax, levels=levels, log=log, zmax=zmax, clim=clim, title=False, norm=norm)
            art = plot_surface3d(
                s, surf, ax3, log=zlog, zmax=zmax if cap is None else cap, clim=to3d(clim), zlim=comp.zlim,
                title=False, short_labels=True,
            )
            ax3.set_zlabel("")  # the colour bar names the value
            factor = max(factor, refine_grid(s.x, s.y, values[k])[3])
        ax.set_title(_panel_title(s, surf), fontsize=FONT_PT)
        # the direction kind and norm are shared: say it once, in the figure's title
        ax.set_xlabel("x step", fontsize=FONT_PT)
        ax.set_ylabel("y step" if col == 0 else "", fontsize=FONT_PT)
        tidy_ticks(ax)
        comp.contours.append(cs)
        comp.surfaces3d.append(art)
        comp.axes += [ax, ax3]
    first = next(a for a in comp.surfaces3d if a is not None)
    mappable = first
    if zlog:  # the bar in values on a log axis; the 3D faces use log10 of them on the same colours
        from matplotlib.cm import ScalarMappable

        mappable = ScalarMappable(LogNorm(*clim), first.get_cmap())
    add_colorbar(fig, mappable, comp.axes, SURF_LABELS.get(surf, surf) + (" (log scale)" if zlog else ""),
                 shrink=0.5)
    dirs = surface_title(surfaces[0]).split(" · ", 1)[1:] if not problem else []
    clipped = [f"3D clipped at {cap:.3g} (grey above)"] if cap is not None else []
    extra = [f"3D z {'log' if zlog else 'linear'}"] + ([smooth_note(factor)] if factor > 1 else [])
    head = " · ".join([SURF_LABELS.get(surf, surf), *dirs, "shared levels and colour scale", *clipped, *extra])
    fig.suptitle(wrap_text(head, fig.get_figwidth()), fontsize=FONT_PT)
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
        fig.text(0.01, 0.005, wrap_text(f"note: {problem}", fig.get_figwidth()), fontsize=FONT_PT, color="tab:red")


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
    save_figure(comp.figure, out, fmt, dpi, "write figure", make_folder=True)
    return out
