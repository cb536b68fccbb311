"""The surface value: what `landscape.read_surface` returns and `landscape.surface` computes.

One type for a surface read from a file (ours or the paper's) and one computed in memory. It
only holds values and knows nothing of files or figures: `landscape.read_surface` reads one,
`landscape.plot_surface(s)` draws it and `landscape.write_report([s], path)` writes its report.

Example:
    >>> s = landscape.read_surface("surfaces/resnet20.h5")
    >>> s.shape, s.metrics["center_train_loss"]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .directions import Directions
from .grid import Grid

__all__ = ["SURFACE_FORMAT", "SURFACE_VERSION", "Surface", "base_attrs"]

SURFACE_FORMAT = "landscape-surface"  # the `format` attribute of our surface files
SURFACE_VERSION = 1


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
    # frames through training (landscape.jobs.frames): array name -> [n_frames, *grid], with "computed"
    frames: dict[str, np.ndarray] | None = None

    @property
    def n_frames(self) -> int:
        return 0 if self.frames is None else int(self.frames["computed"].shape[0])

    def frame(self, i: int) -> Surface:
        """Frame `i` as a surface of its own (its arrays and metrics; title names its epoch)."""
        if self.frames is None or not 0 <= i < self.n_frames:
            raise IndexError(f"frame {i} of {self.n_frames}")
        meta = (self.attrs.get("frames") or [{}] * self.n_frames)[i]
        arrays = {k: v[i] for k, v in self.frames.items() if k != "computed"}
        attrs = {**self.attrs, "metrics": meta.get("metrics") or {}, "frame": i, "frame_epoch": meta.get("epoch")}
        return Surface(self.path, self.x, self.y, arrays, self.frames["computed"][i].astype(bool), attrs,
                       None, self.source, self.curve_axis, None, None)

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

    def surfaces(self) -> list[str]:
        return [k for k in self.arrays if k.endswith(("_loss", "_acc")) or k in ("max_eig", "min_eig")]

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

def base_attrs(grid: Grid, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes every surface carries, in a file or in memory: its format and version, the
    grid specs and the settings a resume must match (a file adds `created` and `runs`)."""
    out: dict[str, Any] = {"format": SURFACE_FORMAT, "version": SURFACE_VERSION, "x_spec": grid.x.spec()}
    if grid.y is not None:
        out["y_spec"] = grid.y.spec()
    out["settings"] = dict(settings)
    return out
