"""The surface value: what `landscape.read_surface` returns and `landscape.surface` computes.

One type for a surface read from a file (ours or the paper's) and one computed in memory. It
only holds values; files are `landscape.storage`'s business, figures `landscape.plotting`'s and
`landscape.report`'s: `plot` and `to_html` are shortcuts to them, imported when called (those
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

from .directions import Directions
from .schema import SURFACE_FORMAT

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
    # frames through training (landscape.frames): array name -> [n_frames, *grid], with "computed"
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
        """Draw with matplotlib (see `landscape.plotting.plot_surface`)."""
        from .plotting import plot_surface

        return plot_surface(self, surf=surf, kind=kind, ax=ax, **kwargs)

    def to_html(self, path: str | Path | None = None) -> str:
        """Self-contained interactive report (see `landscape.report.write_report`)."""
        from .report import report_html

        html = report_html([self])
        if path is not None:
            from .report import write_html

            write_html(Path(path), html)
        return html
