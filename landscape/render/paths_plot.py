"""Several training paths on one PCA plane: matplotlib lines and plotly traces, with a legend.

A surface made with `landscape surface --pca RUN_A... --pca RUN_B...` stores every snapshot's
projected coordinates in `trajectory/x`, `trajectory/y` and its run number in `trajectory/run`;
the run names and the share of each run's variance the shared plane captures are in the
directions' metadata (`runs`, `run_explained_variance_ratio`). `plotting.plot_trajectory` and the
report hand such a file to the functions here; a one-run file keeps its single red path.

Example:
    >>> lines = plot_paths(read_surface("surfaces/sgd_vs_adam.h5"), ax)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .figure_style import FONT_PT

if TYPE_CHECKING:
    from ..core.loss_surface import Surface

__all__ = ["PATH_COLOURS", "is_multi_run", "run_paths", "plot_paths", "path_traces"]

# matplotlib's tab10 without the viridis-like greens and its red (the single path's colour)
PATH_COLOURS = ("#d62728", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf")


def is_multi_run(surface: Surface) -> bool:
    """Whether the surface stores the paths of several runs."""
    t = surface.trajectory
    return bool(t) and "run" in t and "x" in t and "y" in t


def run_paths(surface: Surface) -> list[dict[str, Any]]:
    """One dict per run: name, x, y, epochs (numpy arrays), and its variance shares (or None)."""
    t = surface.trajectory or {}
    meta = surface.attrs.get("directions") if isinstance(surface.attrs.get("directions"), dict) else {}
    run = np.asarray(t["run"]).astype(int)
    names = list(meta.get("runs") or [])
    shares = list(meta.get("run_explained_variance_ratio") or [])
    epochs = np.asarray(t.get("epochs", np.arange(len(run))))
    out = []
    for r in range(int(run.max()) + 1 if len(run) else 0):
        sel = run == r
        out.append({
            "name": str(names[r]) if r < len(names) else f"run {r + 1}",
            "x": np.asarray(t["x"])[sel], "y": np.asarray(t["y"])[sel], "epochs": epochs[sel],
            "share": shares[r] if r < len(shares) else None,
        })
    return out


def _label(path: dict[str, Any]) -> str:
    share = path["share"]
    if share and len(share) >= 2:
        return f"{path['name']}: {100 * (share[0] + share[1]):.0f}% of its variance in the plane"
    return str(path["name"])


def plot_paths(surface: Surface, ax: Any) -> list[Any]:
    """Every run's projected path, one colour each, start and end epochs marked, a legend;
    returns the lines (one per run)."""
    lines = []
    for k, p in enumerate(run_paths(surface)):
        colour = PATH_COLOURS[k % len(PATH_COLOURS)]
        (line,) = ax.plot(p["x"], p["y"], "-o", color=colour, ms=3, lw=1.2, label=_label(p))
        lines.append(line)
        for i in {0, len(p["x"]) - 1}:
            ax.annotate(f"{p['epochs'][i]}", (p["x"][i], p["y"][i]), fontsize=FONT_PT, color=colour,
                        xytext=(3, 3), textcoords="offset points")
    if lines:
        # below the axes: a path may cross any corner of the plane
        ax.legend(handles=lines, fontsize=FONT_PT, loc="upper center", bbox_to_anchor=(0.5, -0.28),
                  title="paths (epoch numbers at their ends)", title_fontsize=FONT_PT, frameon=False)
    return lines


def path_traces(surface: Surface, xaxis: str = "x", yaxis: str = "y") -> list[dict[str, Any]]:
    """The same paths as plotly scatter traces (legend entries named after the runs)."""
    traces = []
    for k, p in enumerate(run_paths(surface)):
        traces.append({
            "type": "scatter", "mode": "lines+markers", "name": _label(p), "showlegend": True,
            "x": [float(v) for v in p["x"]], "y": [float(v) for v in p["y"]],
            "text": [f"{p['name']} epoch {e}" for e in p["epochs"].tolist()],
            "line": {"color": PATH_COLOURS[k % len(PATH_COLOURS)]}, "marker": {"size": 5},
            "xaxis": xaxis, "yaxis": yaxis,
        })
    return traces
