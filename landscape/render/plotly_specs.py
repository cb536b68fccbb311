"""The report's figures as plain plotly JSON dicts (`landscape.render.report` lays them out on a page).

Nothing is converted behind our back: each function returns the dict plotly.js draws. Values are
rounded to 6 significant digits, NaN becomes null, and every string taken from a file goes
through `esc` (plotly renders <a>, <b> and <span style> markup in titles, names and axis
labels; a file's text is shown as text, its control and bidi characters made visible).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..system.text import printable
from .figure_style import camera_eye
from .labels import axis_label, partial_note, surf_label
from .views import (
    EIG_RATIO_MAX,
    SPLIT_COLORS,
    NothingToDraw,
    available_surfs,
    colour_range,
    contour_levels,
    surface_values,
)

if TYPE_CHECKING:
    from ..core.loss_surface import Surface
    from ..core.spectrum import SpectralDensity

__all__ = [
    "REPORT_MAX_AXIS", "REPORT_MAX_CURVE", "MAX_TEXT", "esc", "as_list", "title_spec", "shared_scale",
    "axis_title", "values_or_none", "fig_3d", "fig_contour", "fig_slices", "fig_curve", "fig_train_test",
    "fig_eig_ratio", "fig_density", "curve_node_traces", "minima_traces",
]

# A report draws at most this many points per axis (2D; 1D: curves), and this many characters of
# any text taken from a file: a 96 kB file of a huge compressed grid made a 185 MB page.
REPORT_MAX_AXIS = 201
REPORT_MAX_CURVE = 4001
MAX_TEXT = 300


def esc(text: str, limit: int = MAX_TEXT) -> str:
    """Text from a file, as plotly and HTML show it: control and bidi characters made visible
    (`printable`), markup escaped (plotly renders <a>, <b>, <span style> in titles and names),
    cut to `limit` characters."""
    text = printable(str(text))
    if len(text) > limit:
        text = f"{text[:limit]}… ({len(text) - limit} more characters)"
    return html.escape(text, quote=False)


def _num(v: float) -> float | None:
    return float(f"{v:.6g}") if np.isfinite(v) else None


def _grid_list(z: np.ndarray) -> list[list[float | None]]:
    """[nx, ny] array -> plotly's rows-are-y nested list, NaN as null, 6 significant digits."""
    return [[_num(v) for v in row] for row in np.asarray(z, dtype=np.float64).T]


def as_list(v: np.ndarray) -> list[float | None]:
    return [_num(x) for x in np.asarray(v, dtype=np.float64).ravel()]


def title_spec(text: str, note: str | None = None) -> dict[str, Any]:
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


def shared_scale(values: Sequence[np.ndarray]) -> tuple[dict[str, float], tuple[float, float], tuple[float, float]]:
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
    return esc(axis_label(s, axis).split(" (")[0])


def axis_title(s: Surface, axis: str) -> str:
    return esc(axis_label(s, axis))


def _range(v: np.ndarray) -> list[float]:
    return [float(v[0]), float(v[-1])]


def fig_3d(
    s: Surface, surf: str, z: np.ndarray, clim: tuple[float, float], title: str,
    zrange: tuple[float, float] | None = None,
) -> dict[str, Any]:
    x, y, zc = _computed_part(s, z)
    label = esc(surf_label(surf))
    scene = {
        "xaxis": {"title": {"text": _short_label(s, "x")}, "range": _range(s.x)},
        "yaxis": {"title": {"text": _short_label(s, "y")}, "range": _range(s.y)},
        "zaxis": {"title": {"text": label}, **({"range": list(zrange)} if zrange else {})},
        "camera": {"eye": camera_eye()},  # the matplotlib 3D view's camera
        "aspectmode": "manual",
        "aspectratio": {"x": 1, "y": 1, "z": 0.7},
    }
    trace = {
        "type": "surface", "name": label, "x": as_list(x), "y": as_list(y), "z": _grid_list(zc),
        "cmin": clim[0], "cmax": clim[1], "colorscale": "Viridis",
        "reversescale": not (surf.endswith("_loss") or surf == "eig_ratio"),  # matplotlib's viridis_r
        "lighting": {"ambient": 0.55, "diffuse": 0.7, "specular": 0.08, "roughness": 0.9},
        "lightposition": {"x": -1e5, "y": 1e5, "z": 1e5},  # from the upper left, as the figures' light
        "colorbar": {"title": {"text": label}, "len": 0.7},
        "hovertemplate": "x %{x:.3f}<br>y %{y:.3f}<br>" + label + " %{z:.4g}<extra></extra>",
    }
    layout = {"title": title_spec(title, partial_note(s)), "height": 480, "scene": scene,
              "margin": {"l": 0, "r": 0, "t": 50, "b": 0},
              "meta": {"zlabel": label, "zrange": list(zrange) if zrange else None}}
    return {"data": [trace], "layout": layout}


def _contour_trace(s: Surface, z: np.ndarray, levels: dict[str, float], name: str, **extra: Any) -> dict[str, Any]:
    x, y, zc = _computed_part(s, z)
    return {
        "type": "contour", "name": name, "x": as_list(x), "y": as_list(y), "z": _grid_list(zc),
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
    if is_multi_run(s):  # several runs on one plane: one trace each, named after the run (from the file)
        paths = path_traces(s, xaxis, yaxis)
        for p in paths:
            p["name"], p["text"] = esc(p["name"]), [esc(t) for t in p["text"]]
        return paths
    epochs = np.asarray(t.get("epochs", np.arange(len(t["x"])))).tolist()
    return [{"type": "scatter", "mode": "lines+markers", "name": "training path",
             "x": as_list(t["x"]), "y": as_list(t["y"]), "text": [f"epoch {e}" for e in epochs],
             "line": {"color": "#d62728"}, "marker": {"size": 5}, "xaxis": xaxis, "yaxis": yaxis}]


def fig_contour(s: Surface, surf: str, z: np.ndarray, levels: dict[str, float],
                 clim: tuple[float, float], title: str) -> dict[str, Any]:
    label = esc(surf_label(surf))
    trace = _contour_trace(s, z, levels, label, zmin=clim[0], zmax=clim[1], zauto=False,
                           colorscale="Viridis", colorbar={"title": {"text": label}})
    layout = {"title": title_spec(title, partial_note(s)), "height": 460,
              "xaxis": {"title": {"text": axis_title(s, "x")}, "range": _range(s.x), "zeroline": False},
              "yaxis": {"title": {"text": axis_title(s, "y")}, "range": _range(s.y), "zeroline": False},
              "margin": {"t": 60}, "showlegend": False}
    paths = _trajectory_trace(s) + curve_node_traces(s) + minima_traces(s, surf, z)
    if any(p.get("showlegend") for p in paths):  # several runs, or a curve's nodes: a legend names them
        layout.update(showlegend=True, legend={"orientation": "h", "y": -0.18})
    return {"data": [trace, *paths], "layout": layout}


def _line_traces(x: np.ndarray, values: dict[str, np.ndarray], xaxis: str, yloss: str, yacc: str,
                 suffix: str = "", legend: bool = True) -> list[dict[str, Any]]:
    out = []
    for name, v in values.items():
        acc = name.endswith("_acc")
        out.append({
            "type": "scatter", "mode": "lines+markers", "name": esc(surf_label(name)) + suffix,
            "x": as_list(x), "y": as_list(v), "xaxis": xaxis, "yaxis": yacc if acc else yloss,
            "line": {"color": SPLIT_COLORS.get(name.split("_")[0], "#555"), "dash": "dash" if acc else "solid"},
            "marker": {"size": 3}, "showlegend": legend, "legendgroup": esc(name),
        })
    return out


def values_or_none(s: Surface, surf: str, zmax: float | None = None) -> np.ndarray | None:
    """`surface_values`, or None for an array with no finite value (its views are skipped)."""
    try:
        return surface_values(s, surf, zmax)
    except NothingToDraw:
        return None


def _curve_values(s: Surface) -> dict[str, np.ndarray]:
    values = {n: values_or_none(s, n) for n in available_surfs(s) if n.endswith(("_loss", "_acc"))}
    return {n: v for n, v in values.items() if v is not None}


def fig_slices(s: Surface) -> dict[str, Any]:
    """Slices through the centre along x (left) and y (right); accuracy on the right axes."""
    ix, iy = int(np.argmin(np.abs(s.x))), int(np.argmin(np.abs(s.y)))
    vals = _curve_values(s)
    data = _line_traces(s.x, {n: v[:, iy] for n, v in vals.items()}, "x", "y", "y3")
    data += _line_traces(s.y, {n: v[ix, :] for n, v in vals.items()}, "x2", "y2", "y4", legend=False)
    has_acc = any(n.endswith("_acc") for n in vals)
    layout = {
        "title": title_spec(f"slices through the centre: along x (y = {s.y[iy]:g}) and along y (x = {s.x[ix]:g})"),
        "height": 400, "margin": {"t": 60},
        "xaxis": {"domain": [0, 0.42], "title": {"text": axis_title(s, "x")}},
        "xaxis2": {"domain": [0.56, 0.98], "title": {"text": axis_title(s, "y")}},
        "yaxis": {"anchor": "x", "title": {"text": "loss"}},
        "yaxis2": {"anchor": "x2", "title": {"text": "loss"}},
        "legend": {"orientation": "h", "y": -0.25},
    }
    if has_acc:
        for axis, over, anchor in (("yaxis3", "y", "x"), ("yaxis4", "y2", "x2")):
            layout[axis] = {"overlaying": over, "side": "right", "anchor": anchor, "range": [0, 100],
                            "tickmode": "auto", "showgrid": False, "title": {"text": "accuracy (%)"}}
    return {"data": data, "layout": layout}


def fig_curve(s: Surface, title: str) -> dict[str, Any]:
    """A 1D surface: losses and accuracies (right axis) against the step, train with test."""
    vals = _curve_values(s)
    data = _line_traces(s.x, vals, "x", "y", "y2")
    layout = {"title": title_spec(title, partial_note(s)), "height": 440,
              "xaxis": {"title": {"text": axis_title(s, "x")}},
              "yaxis": {"title": {"text": "loss"}},
              "legend": {"orientation": "h", "y": -0.2}}
    if any(n.endswith("_acc") for n in vals):
        layout["yaxis2"] = {"overlaying": "y", "side": "right", "range": [0, 100], "tickmode": "auto",
                            "showgrid": False, "title": {"text": "accuracy (%)"}}
    return {"data": data, "layout": layout}


def fig_train_test(s: Surface) -> dict[str, Any]:
    """Train and test loss on one colour scale and levels, and the gap test - train."""
    tr, te = surface_values(s, "train_loss"), surface_values(s, "test_loss")
    levels, clim, _ = shared_scale([tr, te])
    with np.errstate(invalid="ignore"):  # inf - inf where both diverged: no gap to show
        gap = te - tr
    g = float(np.nanmax(np.abs(gap))) if np.isfinite(gap).any() else 1.0
    data = [
        _contour_trace(s, tr, levels, "train loss", coloraxis="coloraxis"),
        _contour_trace(s, te, levels, "test loss", coloraxis="coloraxis", xaxis="x2", yaxis="y2"),
        {"type": "heatmap", "name": "test - train", "x": as_list(s.x), "y": as_list(s.y), "z": _grid_list(gap),
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
    layout = {"title": title_spec("train against test: losses on one scale and their difference"),
              "height": 380, "margin": {"t": 60},
              "coloraxis": {"cmin": clim[0], "cmax": clim[1], "colorscale": "Viridis",
                            "colorbar": {"title": {"text": "loss"}, "x": 0.655, "len": 0.9, "thickness": 12}},
              **axes}
    return {"data": data, "layout": layout}


def fig_eig_ratio(s: Surface) -> dict[str, Any]:
    r = surface_values(s, "eig_ratio")
    if s.y is None:
        trace = {"type": "scatter", "mode": "lines+markers", "name": "|λmin / λmax|", "x": as_list(s.x), "y": as_list(r)}
        layout = {"yaxis": {"range": [0, EIG_RATIO_MAX], "title": {"text": "|λmin / λmax|"}},
                  "xaxis": {"title": {"text": axis_title(s, "x")}}}
    else:
        trace = {"type": "heatmap", "name": "|λmin / λmax|", "x": as_list(s.x), "y": as_list(s.y), "z": _grid_list(r),
                 "zmin": 0.0, "zmax": EIG_RATIO_MAX, "colorscale": "Viridis",
                 "colorbar": {"title": {"text": "|λmin/λmax|"}},
                 "hovertemplate": "x %{x:.3f}<br>y %{y:.3f}<br>|λmin/λmax| %{z:.3g}<extra></extra>"}
        layout = {"xaxis": {"title": {"text": axis_title(s, "x")}}, "yaxis": {"title": {"text": axis_title(s, "y")}}}
    layout.update({"title": title_spec("curvature: |λmin / λmax| (paper's 0 to 0.5 scale; near 0: the convexity is real)"),
                   "height": 440})
    return {"data": [trace], "layout": layout}


def fig_density(density: SpectralDensity, floor: float) -> dict[str, Any]:
    """The Hessian's eigenvalue density on a log axis (values under `floor` drawn at it), with
    the extreme nodes marked, as `landscape.render.density_plot` draws it."""
    lo, hi = density.support
    y = np.maximum(density.density, floor)
    marks = [{"type": "line", "x0": v, "x1": v, "yref": "paper", "y0": 0, "y1": 1,
              "line": {"dash": "dot", "color": "#888", "width": 1}} for v in (lo, hi)]
    title = (f"Hessian eigenvalue density: {density.probes} probes x {density.steps} Lanczos steps, "
             f"sigma = {density.sigma:.2g}")
    return {"data": [{"type": "scatter", "mode": "lines", "name": "density", "x": as_list(density.grid),
                      "y": as_list(y), "line": {"color": "#1f77b4"}}],
            "layout": {"title": title_spec(title, f"extreme nodes {lo:.4g} .. {hi:.4g}"), "height": 380,
                       "xaxis": {"title": {"text": "eigenvalue"}},
                       "yaxis": {"title": {"text": "density (log scale)"}, "type": "log"},
                       "shapes": marks, "margin": {"t": 60}, "showlegend": False}}


def curve_node_traces(s: Surface) -> list[dict[str, Any]]:
    """On the plane of a mode-connecting curve (`surface --curve` with --y): the curve, the line
    and the ends and bend(s), as the matplotlib figure marks them; [] for any other surface."""
    from .curve_plot import bezier_path, is_curve_surface

    info = s.attrs.get("curve") or {}
    nodes = info.get("nodes") if is_curve_surface(s) and s.ndim == 2 else None
    if not isinstance(nodes, list) or len(nodes) < 3:
        return []
    pts = np.asarray(nodes, dtype=float)
    path = bezier_path(nodes) if info.get("kind") == "bezier" else pts
    line = {"type": "scatter", "mode": "lines", "showlegend": True}
    return [
        {**line, "name": "curve", "x": as_list(path[:, 0]), "y": as_list(path[:, 1]), "line": {"color": "#d62728"}},
        {**line, "name": "line", "x": as_list(pts[[0, -1], 0]), "y": as_list(pts[[0, -1], 1]),
         "line": {"color": "#444", "dash": "dash"}},
        {"type": "scatter", "mode": "markers", "name": "ends and bend", "showlegend": True,
         "x": as_list(pts[:, 0]), "y": as_list(pts[:, 1]), "marker": {"size": 9, "color": "#000"}},
    ]


def minima_traces(s: Surface, surf: str, z: np.ndarray) -> list[dict[str, Any]]:
    """The local minima of a 2D loss (`landscape.core.topology`), as `plot --minima` marks them: a
    star for the deepest, triangles for the rest, each with its depth on hover; [] otherwise."""
    from ..core.topology import sublevel_topology

    if s.y is None or not surf.endswith("_loss"):
        return []
    t = sublevel_topology(np.asarray(z, dtype=np.float64))
    x, y = np.asarray(s.x, dtype=np.float64), np.asarray(s.y, dtype=np.float64)
    out = []
    for name, basins, marker in (("deepest minimum", [b for b in t.basins if b.death is None], "star"),
                                 ("local minima", [b for b in t.basins if b.death is not None], "triangle-down")):
        if basins:
            out.append({"type": "scatter", "mode": "markers", "name": f"{name} ({len(basins)})", "showlegend": True,
                        "x": as_list(x[[b.index[0] for b in basins]]), "y": as_list(y[[b.index[1] for b in basins]]),
                        "text": [f"depth {b.depth:.3g}" if b.death is not None else "never merges" for b in basins],
                        "marker": {"symbol": marker, "size": 11 if marker == "star" else 8,
                                   "color": "#d62728" if marker == "star" else "#ff7f0e",
                                   "line": {"color": "#fff", "width": 0.6}}})
    return out
