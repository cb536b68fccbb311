"""Every legal surface renders: constant arrays, single points, 1xN and Nx1 grids (as curves),
all-NaN or infinite values; and plot options that would draw millions of levels or pixels are
refused. Assertions are on what was drawn (plot functions take `ax=` and return artists)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from landscape.cli import main
from landscape.core.directions import Directions
from landscape.core.grid import Axis, Grid
from landscape.errors import LandscapeError
from landscape.io.storage import Surface, SurfaceWriter, create_surface, read_surface
from landscape.render.comparison import plot_comparison, save_comparison
from landscape.render.figure_files import save_plots
from landscape.render.plotting import plot_contour, plot_line, plot_surface, plot_surface3d
from landscape.render.report import report_figures, report_html
from landscape.render.views import MAX_LEVELS, NothingToDraw, as_drawable, contour_levels

ARRAYS = ["train_loss", "train_acc", "test_loss", "test_acc"]
Fill = Callable[[str, int], np.ndarray]


def _make(path: Path, x: str, y: str | None, fill: Fill) -> Surface:
    """A complete surface through the real storage API, every array from `fill(name, points)`."""
    grid = Grid(Axis.parse(x), Axis.parse(y, "y") if y else None)
    d = {"w": torch.ones(3)}
    create_surface(path, grid, ARRAYS, Directions(d, dict(d) if y else None, seed=0),
                   {"model": "mlp", "dir_kind": "random", "norm": "filter"}, {})
    with SurfaceWriter(path) as w:
        w.write_points(np.arange(grid.num_points), {k: fill(k, grid.num_points) for k in ARRAYS}, 0.1)
    return read_surface(path)


def _ramp(name: str, n: int) -> np.ndarray:
    return np.linspace(0.1, 3.0, n) + (0.5 if name.startswith("test") else 0.0)


def _constant(name: str, n: int) -> np.ndarray:
    return np.full(n, 2.302585 if name.endswith("loss") else 10.0)  # a diverged net: chance level


def _nan(name: str, n: int) -> np.ndarray:
    return np.full(n, np.nan)


def _inf(name: str, n: int) -> np.ndarray:
    return np.full(n, np.inf)


def test_constant_surface_draws_every_view(tmp_path: Path) -> None:
    s = _make(tmp_path / "const.h5", "-1:1:5", "-1:1:4", _constant)
    ax = Figure().add_subplot()
    cs = plot_contour(s, "train_acc", ax)
    assert any("constant: 10" in t.get_text() for t in ax.texts)  # said, not a blank panel
    filled = plot_contour(s, "train_loss", Figure().add_subplot(), filled=True)
    assert len(filled.levels) == 2 and filled.levels[0] < 2.302585 < filled.levels[1]
    ax3 = Figure().add_subplot(projection="3d")
    plot_surface3d(s, "train_loss", ax3)
    lo, hi = ax3.get_zlim()
    assert lo < 2.302585 < hi
    paths = save_plots(s, tmp_path / "p", kind="all")
    assert len(paths) == 4 * 5 and all(p.stat().st_size > 0 for p in paths)
    assert cs.levels.size >= 1
    assert len(save_plots(s, tmp_path / "log", kind="all", log=True)) == 4 * 5
    assert plot_comparison([s, s], log=True).contours[1] is not None


@pytest.mark.parametrize(("x", "y", "axis", "coords"), [
    ("0:0:1", "-1:1:6", "y", np.linspace(-1, 1, 6)),
    ("-1:1:6", "0:0:1", "x", np.linspace(-1, 1, 6)),
])
def test_single_row_or_column_is_drawn_as_a_curve(
    tmp_path: Path, x: str, y: str, axis: str, coords: np.ndarray
) -> None:
    s = _make(tmp_path / "row.h5", x, y, _ramp)
    curve = as_drawable(s)
    assert curve.ndim == 1 and curve.curve_axis == axis and s.ndim == 2  # the file is unchanged
    ax = Figure().add_subplot()
    drawn = plot_surface(s, "train_loss", ax=ax)
    (line,) = drawn["loss"]
    assert np.array_equal(line.get_xdata(), coords)
    assert np.array_equal(line.get_ydata(), _ramp("train_loss", 6))
    assert ax.get_xlabel().startswith(f"{axis}:")
    paths = save_plots(s, tmp_path / "p", kind="all")
    assert [p.name for p in paths] == ["row_line.png"]
    comp = plot_comparison([s, s])
    assert len(comp.lines) == 2 and not comp.contours
    figs = report_figures([s])
    assert [f[1] for f in figs] == ["s0-curve"]


def test_single_point_is_a_marker(tmp_path: Path) -> None:
    s = _make(tmp_path / "one.h5", "0:0:1", "0:0:1", _ramp)
    drawn = plot_line(s, ["train_loss"], Figure().add_subplot())
    (line,) = drawn["loss"]
    assert line.get_marker() == "o" and list(line.get_xdata()) == [0.0]
    assert save_plots(s, tmp_path / "p")[0].exists()
    assert "s0-curve" in report_html([s])


@pytest.mark.parametrize("fill", [_nan, _inf], ids=["nan", "inf"])
def test_surface_without_finite_values_is_skipped_with_a_note(tmp_path: Path, fill: Fill) -> None:
    s = _make(tmp_path / "diverged.h5", "-1:1:4", "-1:1:3", fill)
    with pytest.raises(NothingToDraw, match="no finite value"):
        save_plots(s, tmp_path / "p")
    notes: list[str] = []
    assert save_plots(s, tmp_path / "p", on_skip=notes.append) == []
    assert len(notes) == 4 and all(n.startswith("skipped ") and "\n" not in n for n in notes)
    assert save_comparison([s], tmp_path / "c.png", on_skip=notes.append) is None
    assert not (tmp_path / "c.png").exists() and "nothing to compare" in notes[-1]
    html = report_html([s])
    assert "note: skipped the views of" in html and "s0-3d" not in html


def test_comparison_skips_the_panel_of_a_diverged_net(tmp_path: Path) -> None:
    good = _make(tmp_path / "good.h5", "-1:1:4", "-1:1:3", _ramp)
    bad = _make(tmp_path / "bad.h5", "-1:1:4", "-1:1:3", _nan)
    comp = plot_comparison([good, bad])
    assert comp.contours[0] is not None and comp.contours[1] is None
    assert len(comp.notes) == 1 and "bad.h5" in comp.notes[0]
    assert any("no finite" in t.get_text() for t in comp.axes[2].texts)
    figs = [f[1] for f in report_figures([good, bad])]
    assert "s0-3d" in figs and "s1-3d" not in figs


def test_cli_notes_skipped_views_and_exits_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _make(tmp_path / "nan.h5", "-1:1:4", "-1:1:3", _nan)
    for argv in (["plot", "nan.h5"], ["compare", "nan.h5", "nan.h5", "--out", "c.png"],
                 ["report", "nan.h5", "-o", "r.html"]):
        assert main(argv) == 0
        out, err = capsys.readouterr()
        assert out.startswith("note: skipped") and err == ""


def test_levels_and_pixels_are_bounded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = _make(tmp_path / "bowl.h5", "-1:1:4", "-1:1:3", _ramp)
    with pytest.raises(LandscapeError, match=f"at most {MAX_LEVELS}"):
        contour_levels(s.arrays["train_loss"], vlevel=1e-9)
    with pytest.raises(LandscapeError, match="million pixels"):
        save_plots(s, tmp_path / "p", dpi=100_000)
    with pytest.raises(LandscapeError, match="cannot draw 12 contour levels"):
        plot_contour(s, "train_loss", Figure().add_subplot(), log=True, vmin=1e-300, vmax=1e300, filled=True)
    assert not (tmp_path / "p").exists()  # refused before anything was drawn or written
    for argv, fragment in (
        (["plot", str(s.path), "--vlevel", "1e-9", "--out", str(tmp_path)], "at most 1000"),
        (["plot", str(s.path), "--dpi", "100000", "--out", str(tmp_path)], "million pixels"),
        (["compare", str(s.path), "--dpi", "100000", "--out", str(tmp_path / "c.png")], "million pixels"),
        (["plot", str(s.path), "--vmax", "inf", "--out", str(tmp_path)], "finite number"),
    ):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
        err = capsys.readouterr().err
        assert rc == 2 and fragment in err and len(err.strip().splitlines()) == 1, (argv, err)
