"""The surface value: what `landscape.read_surface` returns and `landscape.surface` computes.

One type for a surface read from a file (ours or the paper's) and one computed in memory. It
only holds values; files are `landscape.io.storage`'s business, figures `landscape.render.plotting`'s and
`landscape.render.report`'s: `plot` and `to_html` are shortcuts to them, imported when called (those
modules import this one for annotations only, so there is no cycle).

Example:
    >>> s = read_surface("surfaces/resnet20.h5")
    >>> s.shape, s.metrics["center_train_loss"], s.title()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io.schema import SURFACE_FORMAT
from .directions import Directions

__all__ = ["SURFACE_FORMAT", "Surface"]


@dataclass
class Surface:
    """A loss surface: coordinates, arrays, metadata, and the directions it was computed along.

    `arrays[name]` has shape [nx] (1D) or [nx, ny] (2D), value [i, j] at (x[i], y[j]).
    `attrs` holds the metadata (`model`, `model_class`, `dataset`, `loss`, `dir_kind`, ...)
    and `attrs["metrics"]` the scalar metrics (centre loss, basin width, ...).
    """

    path: str
    x: np.ndarray
    y: np.ndarray | None
    arrays: dict[str, np.ndarray]
    computed: np.ndarray  # bool, grid shape
    attrs: dict[str, Any] = field(default_factory=dict)
    trajectory: dict[str, np.ndarray] | None = None
    source: str = SURFACE_FORMAT  # or "paper"
    curve_axis: str = "x"  # the axis a 1D view runs along ("y" for a 1xN grid drawn as a curve)
    directions: Directions | None = None  # when read with them, or computed in memory

    @property
    def ndim(self) -> int:
        return 1 if self.y is None else 2

    @property
    def shape(self) -> tuple[int, ...]:
        return self.computed.shape

    @property
    def done(self) -> int:
        return int(self.computed.sum())

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.attrs.get("metrics") or {})

    def title(self) -> str:
        """Short label from the metadata: model, data, directions."""
        a = self.attrs
        model = a.get("model") or Path(self.path).stem
        data = (a.get("dataset") or {}).get("name") if isinstance(a.get("dataset"), dict) else None
        parts = [str(model)]
        if data:
            parts.append(str(data))
        if a.get("dir_kind"):
            parts.append(f"{a.get('dir_kind')} {a.get('norm', '')}".strip())
        return " · ".join(parts)

    def surfaces(self) -> list[str]:
        return [k for k in self.arrays if k.endswith(("_loss", "_acc")) or k in ("max_eig", "min_eig")]

    def plot(self, surf: str | None = None, kind: str = "auto", ax: Any = None, **kwargs: Any) -> Any:
        """Draw with matplotlib (`landscape.render.plotting.plot_surface`): on `ax`, returning what was
        drawn; without `ax`, on a new current pyplot figure (`plt.savefig` saves it), returning a
        `landscape.render.notebook.SurfacePlot` that Jupyter shows as the figure."""
        from ..render.notebook import plot_in_figure

        return plot_in_figure(self, surf, kind, ax, **kwargs)

    def __repr__(self) -> str:
        """One line: what, where, how much (the arrays are not printed)."""
        grid = "x".join(str(n) for n in self.shape)
        where = f" {self.path}" if self.path else " (in memory)"
        model = self.attrs.get("model") or self.attrs.get("model_class") or "?"
        return (
            f"<Surface{where}: {self.ndim}D {grid} grid, {self.done}/{self.computed.size} points, "
            f"model {model}, arrays {', '.join(self.surfaces()) or 'none'}>"
        )

    def _repr_html_(self) -> str:
        """A small summary table for Jupyter (no arrays, no metadata dump)."""
        import html

        rows = [("file", self.path or "(in memory)"), ("grid", " x ".join(map(str, self.shape))),
                ("computed", f"{self.done} of {self.computed.size} points"),
                ("model", self.attrs.get("model") or self.attrs.get("model_class")),
                ("directions", f"{self.attrs.get('dir_kind', '?')} ({self.attrs.get('norm', '?')})"),
                ("loss", self.attrs.get("loss"))]
        rows += [(k, f"{v:.6g}") for k, v in self.metrics.items() if k.startswith("center_") and isinstance(v, float)]
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in rows if v is not None
        )
        return f"<table><caption>landscape Surface</caption>{body}</table>"

    def to_html(self, path: str | Path | None = None) -> str:
        """Self-contained interactive report (see `landscape.render.report.write_report`)."""
        from ..render.report import report_html

        html = report_html([self])
        if path is not None:
            from ..render.report import write_html

            write_html(Path(path), html)
        return html
