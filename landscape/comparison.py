"""The comparison figure: several nets side by side on one shared scale.

One column per surface: a contour panel above a 3D panel for a 2D surface, the curves for a 1D
one. Contour levels and the colour scale are shared by every panel (`landscape.views`), so the
panels can be compared by eye; the 3D row is clipped where the data rise far above the colour
scale, and the figure says so.

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

from .errors import LandscapeError
from .outputs import atomic_write, check_output
from .plotting import axes_note, plot_contour, plot_line, plot_surface3d
from .text import printable
from .views import (
    SURF_LABELS,
    NothingToDraw,
    as_drawable,
    check_pixels,
    colour_range,
    comparison_problem,
    contour_levels,
    display_cap,
    finite_values,
    metric_summary,
    partial_note,
    surf_label,
    surface_title,
    surface_values,
)

if TYPE_CHECKING:  # annotations only
    from .loss_surface import Surface

__all__ = ["Comparison", "plot_comparison", "save_comparison"]


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
        finite = finite_values(shown)
        pad = 0.05 * (finite.max() - finite.min() or 1.0)
        ylim = (float(finite.min() - pad), float(finite.max() + pad))
        if log and (finite > 0).any():
            ylim = (float(finite[finite > 0].min()) / 1.2, float(finite.max()) * 1.2)
        comp = Comparison(fig, surf, np.array([]), ylim, mismatch=problem, notes=notes)
        for k, s in enumerate(surfaces):
            ax = fig.add_subplot(1, n, k + 1)
            if values[k] is None:
                axes_note(ax, f"{Path(s.path).name}: no finite {surf_label(surf)}")
                comp.lines.append({})
            else:
                comp.lines.append(plot_line(s, [surf], ax, log=log, zmax=zmax, ylim=ylim, title=False))
            ax.set_title(_panel_title(s, surf), fontsize=8)
            comp.axes.append(ax)
        _mismatch_note(fig, problem)
        return comp
    levels = contour_levels(shown, vmin, vmax, vlevel, log)
    finite = finite_values(shown)
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
            axes_note(ax, f"{Path(s.path).name}: no finite {surf_label(surf)}")
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
    fig.colorbar(first, ax=comp.axes, shrink=0.5, label=("log10 " if log else "") + SURF_LABELS.get(surf, surf))
    dirs = surface_title(surfaces[0]).split(" · ", 1)[1:] if not problem else []
    clipped = [f"3D clipped at {cap:.3g}"] if cap is not None else []
    fig.suptitle(" · ".join([SURF_LABELS.get(surf, surf), *dirs, "shared levels and colour scale", *clipped]), fontsize=10)
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
