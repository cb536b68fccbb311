"""The words on a figure, from the file's metadata: array names, axis labels, titles, captions.

`surf_label` names an array ('train loss', '|λmin / λmax|'), `axis_label` says what a step along
x or y is (a filter-normalized random direction, a PCA component with its share of variance, an
interpolation), `surface_title` names the net, data and directions, `partial_note` marks a
surface still being computed or a preview of one, and `metric_summary` is the caption of scalar
metrics. The matplotlib figures and the HTML report use the same words. Text from the file is
made printable (`landscape.system.text.printable`) before it is shown.

Example:
    >>> surface_title(read_surface("surfaces/resnet20.h5"), "train_loss")  # doctest: +SKIP
    'resnet20 on cifar10 · random directions, filter-normalized · train loss'
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.preview import preview_note
from ..system.text import printable

if TYPE_CHECKING:  # annotations only
    from ..core.loss_surface import Surface

__all__ = [
    "SURF_LABELS",
    "surf_label",
    "axis_label",
    "surface_title",
    "partial_note",
    "file_metrics",
    "metric_summary",
    "smooth_note",
]

SURF_LABELS = {
    "train_loss": "train loss",
    "test_loss": "test loss",
    "train_acc": "train accuracy (%)",
    "test_acc": "test accuracy (%)",
    "eig_ratio": "|λmin / λmax|",
    "max_eig": "largest Hessian eigenvalue",
    "min_eig": "smallest Hessian eigenvalue",
}
_NORM_WORDS = {
    "filter": "filter-normalized",
    "layer": "layer-normalized",
    "weight": "weight-scaled",
    "none": "not normalized",
}


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
    return head if surf is None else f"{head} · {SURF_LABELS.get(surf, surf)}"


def partial_note(surface: Surface) -> str | None:
    """'partial: 120 of 315 points computed' for a surface still being computed, 'preview: 13x13
    of 51x51, every 4th point; 700/2601 computed' for a preview of one (`landscape.core.preview`),
    else None."""
    if surface.done == surface.computed.size:
        return preview_note(surface)
    return f"partial: {surface.done} of {surface.computed.size} points computed"


def surf_label(surf: str) -> str:
    """'train loss', 'test accuracy (%)', '|λmin / λmax|', ... for an array name."""
    return SURF_LABELS.get(surf, surf)


def file_metrics(surface: Surface) -> dict[str, Any]:
    """The scalar metrics the file stores, else computed now (`landscape.core.metrics`); {} on failure."""
    m = surface.metrics
    if not m:
        from ..core.metrics import surface_metrics

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


def smooth_note(factor: int) -> str | None:
    """The caption of contours drawn on an interpolated grid (None when drawn on the stored one)."""
    return f"contours drawn on a grid interpolated {factor}x finer (stored values unchanged)" if factor > 1 else None
