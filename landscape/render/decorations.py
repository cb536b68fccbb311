"""What goes on an axes around the data: a new axes, titles, axis labels, notes and colour bars.

Every text is `FONT_PT` points and wrapped to the axes it belongs to
(`landscape.render.figure_style`); titles and axis labels say what the file holds
(`landscape.render.labels`), a partial surface's note on a line of its own. The plot functions
(`landscape.render.plotting`), the comparison and the frames draw their axes' text with these.

Example:
    >>> ax = new_axes()
    >>> note = axes_note(ax, "nothing to draw")  # a Text in the middle of the axes
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .figure_style import FONT_PT, SINGLE_FIGSIZE, tick_text, tidy_ticks, wrap_text
from .labels import axis_label, partial_note, surface_title

if TYPE_CHECKING:  # annotations only
    from ..core.loss_surface import Surface

__all__ = ["new_axes", "axes_width", "set_surface_title", "decorate_axes", "axes_note", "add_colorbar"]


def new_axes(projection: str | None = None, figsize: tuple[float, float] = SINGLE_FIGSIZE) -> Any:
    """An axes on a new figure (`projection='3d'` for a 3D one), for a plot called without `ax`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig.add_subplot(projection=projection)


def axes_width(ax: Any) -> float:
    """The axes' width in inches (before layout: its subplot box)."""
    return float(ax.get_position().width * ax.figure.get_figwidth())


def set_surface_title(ax: Any, surface: Surface, text: str) -> None:
    """`text` as the axes title, wrapped to the figure; a partial surface's note on its own line."""
    note = partial_note(surface)
    width = max(axes_width(ax), 0.8 * ax.figure.get_figwidth())
    ax.set_title(wrap_text(text + (f"\n{note}" if note else ""), width), fontsize=FONT_PT)


def decorate_axes(ax: Any, surface: Surface, surf: str, title: bool = True, note: str | None = None) -> None:
    """Axis labels from the file's directions, rounded ticks, and (with `title`) the view's title
    with `note` under it."""
    width = axes_width(ax)
    ax.set_xlabel(wrap_text(axis_label(surface, "x"), width), fontsize=FONT_PT)
    if surface.y is not None:
        ax.set_ylabel(wrap_text(axis_label(surface, "y"), ax.get_position().height * ax.figure.get_figheight()),
                      fontsize=FONT_PT)
    tidy_ticks(ax)
    if title:
        set_surface_title(ax, surface, surface_title(surface, surf) + (f"\n{note}" if note else ""))


def axes_note(ax: Any, text: str) -> Any:
    """A note in the middle of an axes (a view with nothing to draw says why)."""
    return ax.text(0.5, 0.5, wrap_text(text, axes_width(ax) * 0.9), transform=ax.transAxes,
                   ha="center", va="center", fontsize=FONT_PT, color="0.3")


def add_colorbar(fig: Any, mappable: Any, ax: Any, label: str = "", log10_ticks: bool = False, **kwargs: Any) -> Any:
    """A colour bar with few rounded ticks at `FONT_PT`; `log10_ticks`: the bar is in log10 units
    and its ticks are labelled with the values (0.01, 0.1, 1, 10), as the 3D log z axis."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    cb = fig.colorbar(mappable, ax=ax, **kwargs)
    if cb.orientation == "vertical" and cb.ax.get_yscale() == "linear":
        cb.locator = MaxNLocator(nbins=5, integer=log10_ticks and _decades(cb) >= 2)
        cb.formatter = FuncFormatter((lambda v, _p: tick_text(10.0**v)) if log10_ticks else tick_text)
        cb.update_ticks()
    cb.ax.tick_params(labelsize=FONT_PT)
    if label:
        cb.set_label(label, fontsize=FONT_PT)
    return cb


def _decades(cb: Any) -> float:
    return float(cb.norm.vmax - cb.norm.vmin) if cb.norm.vmax is not None and cb.norm.vmin is not None else 0.0
