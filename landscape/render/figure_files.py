"""The figures `landscape plot` writes, and writing any figure to a file.

`save_plots` writes every requested view of a surface to `<out>/<file stem>_<surf>_<kind>.<fmt>`
(PNG, PDF or SVG; arrays with no finite value skipped with a note), `view_figure` makes the
figure of one view (a loss's 3D view in log10 z by default, contours drawn on an interpolated
grid that the title mentions, local minima marked on request), and `save_figure` writes any
figure atomically, with text kept as text in PDF and SVG. The drawing itself is
`landscape.render.plotting`.

Example:
    >>> from landscape.io.storage import read_surface
    >>> paths = save_plots(read_surface("surfaces/resnet20.h5"), "plots", kind="contour")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import LandscapeError
from ..io.outputs import atomic_write, check_output, output_error
from .decorations import add_colorbar, set_surface_title
from .figure_style import PAD_INCHES, SINGLE_FIGSIZE, vector_rc
from .labels import SURF_LABELS, surface_title
from .plotting import (
    needs_2d,
    plot_contour,
    plot_heatmap,
    plot_line,
    plot_slices,
    plot_surface3d,
    plot_trajectory,
)
from .views import (
    KINDS,
    KINDS_2D,
    ZSCALES,
    NothingToDraw,
    as_drawable,
    auto_zmax,
    check_pixels,
    default_surfs,
    default_zscale,
    finite_values,
    surface_values,
)

if TYPE_CHECKING:  # annotations only
    from ..core.loss_surface import Surface

__all__ = ["save_plots", "view_figure", "save_figure", "RASTER_FACES"]


def _kinds(surface: Surface, kind: str, surf: str) -> list[str]:
    if kind not in KINDS:
        raise LandscapeError(f"--kind {kind!r} is not one of {', '.join(KINDS)}")
    if surface.ndim == 1:
        if kind not in ("auto", "all", "line"):
            raise needs_2d(surface, kind)
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
    zscale: str | None = None,
    minima: bool = False,
) -> list[Path]:
    """Write every requested view to `out_dir/<file stem>_<surf>_<kind>.<fmt>`; return the paths.

    A 1D file gets one figure with all its curves (`<stem>_line.<fmt>`) unless `surfs` is given;
    a 1xN or Nx1 grid is drawn as a curve (see `as_drawable`). An array with no finite value
    (the net diverged everywhere) is skipped: `on_skip` gets a one-line note; without
    `on_skip`, `NothingToDraw` is raised. `zscale` (linear | log) is the 3D view's z; None: log
    for losses, linear otherwise (`views.default_zscale`); `log` forces log everywhere.
    `minima`: mark the local minima on the 2D flat views of each loss (`topology_plot`).
    """
    from matplotlib.figure import Figure

    if fmt not in ("png", "pdf", "svg"):
        raise LandscapeError(f"--format {fmt!r} is not one of png, pdf, svg")
    if zscale is not None and zscale not in ZSCALES:
        raise LandscapeError(f"--zscale {zscale!r} is not one of {', '.join(ZSCALES)}")
    check_pixels(Figure(figsize=SINGLE_FIGSIZE), dpi, fmt)
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
        save_figure(fig, path, fmt, dpi, "write plot")
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
            fig = Figure(figsize=SINGLE_FIGSIZE)
            plot_line(surface, group, fig.add_subplot(), log=log, zmax=zmax)
            single = surfs or group == ["eig_ratio"]
            save(fig, f"{stem}_{group[0]}_line" if single else f"{stem}_line")
        return written
    for n in names:
        for k in _kinds(surface, kind, n):
            fig = view_figure(surface, n, k, trajectory=trajectory, zscale=zscale,
                              minima=minima and n.endswith("_loss"), **levels)
            save(fig, f"{stem}_{n}_{k}")
    return written


def save_figure(fig: Any, path: str | Path, fmt: str, dpi: int, what: str = "write figure", **kwargs: Any) -> None:
    """Write `fig` atomically; PDF and SVG keep text as text, and a 3D mesh of more than
    `RASTER_FACES` faces is embedded as an image in them (the rest stays vector)."""
    import matplotlib

    if fmt in ("pdf", "svg"):
        for ax in fig.axes:
            for art in getattr(ax, "collections", []):
                if hasattr(ax, "zaxis") and len(art.get_paths()) > RASTER_FACES:
                    art.set_rasterized(True)
    with matplotlib.rc_context(vector_rc(fmt)), atomic_write(Path(path), what, **kwargs) as tmp:
        fig.savefig(tmp, dpi=dpi, format=fmt, bbox_inches="tight", pad_inches=PAD_INCHES)


RASTER_FACES = 2500  # a 51x51 3D mesh: rasterized in vector files (thousands of paths otherwise)


def view_figure(
    surface: Surface, surf: str, kind: str, *, vmin: float | None = None, vmax: float | None = None,
    vlevel: float | None = None, log: bool = False, zmax: float | None = None, trajectory: bool = False,
    zscale: str | None = None, minima: bool = False,
) -> Any:
    """One figure of `landscape plot`: view `kind` of array `surf` of a 2D surface (a Figure);
    `minima` marks the local minima on the flat views (contour, contourf, heatmap)."""
    from matplotlib.figure import Figure

    levels = {"vmin": vmin, "vmax": vmax, "vlevel": vlevel, "log": log, "zmax": zmax}
    fig = Figure(figsize=SINGLE_FIGSIZE, layout="constrained")
    if kind == "line":
        plot_slices(surface, [surf], fig.add_subplot(), log=log, zmax=zmax)
    elif kind == "surface":
        ax = fig.add_subplot(projection="3d")
        zlog = log or (zscale or default_zscale(surf)) == "log"
        if zlog and not (finite_values(surface_values(surface, surf)) > 0).any():
            zlog = False  # nothing positive to take a log of (e.g. a zero accuracy): linear
        cap = None if zlog or surf == "eig_ratio" else auto_zmax(surface, surf, zmax, vmin, vmax, vlevel)
        art = plot_surface3d(surface, surf, ax, log=zlog, zmax=zmax if cap is None else cap)
        ax.set_zlabel("")  # the colour bar names the value (a z label beside it overlaps its ticks)
        clip = zmax if cap is None else cap
        if clip is not None and (surface_values(surface, surf) > clip).any():
            set_surface_title(ax, surface, surface_title(surface, surf) + f"\ngrey: above {clip:.3g}"
                       + ("" if cap is None else " (--zmax to choose)"))
        add_colorbar(fig, art, ax, SURF_LABELS.get(surf, surf) + (" (log scale)" if zlog else ""),
                     log10_ticks=zlog, shrink=0.6, pad=0.12)
    else:
        ax = fig.add_subplot()
        if kind == "heatmap":
            art = plot_heatmap(surface, surf, ax, log=log, zmax=zmax, trajectory=trajectory)
        else:
            art = plot_contour(surface, surf, ax, filled=kind == "contourf", trajectory=trajectory, **levels)
        if kind != "contour":
            add_colorbar(fig, art, ax)
        if minima:
            from .topology_plot import plot_minima

            plot_minima(surface, surf, ax)
    return fig
