"""Frames through training drawn on ONE scale: PNGs and a GIF/MP4 (matplotlib), plotly frames.

A frames file (`landscape surface --ckpt snaps/*.pt --frames`, see `landscape.jobs.frames`) holds
one surface per snapshot. Every frame is drawn with the same contour levels and colour range,
taken from all frames together (`frame_scale`), so a colour means the same loss in every frame.

- `save_frames`: one filled-contour PNG per frame, `<stem>_<surf>_frame_NNN.png`, and with
  `gif`/`mp4` one animation of them (the GIF is written by Pillow, which matplotlib's
  PillowWriter uses; the MP4 by matplotlib's FFMpegWriter, which needs ffmpeg on the PATH);
- `frames_figure`: the report's plotly figure, one contour per frame in plotly `frames`, with
  a slider and a play button (no network: plotly.js is inlined by the report).

Example:
    >>> paths = save_frames(read_surface("surfaces/mlp_frames.h5"), "plots", gif=True)  # doctest: +SKIP
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import LandscapeError
from .labels import axis_label, surf_label
from .views import colour_range, contour_levels, surface_values

if TYPE_CHECKING:
    from ..core.loss_surface import Surface

__all__ = ["frame_values", "frame_scale", "frame_label", "require_writers", "save_frames", "frames_figure", "animation_writer_problem"]

FRAME_SECONDS = 0.5  # how long each frame is shown in the animations


def frame_values(surface: Surface, surf: str, zmax: float | None = None) -> list[np.ndarray]:
    """Every frame's array `surf` (NaN where not computed, clipped at `zmax`)."""
    if not surface.n_frames:
        raise LandscapeError(
            f"{surface.path} holds no frames; make it with `landscape surface --ckpt SNAPSHOTS... --frames`"
        )
    return [surface_values(surface.frame(i), surf, zmax) for i in range(surface.n_frames)]


def frame_scale(
    values: Sequence[np.ndarray], vmin: float | None = None, vmax: float | None = None,
    vlevel: float | None = None, log: bool = False,
) -> tuple[np.ndarray, tuple[float, float]]:
    """Contour levels and colour range shared by all frames (`views.contour_levels` over all)."""
    levels = contour_levels(list(values), vmin, vmax, vlevel, log)
    if len(levels) < 2:  # every frame one constant: a band around it
        lo = float(levels[0])
        levels = np.array([lo - 0.5, lo + 0.5]) if lo == 0 else np.array([lo * 0.95, lo * 1.05])
    return levels, colour_range(levels, list(values))


def frame_label(surface: Surface, i: int) -> str:
    """'epoch 3' (or 'frame 3' when the snapshot has no epoch)."""
    meta = (surface.attrs.get("frames") or [])
    epoch = meta[i].get("epoch") if i < len(meta) and isinstance(meta[i], dict) else None
    return f"epoch {epoch}" if isinstance(epoch, int) and epoch >= 0 else f"frame {i}"


def animation_writer_problem(kind: str) -> str | None:
    """None when an animation of `kind` (gif, mp4) can be written here, else what to install."""
    if kind == "gif":
        try:
            import PIL  # noqa: F401
        except ImportError:
            return "--gif needs Pillow (pip install pillow)"
        return None
    if kind == "mp4":
        from matplotlib import animation

        if not animation.writers.is_available("ffmpeg") or shutil.which("ffmpeg") is None:
            return "--mp4 needs ffmpeg on the PATH (apt-get install ffmpeg, or conda install ffmpeg); --gif needs only Pillow"
        return None
    raise LandscapeError(f"animation kind {kind!r} is not one of gif, mp4")


def require_writers(gif: bool = False, mp4: bool = False) -> None:
    """Refuse, in one line naming what to install, an animation no writer here can make."""
    for kind, wanted in (("gif", gif), ("mp4", mp4)):
        problem = animation_writer_problem(kind) if wanted else None
        if problem:
            raise LandscapeError(problem)


def _frame_figure(surface: Surface, i: int, surf: str, levels: np.ndarray, clim: tuple[float, float],
                  log: bool, zmax: float | None) -> Any:
    from matplotlib.figure import Figure

    from .decorations import add_colorbar
    from .figure_style import SINGLE_FIGSIZE
    from .plotting import plot_contour

    fig = Figure(figsize=SINGLE_FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    art = plot_contour(surface.frame(i), surf, ax, filled=True, levels=levels, clim=clim, log=log, zmax=zmax,
                       title=False)
    ax.set_title(f"{surf_label(surf)} · {frame_label(surface, i)} ({i + 1}/{surface.n_frames})")
    add_colorbar(fig, art, ax, f"{surf_label(surf)} (one scale for every frame)")
    return fig


def _rgb(fig: Any) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_frames(
    surface: Surface, out_dir: str | Path = "plots", surf: str = "train_loss", dpi: int = 100, *,
    gif: bool = False, mp4: bool = False, vmin: float | None = None, vmax: float | None = None,
    vlevel: float | None = None, log: bool = False, zmax: float | None = None,
) -> list[Path]:
    """One PNG per frame on one scale and, with `gif`/`mp4`, the animation; return the paths.

    A missing animation writer is refused (one line naming what to install) before anything
    is written.
    """
    from ..io.outputs import atomic_write, check_output
    from .figure_files import save_figure
    from .figure_style import SINGLE_FIGSIZE
    from .views import check_pixels

    if surface.ndim != 2:
        raise LandscapeError(f"{surface.path}: frames are drawn as 2D contours; this file is 1D")
    require_writers(gif=gif, mp4=mp4)
    from matplotlib.figure import Figure

    check_pixels(Figure(figsize=SINGLE_FIGSIZE), dpi)
    values = frame_values(surface, surf, zmax)
    levels, clim = frame_scale(values, vmin, vmax, vlevel, log)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(surface.path).stem
    written: list[Path] = []
    images = []
    for i in range(surface.n_frames):
        fig = _frame_figure(surface, i, surf, levels, clim, log, zmax)
        path = out / f"{stem}_{surf}_frame_{i:03d}.png"
        check_output(path, "png", "plot")
        save_figure(fig, path, "png", dpi, "write frame")
        written.append(path)
        if gif or mp4:
            fig.set_dpi(dpi)
            images.append(_rgb(fig))
    if gif:
        from PIL import Image

        path = out / f"{stem}_{surf}_frames.gif"
        check_output(path, "gif", "plot")
        frames = [Image.fromarray(a) for a in images]
        with atomic_write(path, "write animation") as tmp:
            frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                           duration=int(FRAME_SECONDS * 1000), loop=0)
        written.append(path)
    if mp4:
        written.append(_save_mp4(images, out / f"{stem}_{surf}_frames.mp4", dpi))
    return written


def _save_mp4(images: Sequence[np.ndarray], path: Path, dpi: int) -> Path:
    """The frames as an MP4, through matplotlib's FFMpegWriter (ffmpeg must be installed)."""
    from matplotlib import animation
    from matplotlib.figure import Figure

    from ..io.outputs import atomic_write, check_output

    check_output(path, "mp4", "plot")
    h, w = images[0].shape[:2]
    fig = Figure(figsize=(w / dpi, h / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    shown = ax.imshow(images[0])
    writer = animation.FFMpegWriter(fps=1 / FRAME_SECONDS, extra_args=["-f", "mp4", "-pix_fmt", "yuv420p"])
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_write(path, "write animation") as tmp, writer.saving(fig, tmp, dpi):
        for a in images:
            shown.set_data(a)
            writer.grab_frame()
    return path


def frames_figure(surface: Surface, surf: str, zmax: float | None = None) -> dict[str, Any]:
    """The report's animated contour: plotly `frames`, one per snapshot, a slider and a play
    button, every frame on the same contour levels and colour range."""
    from .plotly_specs import esc  # text from the file, shown as text

    values = frame_values(surface, surf, zmax)
    levels, clim = frame_scale(values)
    spec = {"start": float(levels[0]), "end": float(levels[-1]), "size": float(levels[1] - levels[0])}

    def trace(z: np.ndarray) -> dict[str, Any]:
        rows = [[float(f"{v:.6g}") if np.isfinite(v) else None for v in row] for row in np.asarray(z).T]
        return {"type": "contour", "x": [float(v) for v in surface.x], "y": [float(v) for v in surface.y],
                "z": rows, "autocontour": False, "contours": {**spec, "coloring": "heatmap", "showlabels": True},
                "zmin": clim[0], "zmax": clim[1], "zauto": False, "colorscale": "Viridis",
                "colorbar": {"title": {"text": surf_label(surf)}}, "name": surf_label(surf)}

    names = [frame_label(surface, i) for i in range(len(values))]
    frames = [{"name": n, "data": [trace(z)], "layout": {"title": {"text": f"{surf_label(surf)} · {n}"}}}
              for n, z in zip(names, values)]
    step_args = {"mode": "immediate", "frame": {"duration": 0, "redraw": True}, "transition": {"duration": 0}}
    slider = {"active": 0, "currentvalue": {"prefix": "frame: "}, "pad": {"t": 40},
              "steps": [{"label": n, "method": "animate", "args": [[n], step_args]} for n in names]}
    play = {"type": "buttons", "showactive": False, "x": 0.0, "y": -0.12, "xanchor": "right",
            "buttons": [
                {"label": "play", "method": "animate",
                 "args": [None, {"frame": {"duration": int(FRAME_SECONDS * 1000), "redraw": True},
                                 "fromcurrent": True, "transition": {"duration": 0}}]},
                {"label": "pause", "method": "animate", "args": [[None], step_args]}]}
    layout = {"title": {"text": f"{surf_label(surf)} · {names[0]}", "font": {"size": 14}}, "height": 520,
              "xaxis": {"title": {"text": esc(axis_label(surface, "x"))}},
              "yaxis": {"title": {"text": esc(axis_label(surface, "y"))}},
              "sliders": [slider], "updatemenus": [play], "margin": {"t": 60, "b": 90}}
    return {"data": [trace(values[0])], "layout": layout, "frames": frames}
