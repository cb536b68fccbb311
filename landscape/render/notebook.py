"""`landscape.plot_surface` in a notebook: the drawing, shown as its figure.

`landscape.plot_surface(s)` without `ax` draws on a new pyplot figure, which stays the current
figure (so `plt.savefig(...)` afterwards saves it) and is not closed; with `ax` it draws there
and returns what it drew, as `landscape.render.plotting.plot_surface` does. The result, a `SurfacePlot`, holds
the figure, the axes and what was drawn (attributes such as `levels` are the artist's), and
displays as the figure in Jupyter: as a PNG, unless an inline backend already shows the open
pyplot figure at the end of the cell (then it is not shown twice).

Example:
    >>> p = landscape.plot_surface(surface)   # doctest: +SKIP
    >>> p.figure.savefig("loss.png")       # or plt.savefig("loss.png")
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from . import plotting

if TYPE_CHECKING:
    from ..core.loss_surface import Surface

__all__ = ["SurfacePlot", "plot_surface"]


class SurfacePlot:
    """A figure, its axes and the artist `plot_surface` returned (attributes fall through to it)."""

    def __init__(self, figure: Any, ax: Any, artist: Any, what: str) -> None:
        self.figure, self.ax, self.artist, self.what = figure, ax, artist, what

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # IPython probes _repr_*_ and _ipython_*_ names
            raise AttributeError(name)
        return getattr(self.artist, name)

    def __repr__(self) -> str:
        return f"<SurfacePlot: {self.what}; .figure, .ax, .artist>"

    def _shown_by_backend(self) -> bool:
        import matplotlib
        import matplotlib.pyplot as plt

        managed = getattr(self.figure, "number", None) is not None and plt.fignum_exists(self.figure.number)
        return managed and "inline" in str(matplotlib.get_backend()).lower()

    def _repr_png_(self) -> bytes | None:
        if self._shown_by_backend():
            return None
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()


def plot_surface(surface: Surface, surf: str | None = None, kind: str = "auto", ax: Any = None, **kwargs: Any) -> Any:
    """`landscape.render.plotting.plot_surface` on `ax` (returning what it drew), or, without `ax`,
    on a new current pyplot figure, returning a `SurfacePlot` that Jupyter shows as the figure."""
    if ax is not None:
        return plotting.plot_surface(surface, surf=surf, kind=kind, ax=ax, **kwargs)
    import matplotlib.pyplot as plt

    from .figure_style import SINGLE_FIGSIZE

    projection = "3d" if kind == "surface" else None
    fig = plt.figure(figsize=SINGLE_FIGSIZE)
    new_ax = fig.add_subplot(projection=projection)
    artist = plotting.plot_surface(surface, surf=surf, kind=kind, ax=new_ax, **kwargs)
    drawn = kind if kind != "auto" else type(artist).__name__
    return SurfacePlot(fig, new_ax, artist, f"{drawn} of {surf or 'the first loss'}")
