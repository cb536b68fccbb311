"""Publication defaults of the matplotlib figures: text sizes, ticks, camera, light, vector text.

Sizes are chosen for the size a figure is shown at, not for the screen it is made on: every
text is `FONT_PT` points, and the README's figures are written at `README_DPI`, where one point
is 66/72 pixel, so no text is under `MIN_FONT_PX` (9) pixels when the README shows a single view
264 px wide (three side by side) and the comparison 800 px wide. Ticks are few and rounded
(`tidy_ticks`), so their labels do not overlap at any grid size or panel count; long titles and
labels are wrapped to the axes they belong to (`wrap_text`). The 3D views share one camera
(`CAMERA_ELEV`, `CAMERA_AZIM`; the HTML report's camera is computed from the same angles) and
are lit by one light (`shade_faces`), so walls read as walls. PDF and SVG files keep their text
as text (`vector_rc`, applied per figure while it is saved, never globally).

Example:
    >>> from matplotlib.figure import Figure
    >>> ax = Figure(figsize=SINGLE_FIGSIZE).add_subplot()
    >>> tidy_ticks(ax)  # at most 5 rounded ticks per axis, labels without trailing zeros
"""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np

__all__ = [
    "FONT_PT",
    "MIN_FONT_PX",
    "README_DPI",
    "SINGLE_FIGSIZE",
    "PANEL_WIDTH",
    "PAD_INCHES",
    "CAMERA_ELEV",
    "CAMERA_AZIM",
    "CLIPPED_COLOR",
    "tick_text",
    "tidy_ticks",
    "wrap_text",
    "shade_faces",
    "vector_rc",
    "camera_eye",
]

FONT_PT = 10.0  # every text of a figure: titles, axis and tick labels, colour bars, notes
MIN_FONT_PX = 9.0  # the smallest text (pixels, at the size shown) a reader reads without effort
README_DPI = 66  # FONT_PT * 66 / 72 = 9.2 px; a single view is 3.9 in = 257 px wide
SINGLE_FIGSIZE = (3.9, 3.8)  # one view (`landscape plot`): a paper's single column, or 1/3 README
PANEL_WIDTH = 2.8  # inches per net in the comparison: 4 nets + colour bar = 800 px at README_DPI
PAD_INCHES = 0.05  # margin around a saved figure's tight box
CAMERA_ELEV, CAMERA_AZIM = 28.0, -58.0  # looks down into the basin and along both walls
LIGHT_AZ, LIGHT_ALT = 315.0, 40.0  # a light from the upper left, as maps are lit
CLIPPED_COLOR = (0.82, 0.82, 0.82, 1.0)  # a face above a 3D view's z cap: grey, not the top colour


def tick_text(value: float, _pos: Any = None) -> str:
    """A tick label without trailing zeros: 1, 0.5, 0.25, 1e+03 (never '1.00' or '-0')."""
    if value == 0 or abs(value) < 1e-12:
        return "0"
    return f"{value:.3g}".replace("-", "\u2212")


def tidy_ticks(ax: Any, nbins: int = 4, zbins: int = 4) -> None:
    """Few rounded ticks on every axis of `ax` (3D axes too), labelled by `tick_text`.

    `nbins` is matplotlib's upper bound on intervals (at most nbins + 1 ticks); 3D views get
    fewer on their slanted horizontal axes, where labels are closest.
    """
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    three_d = hasattr(ax, "zaxis")
    axes = [(ax.xaxis, 2 if three_d else nbins), (ax.yaxis, 2 if three_d else nbins)]
    if three_d:
        axes.append((ax.zaxis, zbins))
    for axis, bins in axes:
        if axis.get_scale() != "linear":
            continue
        if axis is ax.xaxis and not three_d:  # labels side by side: as many as fit the axes' width
            bins = _fitting_bins(axis, bins, float(ax.get_position().width * ax.figure.get_figwidth()))
        axis.set_major_locator(MaxNLocator(nbins=bins, steps=[1, 2, 2.5, 5, 10]))
        if not isinstance(axis.get_major_formatter(), FuncFormatter):
            axis.set_major_formatter(FuncFormatter(tick_text))
    ax.tick_params(labelsize=FONT_PT)
    if three_d:
        ax.tick_params(axis="both", pad=0)


def _fitting_bins(axis: Any, bins: int, length_in: float) -> int:
    """The most intervals (<= `bins`) whose tick labels, side by side, fill at most 2/3 of
    `length_in` inches (a label is about 0.6 em a character, at `FONT_PT`)."""
    from matplotlib.ticker import MaxNLocator

    lo, hi = axis.get_view_interval()
    for n in range(bins, 1, -1):
        ticks = [t for t in MaxNLocator(nbins=n, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi) if lo <= t <= hi]
        width = sum(len(tick_text(t)) + 1 for t in ticks) * 0.6 * FONT_PT / 72
        if width <= length_in * 2 / 3:
            return n
    return 1


def wrap_text(text: str, width_in: float, pt: float = FONT_PT) -> str:
    """`text` broken into lines that fit `width_in` inches at `pt` points (about 0.6 em a char)."""
    chars = max(12, int(width_in * 72 / (0.6 * pt)))
    return "\n".join(textwrap.fill(line, chars) if line else line for line in text.split("\n"))


def shade_faces(values: np.ndarray, rgba: np.ndarray) -> np.ndarray:
    """Colours `rgba` [nx, ny, 4] lit by one light, from the slopes of `values` [nx, ny].

    The slopes are taken in the 3D box's own units (x, y and z each spanning 0..1), so a wall is
    shaded as it is seen. NaN values get no shading. Returns new colours [nx, ny, 4].
    """
    from matplotlib.colors import LightSource

    z = np.asarray(values, dtype=float)
    finite = np.isfinite(z)
    if finite.sum() < 4 or min(z.shape) < 2:
        return rgba
    lo, hi = float(z[finite].min()), float(z[finite].max())
    zn = np.where(finite, (z - lo) / ((hi - lo) or 1.0), 0.5)
    light = LightSource(azdeg=LIGHT_AZ, altdeg=LIGHT_ALT)
    shade = light.hillshade(zn, vert_exag=1.0, dx=1.0 / (z.shape[1] - 1), dy=1.0 / (z.shape[0] - 1))
    shade = np.where(finite, shade, 1.0)
    out = rgba.copy()
    out[..., :3] = np.clip(rgba[..., :3] * (0.55 + 0.6 * shade[..., None]), 0.0, 1.0)
    return out


def vector_rc(fmt: str) -> dict[str, Any]:
    """rcParams for saving one figure: TrueType text in PDF, <text> elements in SVG."""
    if fmt in ("pdf", "svg", "ps", "eps"):
        return {"pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none"}
    return {}


def camera_eye(elev: float = CAMERA_ELEV, azim: float = CAMERA_AZIM, distance: float = 2.1) -> dict[str, float]:
    """The plotly camera 'eye' that looks as matplotlib's `view_init(elev, azim)` does.

    >>> camera_eye(0.0, 0.0, 2.0)
    {'x': 2.0, 'y': 0.0, 'z': 0.0}
    """
    e, a = np.radians(elev), np.radians(azim)
    return {k: round(float(v), 4) + 0.0 for k, v in
            zip("xyz", (distance * np.cos(e) * np.cos(a), distance * np.cos(e) * np.sin(a), distance * np.sin(e)))}
