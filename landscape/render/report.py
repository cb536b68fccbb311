"""A self-contained interactive HTML report of one or more surfaces (plotly).

One file that opens offline: plotly.js is inlined once in the page head, and each figure is
a div drawn from its own JSON (no CDN, no MathJax, no other request). Per surface: an
interactive 3D surface, a contour, 1D slices through the centre, train against test when both
exist, the |lambda_min/lambda_max| map when curvature was computed, a metadata table and the
scalar metrics. For several surfaces: a side-by-side view on one colour scale whose 3D cameras
move together. A toolbar button switches every 3D graph between linear and log10 z; a loss
starts on log10 z, coloured over all its values, from the camera and with the colours of the
matplotlib 3D views (`landscape.render.figure_style`).

Example:
    >>> from landscape.io.storage import read_surface
    >>> html = report_html([read_surface("surfaces/a.h5"), read_surface("surfaces/b.h5")])
    >>> write_report([read_surface("surfaces/a.h5")], "plots/report.html")
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._version import __version__
from ..core.preview import preview, preview_note, thin, thinned_note
from ..errors import LandscapeError
from ..io.outputs import atomic_write, check_output
from ..system.text import printable
from .density_plot import FLOOR as DENSITY_FLOOR
from .density_plot import stored_density
from .labels import file_metrics, metric_summary, partial_note, surf_label, surface_title
from .plotly_specs import (
    MAX_TEXT,
    REPORT_MAX_AXIS,
    REPORT_MAX_CURVE,
    as_list,
    axis_title,
    esc,
    fig_3d,
    fig_contour,
    fig_curve,
    fig_density,
    fig_eig_ratio,
    fig_slices,
    fig_train_test,
    shared_scale,
    title_spec,
    values_or_none,
)
from .views import (
    NothingToDraw,
    as_drawable,
    available_surfs,
    comparison_problem,
    default_zscale,
    display_cap,
    shared_log_scale,
    surface_values,
)

if TYPE_CHECKING:  # the value type draws itself through these modules: no import at run time
    from ..core.loss_surface import Surface

__all__ = ["report_html", "write_report", "write_html", "report_figures", "skipped_views", "PLOT_CONFIG"]

PLOT_CONFIG = {"displaylogo": False, "responsive": True}
_METRIC_HELP = {
    "margin": "loss margin that defines the basin",
    "metric_loss": "array the loss metrics use",
    "basin_width_x": "width of the basin along x (centre's loss + margin)",
    "basin_width_y": "width of the basin along y (centre's loss + margin)",
    "basin_width_capped": "the basin reaches the grid's edge (widths are lower bounds)",
    "basin_fraction": "fraction of computed points within the margin of the centre's loss",
    "flat_curvature_fraction": "fraction of the basin where |λmin/λmax| < 0.01",
    "top_eigenvalue": "largest Hessian eigenvalue at the centre",
}


# ---------------------------------------------------------------------------------------------
# tables


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


def _table(rows: Sequence[tuple[str, Any, str]], cls: str) -> str:
    body = "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(_fmt(v), 1000)}</td>"
        f"<td class='help'>{html.escape(h)}</td></tr>"
        for k, v, h in rows
    )
    return f"<table class='{cls}'>{body}</table>"


def _metadata_rows(s: Surface) -> list[tuple[str, Any, str]]:
    a = s.attrs
    ds = a.get("dataset") if isinstance(a.get("dataset"), dict) else {}
    d = a.get("directions") if isinstance(a.get("directions"), dict) else {}
    grid = "x".join(str(n) for n in s.shape) + f"; x {s.x[0]:g}..{s.x[-1]:g}"
    if s.y is not None:
        grid += f", y {s.y[0]:g}..{s.y[-1]:g}"
    rows: list[tuple[str, Any, str]] = [
        ("file", Path(s.path).name, "surface file"),
        ("layout", "paper's code" if s.source == "paper" else f"landscape schema v{a.get('version', '?')}", ""),
        ("model", a.get("model"), ""),
        ("model kwargs", a.get("model_kwargs"), ""),
        ("data", ds.get("name"), ""),
        ("samples", {k: a.get(f"n_{k}") for k in ("train", "test") if a.get(f"n_{k}") is not None}, "per split"),
        ("grid", grid, "steps along the directions"),
        ("points done", preview_note(s) or f"{s.done} of {s.computed.size}", ""),
        ("directions", a.get("dir_kind"), "random, pca, interpolate, plane, hessian, file"),
        ("direction type", a.get("dir_type"), "weights: parameters only; states: BN statistics too"),
        ("normalization", a.get("norm"), ""),
        ("ignore", a.get("ignore"), "biasbn: biases and BatchNorm not moved"),
        ("seed", a.get("seed"), ""),
        ("explained variance", d.get("explained_variance_ratio") if a.get("dir_kind") == "pca" else None,
         "PCA: ratio per component"),
        ("BatchNorm", a.get("bn"), ""),
        ("precision", a.get("precision"), ""),
        ("loss", a.get("loss"), ""),
        ("checkpoint", a.get("checkpoint"), ""),
        ("checkpoint epoch", a.get("checkpoint_epoch"), ""),
        ("checkpoint metrics", a.get("checkpoint_metrics"), ""),
        ("software", a.get("software"), ""),
        ("created", a.get("created"), ""),
    ]
    for i, r in enumerate(a.get("runs") or []):
        if isinstance(r, dict):
            rows.append((f"run {i + 1}", f"{r.get('points')} points in {r.get('seconds')} s on "
                         f"{r.get('ranks', 1)} rank(s), {r.get('device', '?')}", ""))
    return [r for r in rows if r[1] not in (None, "", {}, [])]


def _metric_rows(s: Surface) -> list[tuple[str, Any, str]]:
    m = file_metrics(s)
    computed_here = not s.metrics
    rows = []
    for k, v in m.items():
        h = _METRIC_HELP.get(k, "")
        if k.startswith("center_"):
            h = f"{surf_label(k[7:])} at the centre"
        elif k.startswith("max_rise_r"):
            h = f"largest loss increase within radius {k[10:]} of the centre"
        rows.append((k, v, h))
    if computed_here and rows:
        rows.append(("(source)", "computed by the report", "the file stores no metrics"))
    return rows


# ---------------------------------------------------------------------------------------------
# page


def _main_surf(surfaces: Sequence[Surface], surf: str | None) -> str:
    if surf is not None:
        for s in surfaces:
            values_or_none(s, surf)  # one-line error naming what exists
        return surf
    common = set.intersection(*(set(available_surfs(s)) for s in surfaces))
    for name in ("train_loss", "test_loss"):
        if name in common:
            return name
    loss = sorted(n for n in common if n.endswith("_loss"))
    if not loss:
        raise LandscapeError(
            "the surfaces share no loss array to show; pick one with --surf "
            f"({', '.join(Path(s.path).name + ': ' + ', '.join(available_surfs(s)) for s in surfaces)})"
        )
    return loss[0]


def report_figures(
    surfaces: Sequence[Surface], surf: str | None = None, zmax: float | None = None
) -> list[tuple[str, str, dict[str, Any]]]:
    """Every figure of the report as (section id, figure id, plotly figure dict), in page order."""
    if not surfaces:
        raise LandscapeError("report needs at least one surface file")
    surfaces = [as_drawable(s) for s in surfaces]
    surf = _main_surf(surfaces, surf)
    values = [values_or_none(s, surf, zmax) for s in surfaces]
    figs: list[tuple[str, str, dict[str, Any]]] = []
    two_d = [k for k, s in enumerate(surfaces) if s.ndim == 2 and values[k] is not None]
    one_d = [k for k, s in enumerate(surfaces) if s.ndim == 1 and values[k] is not None]
    if len(surfaces) > 1:
        figs += _compare_figures(surfaces, surf, values, two_d, one_d, zmax)
    for k, s in enumerate(surfaces):
        figs += _surface_figures(k, s, surf, values[k], zmax)
    return figs


def _clim3(surf: str, clim: tuple[float, float], data: tuple[float, float]) -> tuple[float, float]:
    """The 3D colour range: a loss (log z by default) is coloured over all its values, basin to
    walls, as the matplotlib 3D views; otherwise the contours' range."""
    return data if default_zscale(surf) == "log" and data[0] > 0 else clim


def _compare_figures(
    surfaces: Sequence[Surface], surf: str, values: Sequence[np.ndarray | None],
    two_d: Sequence[int], one_d: Sequence[int], zmax: float | None,
) -> list[tuple[str, str, dict[str, Any]]]:
    """The side-by-side section: 3D and contour views on one scale, or the 1D curves together."""
    figs: list[tuple[str, str, dict[str, Any]]] = []
    if len(two_d) > 1:
        shared = [values[k] for k in two_d]
        levels, clim, data = shared_scale(shared)
        if default_zscale(surf) == "log" and data[0] > 0:  # as the comparison figure: one log scale
            clim3, cap = shared_log_scale(shared, data, zmax)
            data = clim3
        else:
            cap, data = display_cap(clim, data, zmax)
            clim3 = clim
        for k in two_d:
            s = surfaces[k]
            title = _short(s, surf, f"z clipped at {cap:.3g}" if cap is not None else "")
            z3 = values[k] if cap is None else np.minimum(values[k], cap)
            figs.append(("compare", f"cmp{k}-3d", fig_3d(s, surf, z3, clim3, title, data)))
        for k in two_d:
            s = surfaces[k]
            figs.append(("compare", f"cmp{k}-contour",
                         fig_contour(s, surf, values[k], levels, clim, _short(s, surf))))
    if len(one_d) > 1:
        data = []
        for k in one_d:
            data.append({"type": "scatter", "mode": "lines+markers", "name": _short(surfaces[k], surf),
                         "x": as_list(surfaces[k].x), "y": as_list(values[k])})
        figs.append(("compare", "cmp-curves", {"data": data, "layout": {
            "title": title_spec(f"{esc(surf_label(surf))} of each 1D file"), "height": 420,
            "xaxis": {"title": {"text": axis_title(surfaces[one_d[0]], surfaces[one_d[0]].curve_axis)}},
            "yaxis": {"title": {"text": esc(surf_label(surf))}}}}))
    return figs


def _surface_figures(
    k: int, s: Surface, surf: str, own: np.ndarray | None, zmax: float | None
) -> list[tuple[str, str, dict[str, Any]]]:
    """One surface's section; views of an array with no finite value are left out."""
    sec = f"surface-{k}"
    figs: list[tuple[str, str, dict[str, Any]]] = []
    if own is not None and s.ndim == 1:
        figs.append((sec, f"s{k}-curve", fig_curve(s, esc(surface_title(s)))))
    elif own is not None:
        levels, clim, data = shared_scale([own])
        cap, _ = display_cap(clim, data, zmax) if default_zscale(surf) == "linear" else (None, data)
        title = esc(surface_title(s, surf)) + (f" (z clipped at {cap:.3g})" if cap is not None else "")
        z3 = own if cap is None else np.minimum(own, cap)
        figs.append((sec, f"s{k}-3d", fig_3d(s, surf, z3, _clim3(surf, clim, data), title)))
        figs.append((sec, f"s{k}-contour", fig_contour(s, surf, own, levels, clim, esc(surface_title(s, surf)))))
        figs.append((sec, f"s{k}-slices", fig_slices(s)))
        if s.n_frames:  # frames through training: animated, one scale for all (frames_plot)
            from .frames_plot import frames_figure

            figs.append((sec, f"s{k}-frames", frames_figure(s, surf, zmax)))
        names = available_surfs(s)
        both = all(values_or_none(s, n) is not None for n in ("train_loss", "test_loss") if n in names)
        if "train_loss" in names and "test_loss" in names and both:
            figs.append((sec, f"s{k}-traintest", fig_train_test(s)))
    if "eig_ratio" in available_surfs(s) and values_or_none(s, "eig_ratio") is not None:
        figs.append((sec, f"s{k}-eigratio", fig_eig_ratio(s)))
    density = stored_density(s)  # `landscape hessian --density --store`
    if density is not None:
        figs.append((sec, f"s{k}-density", fig_density(density, DENSITY_FLOOR)))
    return figs


def skipped_views(surfaces: Sequence[Surface], surf: str | None = None, zmax: float | None = None) -> list[str]:
    """One line per surface whose main array has no finite value (its views are left out)."""
    surfaces = [as_drawable(s) for s in surfaces]
    main = _main_surf(surfaces, surf)
    notes = []
    for s in surfaces:
        try:
            surface_values(s, main, zmax)
        except NothingToDraw as e:
            notes.append(f"skipped the views of {e}")
    return notes


def _short(s: Surface, surf: str, note: str = "") -> str:
    """A side-by-side panel's title: the net (the directions are shared and said once) and its
    metrics, short enough for a quarter of the page."""
    name = str(s.attrs.get("model") or Path(s.path).stem)
    stem = Path(s.path).stem
    head = esc(name if stem == name else f"{name} ({stem})")
    sub = " · ".join(x for x in (metric_summary(s, surf), note) if x)
    return head + (f"<br><sup>{html.escape(sub)}</sup>" if sub else "")


def _shared_description(surfaces: Sequence[Surface]) -> str:
    """'Random directions, filter-normalized. ' when every surface has the same kind, else ''."""
    kinds = {surface_title(s).split(" · ", 1)[-1] for s in surfaces}
    if len(kinds) != 1:
        return ""
    kind = kinds.pop()
    return f"{kind[:1].upper()}{kind[1:]}. "


def _asset(name: str) -> str:
    """A file of `landscape/render/report_assets` (package data: the page's CSS and script)."""
    from importlib.resources import files

    return files("landscape.render").joinpath("report_assets", name).read_text(encoding="utf-8")


_CSS = _asset("report.css")

# The log toggle switches every 3D graph between the stored values and their log10; the link
# copies a camera moved in one side-by-side 3D graph to the others (guarded against echo).
_SCRIPT = _asset("report.js")


def _div(fig_id: str, fig: dict[str, Any], classes: str) -> str:
    import plotly.io as pio

    inner = pio.to_html(
        fig, config=PLOT_CONFIG, include_plotlyjs=False, include_mathjax=False, full_html=False,
        div_id=f"ls-{fig_id}", validate=False, auto_play=False, default_height=f"{fig['layout'].get('height', 450)}px",
    )
    return f"<div class='fig {classes}' data-figure='{fig_id}'>{inner}</div>"


def report_html(
    surfaces: Sequence[Surface], surf: str | None = None, zmax: float | None = None, title: str | None = None,
    reload_seconds: int | None = None,
) -> str:
    """The whole report as one HTML string (plotly.js inlined once; no network at all). With
    `reload_seconds` (`report --watch`) the page reloads itself that often."""
    from plotly.offline import get_plotlyjs

    # a partial file: its finest complete level; a huge grid: every k-th point (said on the page)
    surfaces = [as_drawable(thin(preview(s), REPORT_MAX_AXIS if s.ndim == 2 else REPORT_MAX_CURVE)) for s in surfaces]
    figs = report_figures(surfaces, surf, zmax)
    main = _main_surf(surfaces, surf)
    skipped = "".join(f"<p class='warn'>note: {html.escape(n)}</p>" for n in skipped_views(surfaces, surf, zmax))
    by_section: dict[str, list[str]] = {}
    for sec, fig_id, fig in figs:
        is3d = fig["data"] and fig["data"][0].get("type") == "surface"
        classes = ("ls-3d " if is3d else "") + ("ls-linked" if sec == "compare" and is3d else "")
        if sec != "compare" and fig_id.endswith(("slices", "traintest", "eigratio", "curve", "frames")):
            classes += " wide"
        by_section.setdefault(sec, []).append(_div(fig_id, fig, classes))
    parts = []
    nav = []
    if "compare" in by_section:
        n2d = max(1, sum(1 for s in surfaces if s.ndim == 2))
        problem = comparison_problem(surfaces)
        warn = f"<p class='warn'>note: {html.escape(problem)}</p>" if problem else ""
        parts.append(
            f"<section id='compare'><h2>Side by side: {html.escape(surf_label(main))} on one colour scale</h2>"
            f"<p>{html.escape(_shared_description(surfaces))}Shared colour scale and contour levels; "
            "rotating one 3D view rotates the others.</p>"
            f"{warn}<div class='grid' style='--cols:{min(n2d, 4)}'>{''.join(by_section['compare'])}</div></section>"
        )
        nav.append("<a href='#compare'>side by side</a>")
    for k, s in enumerate(surfaces):
        sec = f"surface-{k}"
        heading = esc(f"{Path(s.path).name}: {surface_title(s)}", 2 * MAX_TEXT)
        note = partial_note(s)
        if note and not preview_note(s):
            note += ": blank areas are not computed yet"
        note = "; ".join(n for n in (note, thinned_note(s) and f"{thinned_note(s)}, to keep this page small; "
                                     "landscape plot draws every point") if n)
        tables = (
            "<div class='tables'><div><h3>metadata</h3>" + _table(_metadata_rows(s), "meta") + "</div>"
            "<div><h3>scalar metrics</h3>" + (_table(_metric_rows(s), "metrics") or "") + "</div></div>"
        )
        parts.append(
            f"<section id='{sec}'><h2>{heading}</h2>"
            + (f"<p class='warn'>{html.escape(note)}</p>" if note else "")
            + f"<div class='grid' style='--cols:2'>{''.join(by_section.get(sec, []))}</div>{tables}</section>"
        )
        nav.append(f"<a href='#{sec}'>{esc(Path(s.path).name)}</a>")
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page_title = printable(title or "Loss landscape report: " + ", ".join(Path(s.path).stem for s in surfaces))
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<link rel='icon' href='data:,'>"
        + (f"<meta http-equiv='refresh' content='{int(reload_seconds)}'>" if reload_seconds else "")
        + f"<title>{html.escape(page_title)}</title><style>{_CSS}</style>\n"
        f"<script type='text/javascript'>{get_plotlyjs()}</script>\n</head>"
        f"<body data-zscale='linear' data-zscale-default='{default_zscale(main)}'><header>"
        f"<h1>{html.escape(page_title)}</h1>"
        f"<p>{len(surfaces)} surface(s), {len(figs)} figures · made by landscape {__version__} on {created}"
        " · works offline</p>"
        "<div class='toolbar'><button id='ls-log-toggle' type='button'>z: linear (switch to log10)</button> "
        f"<nav>{' '.join(nav)}</nav></div>{skipped}</header>\n"
        + "\n".join(parts)
        + f"\n<script type='text/javascript'>{_SCRIPT}</script>\n"
        + f"<script type='application/json' id='ls-report-meta'>{json.dumps({'figures': len(figs)})}</script>"
        + "</body></html>\n"
    )


def write_report(
    surfaces: Sequence[Surface], path: str | Path, surf: str | None = None, zmax: float | None = None,
    on_skip: Callable[[str], None] | None = None, reload_seconds: int | None = None,
) -> Path:
    """Write `report_html(...)` to `path`; return the path. Views left out because their array
    has no finite value are also told to `on_skip`, one line each."""
    surfaces = [preview(s) for s in surfaces]
    for note in skipped_views(surfaces, surf, zmax) if on_skip else ():
        on_skip(note)
    path = Path(path)
    check_output(path, "html")
    return write_html(path, report_html(surfaces, surf, zmax, reload_seconds=reload_seconds))


def write_html(path: Path, text: str) -> Path:
    """Write a report atomically, never over a file of another kind (a surface, a checkpoint)."""
    check_output(path, "html")
    with atomic_write(path, "write report", make_folder=True) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return path
