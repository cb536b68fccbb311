"""A self-contained interactive HTML report of one or more surfaces (plotly).

One file that opens offline: plotly.js is inlined once in the page head, and each figure is
a div drawn from its own JSON (no CDN, no MathJax, no other request). Per surface: an
interactive 3D surface, a contour, 1D slices through the centre, train against test when both
exist, the |lambda_min/lambda_max| map when curvature was computed, a metadata table and the
scalar metrics. For several surfaces: a side-by-side view on one colour scale whose 3D cameras
move together. A toolbar button switches every 3D graph between linear and log10 z; a loss
starts on log10 z, coloured over all its values, from the camera and with the colours of the
matplotlib 3D views (`landscape.figure_style`).

Example:
    >>> from landscape.storage import read_surface
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

from ._version import __version__
from .errors import LandscapeError
from .figure_style import camera_eye
from .outputs import atomic_write, check_output
from .preview import preview, preview_note
from .text import printable
from .views import (
    EIG_RATIO_MAX,
    SPLIT_COLORS,
    NothingToDraw,
    as_drawable,
    available_surfs,
    axis_label,
    colour_range,
    comparison_problem,
    contour_levels,
    default_zscale,
    display_cap,
    file_metrics,
    metric_summary,
    partial_note,
    surf_label,
    surface_title,
    surface_values,
)

if TYPE_CHECKING:  # the value type draws itself through these modules: no import at run time
    from .loss_surface import Surface

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
# figure specs (plain plotly JSON dicts: nothing is converted behind our back)


def _num(v: float) -> float | None:
    return float(f"{v:.6g}") if np.isfinite(v) else None


def _grid_list(z: np.ndarray) -> list[list[float | None]]:
    """[nx, ny] array -> plotly's rows-are-y nested list, NaN as null, 6 significant digits."""
    return [[_num(v) for v in row] for row in np.asarray(z, dtype=np.float64).T]


def _list(v: np.ndarray) -> list[float | None]:
    return [_num(x) for x in np.asarray(v, dtype=np.float64).ravel()]


def _title(text: str, note: str | None = None) -> dict[str, Any]:
    full = text + (f"<br><sup>{html.escape(note)}</sup>" if note else "")
    return {"text": full, "font": {"size": 14}}


def _uniform_levels(values: Sequence[np.ndarray]) -> dict[str, float]:
    lv = contour_levels(list(values))
    if len(lv) < 2:
        return {"start": float(lv[0]), "end": float(lv[0]), "size": 1.0}
    return {"start": float(lv[0]), "end": float(lv[-1]), "size": float(lv[1] - lv[0])}


def _clim(values: Sequence[np.ndarray]) -> tuple[float, float]:
    flat = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in values])
    flat = flat[np.isfinite(flat)]
    return float(flat.min()), float(flat.max())


def _scale(values: Sequence[np.ndarray]) -> tuple[dict[str, float], tuple[float, float], tuple[float, float]]:
    """Contour levels, colour range (`views.colour_range`) and data range of arrays on one scale."""
    levels = _uniform_levels(values)
    data = _clim(values)
    if levels["end"] > levels["start"]:
        return levels, colour_range([levels["start"], levels["end"]], list(values)), data
    return levels, data, data


def _computed_part(s: Surface, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y, z without the rows and columns that hold no computed point (a partial surface)."""
    keep_x = np.isfinite(z).any(axis=1)
    keep_y = np.isfinite(z).any(axis=0)
    if not keep_x.any():
        return s.x, s.y, z
    return s.x[keep_x], s.y[keep_y], z[np.ix_(keep_x, keep_y)]


def _short_label(s: Surface, axis: str) -> str:
    """'x: random direction' (the 3D axes have no room for the full label)."""
    return axis_label(s, axis).split(" (")[0]


def _range(v: np.ndarray) -> list[float]:
    return [float(v[0]), float(v[-1])]


def _fig_3d(
    s: Surface, surf: str, z: np.ndarray, clim: tuple[float, float], title: str,
    zrange: tuple[float, float] | None = None,
) -> dict[str, Any]:
    x, y, zc = _computed_part(s, z)
    scene = {
        "xaxis": {"title": {"text": _short_label(s, "x")}, "range": _range(s.x)},
        "yaxis": {"title": {"text": _short_label(s, "y")}, "range": _range(s.y)},
        "zaxis": {"title": {"text": surf_label(surf)}, **({"range": list(zrange)} if zrange else {})},
        "camera": {"eye": camera_eye()},  # the matplotlib 3D view's camera
        "aspectmode": "manual",
        "aspectratio": {"x": 1, "y": 1, "z": 0.7},
    }
    trace = {
        "type": "surface", "name": surf_label(surf), "x": _list(x), "y": _list(y), "z": _grid_list(zc),
        "cmin": clim[0], "cmax": clim[1], "colorscale": "Viridis",
        "reversescale": not (surf.endswith("_loss") or surf == "eig_ratio"),  # matplotlib's viridis_r
        "lighting": {"ambient": 0.55, "diffuse": 0.7, "specular": 0.08, "roughness": 0.9},
        "lightposition": {"x": -1e5, "y": 1e5, "z": 1e5},  # from the upper left, as the figures' light
        "colorbar": {"title": {"text": surf_label(surf)}, "len": 0.7},
        "hovertemplate": "x %{x:.3f}<br>y %{y:.3f}<br>" + surf_label(surf) + " %{z:.4g}<extra></extra>",
    }
    layout = {"title": _title(title, partial_note(s)), "height": 480, "scene": scene,
              "margin": {"l": 0, "r": 0, "t": 50, "b": 0},
              "meta": {"zlabel": surf_label(surf), "zrange": list(zrange) if zrange else None}}
    return {"data": [trace], "layout": layout}


def _contour_trace(s: Surface, z: np.ndarray, levels: dict[str, float], name: str, **extra: Any) -> dict[str, Any]:
    x, y, zc = _computed_part(s, z)
    return {
        "type": "contour", "name": name, "x": _list(x), "y": _list(y), "z": _grid_list(zc),
        "autocontour": False, "contours": {**levels, "showlabels": True, "coloring": "heatmap",
                                           "labelfont": {"size": 10, "color": "white"}},
        "line": {"width": 0.8}, "connectgaps": False,
        "hovertemplate": "x %{x:.3f}<br>y %{y:.3f}<br>" + name + " %{z:.4g}<extra></extra>",
        **extra,
    }


def _trajectory_trace(s: Surface, xaxis: str = "x", yaxis: str = "y") -> list[dict[str, Any]]:
    from .paths_plot import is_multi_run, path_traces

    t = s.trajectory
    if not t or "x" not in t or "y" not in t:
        return []
    if is_multi_run(s):
        return path_traces(s, xaxis, yaxis)
    epochs = np.asarray(t.get("epochs", np.arange(len(t["x"])))).tolist()
    return [{"type": "scatter", "mode": "lines+markers", "name": "training path",
             "x": _list(t["x"]), "y": _list(t["y"]), "text": [f"epoch {e}" for e in epochs],
             "line": {"color": "#d62728"}, "marker": {"size": 5}, "xaxis": xaxis, "yaxis": yaxis}]


def _fig_contour(s: Surface, surf: str, z: np.ndarray, levels: dict[str, float],
                 clim: tuple[float, float], title: str) -> dict[str, Any]:
    trace = _contour_trace(s, z, levels, surf_label(surf), zmin=clim[0], zmax=clim[1], zauto=False,
                           colorscale="Viridis", colorbar={"title": {"text": surf_label(surf)}})
    layout = {"title": _title(title, partial_note(s)), "height": 460,
              "xaxis": {"title": {"text": axis_label(s, "x")}, "range": _range(s.x), "zeroline": False},
              "yaxis": {"title": {"text": axis_label(s, "y")}, "range": _range(s.y), "zeroline": False},
              "margin": {"t": 60}, "showlegend": False}
    paths = _trajectory_trace(s)
    if any(p.get("showlegend") for p in paths):  # several runs: a legend names them
        layout.update(showlegend=True, legend={"orientation": "h", "y": -0.18})
    return {"data": [trace, *paths], "layout": layout}


def _line_traces(x: np.ndarray, values: dict[str, np.ndarray], xaxis: str, yloss: str, yacc: str,
                 suffix: str = "", legend: bool = True) -> list[dict[str, Any]]:
    out = []
    for name, v in values.items():
        acc = name.endswith("_acc")
        out.append({
            "type": "scatter", "mode": "lines+markers", "name": surf_label(name) + suffix,
            "x": _list(x), "y": _list(v), "xaxis": xaxis, "yaxis": yacc if acc else yloss,
            "line": {"color": SPLIT_COLORS.get(name.split("_")[0], "#555"), "dash": "dash" if acc else "solid"},
            "marker": {"size": 3}, "showlegend": legend, "legendgroup": name,
        })
    return out


def _values_or_none(s: Surface, surf: str, zmax: float | None = None) -> np.ndarray | None:
    """`surface_values`, or None for an array with no finite value (its views are skipped)."""
    try:
        return surface_values(s, surf, zmax)
    except NothingToDraw:
        return None


def _curve_values(s: Surface) -> dict[str, np.ndarray]:
    values = {n: _values_or_none(s, n) for n in available_surfs(s) if n.endswith(("_loss", "_acc"))}
    return {n: v for n, v in values.items() if v is not None}


def _fig_slices(s: Surface) -> dict[str, Any]:
    """Slices through the centre along x (left) and y (right); accuracy on the right axes."""
    ix, iy = int(np.argmin(np.abs(s.x))), int(np.argmin(np.abs(s.y)))
    vals = _curve_values(s)
    data = _line_traces(s.x, {n: v[:, iy] for n, v in vals.items()}, "x", "y", "y3")
    data += _line_traces(s.y, {n: v[ix, :] for n, v in vals.items()}, "x2", "y2", "y4", legend=False)
    has_acc = any(n.endswith("_acc") for n in vals)
    layout = {
        "title": _title(f"slices through the centre: along x (y = {s.y[iy]:g}) and along y (x = {s.x[ix]:g})"),
        "height": 400, "margin": {"t": 60},
        "xaxis": {"domain": [0, 0.42], "title": {"text": axis_label(s, "x")}},
        "xaxis2": {"domain": [0.56, 0.98], "title": {"text": axis_label(s, "y")}},
        "yaxis": {"anchor": "x", "title": {"text": "loss"}},
        "yaxis2": {"anchor": "x2", "title": {"text": "loss"}},
        "legend": {"orientation": "h", "y": -0.25},
    }
    if has_acc:
        for axis, over, anchor in (("yaxis3", "y", "x"), ("yaxis4", "y2", "x2")):
            layout[axis] = {"overlaying": over, "side": "right", "anchor": anchor, "range": [0, 100],
                            "tickmode": "auto", "showgrid": False, "title": {"text": "accuracy (%)"}}
    return {"data": data, "layout": layout}


def _fig_curve(s: Surface, title: str) -> dict[str, Any]:
    """A 1D surface: losses and accuracies (right axis) against the step, train with test."""
    vals = _curve_values(s)
    data = _line_traces(s.x, vals, "x", "y", "y2")
    layout = {"title": _title(title, partial_note(s)), "height": 440,
              "xaxis": {"title": {"text": axis_label(s, "x")}},
              "yaxis": {"title": {"text": "loss"}},
              "legend": {"orientation": "h", "y": -0.2}}
    if any(n.endswith("_acc") for n in vals):
        layout["yaxis2"] = {"overlaying": "y", "side": "right", "range": [0, 100], "tickmode": "auto",
                            "showgrid": False, "title": {"text": "accuracy (%)"}}
    return {"data": data, "layout": layout}


def _fig_train_test(s: Surface) -> dict[str, Any]:
    """Train and test loss on one colour scale and levels, and the gap test - train."""
    tr, te = surface_values(s, "train_loss"), surface_values(s, "test_loss")
    levels, clim, _ = _scale([tr, te])
    with np.errstate(invalid="ignore"):  # inf - inf where both diverged: no gap to show
        gap = te - tr
    g = float(np.nanmax(np.abs(gap))) if np.isfinite(gap).any() else 1.0
    data = [
        _contour_trace(s, tr, levels, "train loss", coloraxis="coloraxis"),
        _contour_trace(s, te, levels, "test loss", coloraxis="coloraxis", xaxis="x2", yaxis="y2"),
        {"type": "heatmap", "name": "test - train", "x": _list(s.x), "y": _list(s.y), "z": _grid_list(gap),
         "xaxis": "x3", "yaxis": "y3", "colorscale": "RdBu", "zmin": -g, "zmax": g,
         "colorbar": {"title": {"text": "test − train"}, "x": 1.0, "len": 0.9},
         "hovertemplate": "x %{x:.3f}<br>y %{y:.3f}<br>test − train %{z:.4g}<extra></extra>"},
    ]
    axes = {}
    for k, (lo, hi, name) in enumerate(((0, 0.28, "train loss"), (0.36, 0.64, "test loss"),
                                        (0.72, 0.96, "generalization gap"))):
        sfx = "" if k == 0 else str(k + 1)
        axes[f"xaxis{sfx}"] = {"domain": [lo, hi], "anchor": f"y{sfx}", "title": {"text": name}}
        axes[f"xaxis{sfx}"].update(range=_range(s.x), zeroline=False)
        axes[f"yaxis{sfx}"] = {"anchor": f"x{sfx}", "range": _range(s.y), "zeroline": False}
    layout = {"title": _title("train against test: losses on one scale and their difference"),
              "height": 380, "margin": {"t": 60},
              "coloraxis": {"cmin": clim[0], "cmax": clim[1], "colorscale": "Viridis",
                            "colorbar": {"title": {"text": "loss"}, "x": 0.655, "len": 0.9, "thickness": 12}},
              **axes}
    return {"data": data, "layout": layout}


def _fig_eig_ratio(s: Surface) -> dict[str, Any]:
    r = surface_values(s, "eig_ratio")
    if s.y is None:
        trace = {"type": "scatter", "mode": "lines+markers", "name": "|λmin / λmax|", "x": _list(s.x), "y": _list(r)}
        layout = {"yaxis": {"range": [0, EIG_RATIO_MAX], "title": {"text": "|λmin / λmax|"}},
                  "xaxis": {"title": {"text": axis_label(s, "x")}}}
    else:
        trace = {"type": "heatmap", "name": "|λmin / λmax|", "x": _list(s.x), "y": _list(s.y), "z": _grid_list(r),
                 "zmin": 0.0, "zmax": EIG_RATIO_MAX, "colorscale": "Viridis",
                 "colorbar": {"title": {"text": "|λmin/λmax|"}},
                 "hovertemplate": "x %{x:.3f}<br>y %{y:.3f}<br>|λmin/λmax| %{z:.3g}<extra></extra>"}
        layout = {"xaxis": {"title": {"text": axis_label(s, "x")}}, "yaxis": {"title": {"text": axis_label(s, "y")}}}
    layout.update({"title": _title("curvature: |λmin / λmax| (paper's 0 to 0.5 scale; near 0: the convexity is real)"),
                   "height": 440})
    return {"data": [trace], "layout": layout}


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
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td>"
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
            _values_or_none(s, surf)  # one-line error naming what exists
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
    values = [_values_or_none(s, surf, zmax) for s in surfaces]
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
        levels, clim, data = _scale(shared)
        cap, data = display_cap(clim, data, zmax) if default_zscale(surf) == "linear" else (None, data)
        for k in two_d:
            s = surfaces[k]
            title = _short(s, surf, f"z clipped at {cap:.3g}" if cap is not None else "")
            z3 = values[k] if cap is None else np.minimum(values[k], cap)
            figs.append(("compare", f"cmp{k}-3d", _fig_3d(s, surf, z3, _clim3(surf, clim, data), title, data)))
        for k in two_d:
            s = surfaces[k]
            figs.append(("compare", f"cmp{k}-contour",
                         _fig_contour(s, surf, values[k], levels, clim, _short(s, surf))))
    if len(one_d) > 1:
        data = []
        for k in one_d:
            data.append({"type": "scatter", "mode": "lines+markers", "name": _short(surfaces[k], surf),
                         "x": _list(surfaces[k].x), "y": _list(values[k])})
        figs.append(("compare", "cmp-curves", {"data": data, "layout": {
            "title": _title(f"{surf_label(surf)} of each 1D file"), "height": 420,
            "xaxis": {"title": {"text": axis_label(surfaces[one_d[0]], surfaces[one_d[0]].curve_axis)}},
            "yaxis": {"title": {"text": surf_label(surf)}}}}))
    return figs


def _surface_figures(
    k: int, s: Surface, surf: str, own: np.ndarray | None, zmax: float | None
) -> list[tuple[str, str, dict[str, Any]]]:
    """One surface's section; views of an array with no finite value are left out."""
    sec = f"surface-{k}"
    figs: list[tuple[str, str, dict[str, Any]]] = []
    if own is not None and s.ndim == 1:
        figs.append((sec, f"s{k}-curve", _fig_curve(s, surface_title(s))))
    elif own is not None:
        levels, clim, data = _scale([own])
        cap, _ = display_cap(clim, data, zmax) if default_zscale(surf) == "linear" else (None, data)
        title = surface_title(s, surf) + (f" (z clipped at {cap:.3g})" if cap is not None else "")
        z3 = own if cap is None else np.minimum(own, cap)
        figs.append((sec, f"s{k}-3d", _fig_3d(s, surf, z3, _clim3(surf, clim, data), title)))
        figs.append((sec, f"s{k}-contour", _fig_contour(s, surf, own, levels, clim, surface_title(s, surf))))
        figs.append((sec, f"s{k}-slices", _fig_slices(s)))
        if s.n_frames:  # frames through training: animated, one scale for all (frames_plot)
            from .frames_plot import frames_figure

            figs.append((sec, f"s{k}-frames", frames_figure(s, surf, zmax)))
        names = available_surfs(s)
        both = all(_values_or_none(s, n) is not None for n in ("train_loss", "test_loss") if n in names)
        if "train_loss" in names and "test_loss" in names and both:
            figs.append((sec, f"s{k}-traintest", _fig_train_test(s)))
    if "eig_ratio" in available_surfs(s) and _values_or_none(s, "eig_ratio") is not None:
        figs.append((sec, f"s{k}-eigratio", _fig_eig_ratio(s)))
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
    name = printable(str(s.attrs.get("model") or Path(s.path).stem))
    stem = Path(s.path).stem
    head = html.escape(name if stem == name else f"{name} ({stem})")
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
    """A file of `landscape/report_assets` (package data: the page's CSS and script)."""
    from importlib.resources import files

    return files("landscape").joinpath("report_assets", name).read_text(encoding="utf-8")


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

    surfaces = [as_drawable(preview(s)) for s in surfaces]  # a partial file: its finest complete level
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
        heading = html.escape(f"{Path(s.path).name}: {surface_title(s)}")
        note = partial_note(s)
        tables = (
            "<div class='tables'><div><h3>metadata</h3>" + _table(_metadata_rows(s), "meta") + "</div>"
            "<div><h3>scalar metrics</h3>" + (_table(_metric_rows(s), "metrics") or "") + "</div></div>"
        )
        parts.append(
            f"<section id='{sec}'><h2>{heading}</h2>"
            + (f"<p class='warn'>{html.escape(note)}{'' if preview_note(s) else ': blank areas are not computed yet'}</p>"
               if note else "")
            + f"<div class='grid' style='--cols:2'>{''.join(by_section.get(sec, []))}</div>{tables}</section>"
        )
        nav.append(f"<a href='#{sec}'>{html.escape(Path(s.path).name)}</a>")
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page_title = title or "Loss landscape report: " + ", ".join(Path(s.path).stem for s in surfaces)
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
