"""A figure test that looks at the picture: the README's figures, rendered at the README's sizes.

Draws the comparison (1 to 8 panels, 7 like the demo) and the single views (contours, filled
contours, heatmap, 3D) of loss-like surfaces on 5x5, 25x25 and 51x51 grids, then checks what a
reader sees: no two tick labels of one axis overlap (window extents after drawing, 3D axes and
colour bars too), every text is at least `MIN_FONT_PX` pixels tall at the size the README shows
the figure, and SVG/PDF files keep text as text.
"""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

from landscape.core.directions import Directions
from landscape.core.grid import Axis, Grid
from landscape.core.metrics import surface_metrics
from landscape.io.storage import Surface, SurfaceWriter, create_surface, read_surface, update_attrs
from landscape.render.comparison import plot_comparison, save_comparison
from landscape.render.figure_files import save_plots, view_figure
from landscape.render.figure_style import (
    CAMERA_AZIM,
    CAMERA_ELEV,
    CLIPPED_COLOR,
    PAD_INCHES,
    README_DPI,
)
from landscape.render.views import refine_grid

MIN_FONT_PX = 9.0  # the smallest text a reader of the README can read comfortably
# dpi of the README's commands and the width (px) at which the README shows each figure
README_SINGLE = {"dpi": README_DPI, "display_px": 266}  # three figures side by side in a table
README_COMPARE = {"dpi": README_DPI, "display_px": 800}  # the full width of the README's text
NETS = ["resnet20", "resnet20_noshort", "resnet56", "resnet56_noshort", "resnet110",
        "resnet110_noshort", "densenet_bc40", "resnet164"]


def walls(x: np.ndarray, y: np.ndarray, sharp: float) -> np.ndarray:
    """A loss like a net's: a basin of 0.01 at the centre and walls rising to hundreds."""
    r2 = sharp * (x**2 + 2.0 * y**2)
    return 0.01 + np.expm1(np.minimum(r2, 6.0)) + 0.2 * np.sin(5 * x) ** 2 * r2


def loss_surface(
    path: Path, n: int, model: str = "resnet56_noshort", sharp: float = 4.0, span: tuple[float, float] = (-1.0, 1.0)
) -> Surface:
    """A complete n x n surface file with a net's metadata and metrics (titles as the demo's);
    `span` is the x range (the loss is the same shape on it)."""
    grid = Grid(Axis(*span, n), Axis(-1.0, 1.0, n))
    w = {"layer.weight": torch.zeros(2, 3)}
    attrs = {"model": model, "dataset": {"name": "digits"}, "dir_kind": "random", "norm": "filter"}
    names = ["train_loss", "train_acc"]
    create_surface(path, grid, names, Directions(dict(w), dict(w), "random", "weights", "filter", "biasbn", 0),
                   attrs, {})
    c = grid.coords_of(np.arange(grid.num_points))
    loss = walls((c[:, 0] - span[0]) / (span[1] - span[0]) * 2 - 1, c[:, 1], sharp)
    with SurfaceWriter(path) as wr:
        wr.write_points(np.arange(grid.num_points), {"train_loss": loss, "train_acc": 100 * np.exp(-loss)}, 0.1)
    update_attrs(path, {"metrics": surface_metrics(read_surface(path))})
    return read_surface(path)


def _draw(fig) -> tuple[int, object]:  # noqa: ANN001
    """Draw `fig` as its PNG would be (tight box); return the PNG's width in pixels and the renderer."""
    canvas = FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight", pad_inches=PAD_INCHES)
    width = mpimg.imread(io.BytesIO(buf.getvalue())).shape[1]
    canvas.draw()
    return width, canvas.get_renderer()


def _visible_tick_labels(axis) -> list[Text]:  # noqa: ANN001
    lo, hi = sorted(axis.get_view_interval())
    span = hi - lo
    out = []
    for tick in axis.get_major_ticks():
        label = tick.label1
        inside = lo - 1e-9 * span <= tick.get_loc() <= hi + 1e-9 * span
        if inside and label.get_visible() and label.get_text().strip():
            out.append(label)
    return out


def tick_overlaps(fig, renderer) -> list[str]:  # noqa: ANN001
    """'axes 3 zaxis: "0.5" overlaps "1.0"' for every pair of overlapping tick labels of one axis."""
    problems = []
    for k, ax in enumerate(fig.axes):
        axes = [ax.xaxis, ax.yaxis] + ([ax.zaxis] if hasattr(ax, "zaxis") else [])
        for axis in axes:
            if not axis.get_visible() or (not hasattr(ax, "zaxis") and not ax.axison):  # 3D axes: axison False
                continue
            labels = _visible_tick_labels(axis)
            boxes = [lab.get_window_extent(renderer).shrunk(0.98, 0.98) for lab in labels]
            for (a, ba), (b, bb) in itertools.combinations(zip(labels, boxes), 2):
                if ba.overlaps(bb):
                    problems.append(f"axes {k} {axis.axis_name}axis: {a.get_text()!r} overlaps {b.get_text()!r}")
    return problems


def small_texts(fig, png_width: int, display_px: float) -> list[str]:  # noqa: ANN001
    """Texts smaller than MIN_FONT_PX pixels at the size the README shows the figure."""
    scale = min(1.0, display_px / png_width)
    small = []
    for t in fig.findobj(Text):
        if not (t.get_visible() and t.get_text().strip()):
            continue
        px = t.get_fontsize() * fig.dpi / 72 * scale
        if px < MIN_FONT_PX - 1e-6:
            small.append(f"{t.get_text()[:40]!r}: {px:.1f} px")
    return small


def _check(fig, display_px: float) -> None:  # noqa: ANN001
    width, renderer = _draw(fig)
    problems = tick_overlaps(fig, renderer)
    assert not problems, "overlapping tick labels:\n" + "\n".join(problems[:12])
    small = small_texts(fig, width, display_px)
    assert not small, f"text under {MIN_FONT_PX} px at {display_px} px wide:\n" + "\n".join(small[:12])


@pytest.mark.parametrize(("panels", "n"), [(7, 25), (7, 51), (1, 5), (2, 25), (3, 5), (4, 5), (5, 25), (6, 5), (8, 25)])
def test_comparison_is_readable_at_readme_size(tmp_path: Path, panels: int, n: int) -> None:
    surfaces = [loss_surface(tmp_path / f"{NETS[k]}.h5", n, NETS[k], sharp=1.0 + k) for k in range(panels)]
    comp = plot_comparison(surfaces, "train_loss")
    comp.figure.set_dpi(README_COMPARE["dpi"])
    _check(comp.figure, README_COMPARE["display_px"])


@pytest.mark.parametrize("panels", [1, 4, 5, 8])
def test_comparison_of_curves_is_readable_at_readme_size(tmp_path: Path, panels: int) -> None:
    from test_plotting import make_surface

    files = [make_surface(tmp_path / f"{NETS[k]}.h5", nx=31, ny=None, scale=1.0 + k, model=NETS[k])
             for k in range(panels)]
    comp = plot_comparison([read_surface(f) for f in files], "train_loss")
    comp.figure.set_dpi(README_COMPARE["dpi"])
    _check(comp.figure, README_COMPARE["display_px"])


def _single_figure(surface: Surface, kind: str):  # noqa: ANN202
    return view_figure(surface, "train_loss", kind)


@pytest.mark.parametrize("n", [5, 25, 51])
@pytest.mark.parametrize("kind", ["contour", "contourf", "heatmap", "surface"])
def test_single_views_are_readable_at_readme_size(tmp_path: Path, kind: str, n: int) -> None:
    fig = _single_figure(loss_surface(tmp_path / "resnet56_noshort.h5", n), kind)
    fig.set_dpi(README_SINGLE["dpi"])
    _check(fig, README_SINGLE["display_px"])


@pytest.mark.parametrize("span", [(-0.0015, 0.0025), (-150.0, 250.0), (0.0, 1.0), (-12.5, 37.5)])
@pytest.mark.parametrize("kind", ["contour", "surface"])
def test_odd_ranges_keep_tick_labels_apart(tmp_path: Path, kind: str, span: tuple[float, float]) -> None:
    """Ranges of PCA or interpolation surfaces: long tick labels get fewer ticks."""
    fig = _single_figure(loss_surface(tmp_path / "pca.h5", 13, span=span), kind)
    fig.set_dpi(README_SINGLE["dpi"])
    _check(fig, README_SINGLE["display_px"])


def test_vector_files_keep_text_as_text(tmp_path: Path) -> None:
    s = loss_surface(tmp_path / "resnet56.h5", 9)
    svg = save_plots(s, tmp_path / "svg", ["train_loss"], "surface", "svg")[0].read_text()
    assert svg.count("<text") >= 5, "SVG text drawn as paths (svg.fonttype must be 'none')"
    pdf = save_plots(s, tmp_path / "pdf", ["train_loss"], "contour", "pdf")[0].read_bytes()
    assert b"/Type3" not in pdf and b"/FontFile2" in pdf, "PDF fonts must be TrueType (pdf.fonttype 42)"
    comp = save_comparison([s, s], tmp_path / "c.svg")
    assert comp is not None and comp.read_text().count("<text") >= 5


# ---------------------------------------------------------------------------------------------
# what the publication defaults draw


def test_3d_views_of_a_loss_are_log_scaled_with_nothing_clipped(tmp_path: Path) -> None:
    s = loss_surface(tmp_path / "resnet56.h5", 25)
    raw = s.arrays["train_loss"]
    comp = plot_comparison([s, s], "train_loss")
    assert comp.zscale == "log" and comp.zcap is None
    assert comp.zlim == pytest.approx((np.log10(raw.min()), np.log10(raw.max())))
    assert comp.clim == pytest.approx((raw.min(), raw.max()))  # basin and walls on one colour scale
    assert "log scale" in comp.figure.axes[-1].get_ylabel()
    assert plot_comparison([s, s], "train_acc").zscale == "linear"  # accuracy stays linear
    fig = view_figure(s, "train_loss", "surface")
    ax3 = fig.axes[0]
    assert ax3.get_zlim() == pytest.approx((np.log10(raw.min()), np.log10(raw.max())))
    assert ax3.get_zlabel() == "" and "log scale" in fig.axes[-1].get_ylabel()  # the colour bar names it
    assert "grey" not in ax3.get_title()
    assert (ax3.elev, ax3.azim) == (CAMERA_ELEV, CAMERA_AZIM)
    lin = view_figure(s, "train_loss", "surface", zscale="linear").axes[0]
    assert lin.get_zlim()[1] == pytest.approx(raw.max(), rel=1e-3) or "grey" in lin.get_title()


def test_one_diverged_net_does_not_flatten_the_shared_log_scale(tmp_path: Path) -> None:
    calm = [loss_surface(tmp_path / f"n{k}.h5", 9, f"n{k}", sharp=1.0 + k) for k in range(3)]
    wild = loss_surface(tmp_path / "wild.h5", 9, "wild")
    wild.arrays["train_loss"] = wild.arrays["train_loss"] * 1e15  # a net that diverged at the edges
    tops = [float(s.arrays["train_loss"].max()) for s in calm]
    comp = plot_comparison([*calm, wild], "train_loss")
    assert comp.zcap is not None and max(tops) < comp.zcap < 1e15
    assert comp.clim[1] == pytest.approx(comp.zcap)  # the colours span the calm nets' basins and walls
    assert "clipped" in comp.figure._suptitle.get_text()


def test_a_net_that_missed_its_criterion_is_marked_in_its_panel(tmp_path: Path) -> None:
    met = loss_surface(tmp_path / "met.h5", 9, "resnet56")
    unmet = tmp_path / "unmet.h5"
    loss_surface(unmet, 9, "resnet56_noshort")
    trained = {"train_loss": 0.191, "target_loss": 0.03, "epochs_used": 100.0, "criterion_met": 0.0}
    update_attrs(unmet, {"checkpoint_metrics": trained})
    update_attrs(tmp_path / "met.h5", {"checkpoint_metrics": {**trained, "criterion_met": 1.0}})
    comp = plot_comparison([read_surface(tmp_path / "met.h5"), read_surface(unmet)], "train_loss")
    titles = [ax.get_title() for ax in comp.figure.axes if ax.get_title()]
    assert len(titles) == 2 and "NOT CONVERGED" not in titles[0] and met.attrs["model"] in titles[0]
    assert "NOT CONVERGED: train loss 0.191 > 0.03 after 100 epochs" in titles[1].replace("\n", " ")


def test_a_capped_3d_view_draws_the_clipped_faces_grey(tmp_path: Path) -> None:
    s = loss_surface(tmp_path / "resnet56.h5", 9)
    fig = view_figure(s, "train_loss", "surface", zscale="linear", zmax=5.0)
    ax3 = fig.axes[0]
    art = ax3.collections[0]
    above = s.arrays["train_loss"] > 5.0
    cells = above[:-1, :-1] | above[1:, :-1] | above[:-1, 1:] | above[1:, 1:]
    grey = np.all(np.isclose(art.get_facecolor(), CLIPPED_COLOR), axis=1)
    assert grey.sum() == cells.sum() > 0
    assert "grey: above 5" in ax3.get_title()


def test_contours_are_drawn_on_an_interpolated_grid_and_the_values_kept(tmp_path: Path) -> None:
    s = loss_surface(tmp_path / "resnet56.h5", 9)
    stored = s.arrays["train_loss"].copy()
    x, y, z, factor = refine_grid(s.x, s.y, stored)
    assert factor > 1 and z.shape == ((9 - 1) * factor + 1,) * 2
    np.testing.assert_array_equal(z[::factor, ::factor], stored)  # passes through every stored value
    lo = np.minimum.reduce([stored[:-1, :-1], stored[1:, :-1], stored[:-1, 1:], stored[1:, 1:]])
    hi = np.maximum.reduce([stored[:-1, :-1], stored[1:, :-1], stored[:-1, 1:], stored[1:, 1:]])
    for i, j in [(3, 5), (17, 2), (40, 40)]:  # every value within its stored cell's range
        ci, cj = min(i // factor, 7), min(j // factor, 7)
        assert lo[ci, cj] - 1e-12 <= z[i, j] <= hi[ci, cj] + 1e-12
    partial = stored.copy()
    partial[0, 0] = np.nan
    assert refine_grid(s.x, s.y, partial)[3] == 1  # a partial surface: drawn as stored
    fig = view_figure(s, "train_loss", "contour")
    assert f"contours drawn on a grid interpolated {factor}x finer" in " ".join(fig.axes[0].get_title().split())
    np.testing.assert_array_equal(read_surface(s.path).arrays["train_loss"], stored)


def test_cli_zscale_choice(tmp_path: Path, run_cli) -> None:  # noqa: ANN001
    loss_surface(tmp_path / "resnet56.h5", 9)
    code, out, _ = run_cli("plot", tmp_path / "resnet56.h5", "--surf", "train_loss", "--kind", "surface",
                           "--zscale", "linear", "--out", tmp_path / "o")
    assert code == 0 and out.strip().endswith("resnet56_train_loss_surface.png")
    code, _, err = run_cli("plot", tmp_path / "resnet56.h5", "--zscale", "cubic")
    assert code != 0 and "--zscale" in err


def _readme_script():  # noqa: ANN202
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "readme_figures.py"
    spec = importlib.util.spec_from_file_location("readme_figures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_command_regenerates_every_readme_figure_at_the_readme_size(tmp_path: Path) -> None:
    from landscape.studies.demo import DEFAULT_NETS

    script = _readme_script()
    surfaces = tmp_path / "surfaces" / "demo"
    surfaces.mkdir(parents=True)
    assert script.main(["--surfaces", str(surfaces), "--out", str(tmp_path / "r")]) == 2  # nothing there yet
    for k, net in enumerate(DEFAULT_NETS):
        loss_surface(surfaces / f"{net}.h5", 9, net, sharp=1.0 + k)
    paths = script.readme_figures(surfaces, tmp_path / "r")
    root = Path(__file__).resolve().parents[1]
    pages = "\n".join(p.read_text() for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))])
    assert len(paths) == 4
    for path in paths:
        assert f"plots/readme/{path.name}" in pages  # the README or a docs page shows every figure written
        width = mpimg.imread(path).shape[1]
        assert width <= (README_COMPARE if path.name == script.COMPARE_NAME else README_SINGLE)["display_px"]
    assert "python scripts/readme_figures.py" in pages
