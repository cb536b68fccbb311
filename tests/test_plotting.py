"""`landscape plot` / `compare` and the plot functions: what is drawn, on real surface files.

Surfaces are made without training: an analytic bowl written through the real storage API
(`create_surface` + `SurfaceWriter`), a file laid out as the paper's code writes it, and one
real tiny `landscape surface` run on the session checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import landscape
from landscape.core.directions import Directions
from landscape.core.grid import Axis, Grid
from landscape.core.metrics import surface_metrics
from landscape.errors import LandscapeError
from landscape.io.storage import SurfaceWriter, create_surface, read_surface, update_attrs
from landscape.render.comparison import plot_comparison
from landscape.render.figure_files import save_plots
from landscape.render.labels import axis_label, surface_title
from landscape.render.plotting import (
    plot_contour,
    plot_heatmap,
    plot_line,
    plot_surface,
    plot_surface3d,
)
from landscape.render.views import contour_levels

# ---------------------------------------------------------------------------------------------
# test surfaces (shared with test_report.py and test_export.py)


def bowl(x: np.ndarray, y: np.ndarray, scale: float = 1.0, offset: float = 0.01) -> np.ndarray:
    """The analytic train loss of the test surfaces: offset + scale * (x^2 + 2 y^2)."""
    return offset + scale * (x**2 + 2.0 * y**2)


def make_surface(
    path: Path,
    nx: int = 21,
    ny: int | None = 15,
    *,
    scale: float = 1.0,
    offset: float = 0.01,
    model: str = "bowlnet",
    dir_kind: str = "random",
    norm: str = "filter",
    splits: tuple[str, ...] = ("train", "test"),
    curvature: bool = False,
    done: int | None = None,
    trajectory: bool = False,
    xrange: tuple[float, float] = (-1.0, 1.0),
) -> Path:
    """A real surface file: bowl losses on an nx x ny grid (1D when ny is None), with metadata.

    test loss = 1.3 * train + 0.05; accuracy = 100 exp(-loss); with curvature, max_eig = 4 + x
    and min_eig = x * y (so |min/max| varies). `done` writes only the first `done` points.
    """
    gx = Axis(xrange[0], xrange[1], nx)
    gy = Axis(-1.0, 1.0, ny) if ny is not None else None
    grid = Grid(gx, gy)
    w = {"layer.weight": torch.zeros(2, 3)}
    directions = Directions(dict(w), dict(w) if ny is not None else None, dir_kind, "weights", norm, "biasbn", 0)
    names = [f"{s}_{k}" for s in splits for k in ("loss", "acc")] + (["max_eig", "min_eig"] if curvature else [])
    attrs = {
        "model": model, "model_kwargs": {"width": 4},
        "dataset": {"name": "digits", "n_train": 64, "n_test": 32},
        "dir_kind": dir_kind, "dir_type": "weights", "norm": norm, "ignore": "biasbn", "seed": 0,
        "directions": {"kind": dir_kind, "norm": norm, "explained_variance_ratio": [0.625, 0.125]},
        "bn": "eval", "precision": "fp32", "loss": "cross_entropy", "n_train": 64, "n_test": 32,
    }
    traj = None
    if trajectory:
        traj = {"x": np.linspace(-0.8, 0.0, 5), "y": np.linspace(0.6, 0.0, 5), "epochs": np.arange(5),
                "loss": np.linspace(2.0, 0.01, 5)}
    create_surface(path, grid, names, directions, attrs, {"test": True}, traj)
    flat = np.arange(grid.num_points)[: done if done is not None else grid.num_points]
    c = grid.coords_of(flat)
    x, y = c[:, 0], (c[:, 1] if ny is not None else np.zeros(len(c)))
    train = bowl(x, y, scale, offset)
    values = {}
    for s in splits:
        loss = train if s == "train" else 1.3 * train + 0.05
        values[f"{s}_loss"], values[f"{s}_acc"] = loss, 100.0 * np.exp(-loss)
    if curvature:
        values["max_eig"], values["min_eig"] = 4.0 + x, x * y
    with SurfaceWriter(path) as wr:
        wr.write_points(flat, values, 0.01)
    if done is None or done > grid.num_points // 2:
        update_attrs(path, {"metrics": surface_metrics(read_surface(path))})
    return path


def write_paper_surface(path: Path, nx: int = 13, ny: int = 9, missing: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """A file as the paper's code writes it: (nx, ny) datasets in meshgrid (y-major) flat order,
    -1 for points not computed (the last `missing` in its order), no attributes."""
    x, y = np.linspace(-1, 1, nx), np.linspace(-0.5, 0.5, ny)
    xx, yy = np.meshgrid(x, y)  # [ny, nx]: the paper's point k is (xx.flat[k], yy.flat[k])
    loss = bowl(xx.ravel(), yy.ravel())
    acc = 100 * np.exp(-loss)
    if missing:
        loss[-missing:] = -1
        acc[-missing:] = -1
    with h5py.File(path, "w") as f:
        f["dir_file"] = "model_300.t7_weights_xignore=biasbn_xnorm=filter.h5"
        f["xcoordinates"], f["ycoordinates"] = x, y
        f["train_loss"] = loss.reshape(nx, ny)  # the paper stores the flat order in an (nx, ny) array
        f["train_acc"] = acc.reshape(nx, ny)
    return x, y


def png_axes_variance(path: Path, fig: Figure, ax) -> float:  # noqa: ANN001
    """Pixel variance of a saved PNG inside the axes' box (0 for a blank axes)."""
    import matplotlib.image as mpimg

    img = mpimg.imread(path)[..., :3]
    h, w = img.shape[:2]
    bb = ax.get_position()
    crop = img[int((1 - bb.y1) * h) : int((1 - bb.y0) * h), int(bb.x0 * w) : int(bb.x1 * w)]
    return float(crop.var())


def _drawn(segs: list[np.ndarray]) -> bool:
    """A contour level has at least one non-empty line."""
    return any(len(seg) for seg in segs)


@pytest.fixture
def bowl_file(tmp_path: Path) -> Path:
    return make_surface(tmp_path / "bowlnet.h5")


# ---------------------------------------------------------------------------------------------
# levels and labels


def test_levels_follow_the_paper_when_they_fit_and_the_data_otherwise() -> None:
    z = np.linspace(0.0, 5.0, 50)
    np.testing.assert_allclose(contour_levels(z), np.arange(0.1, 10.0, 0.5))
    small = np.linspace(0.01, 0.3, 50)  # a digits net near its minimum: paper levels draw 2 lines
    lv = contour_levels(small)
    assert len(lv) >= 5 and lv.min() > 0.01 and lv.max() < 0.3
    assert np.allclose(np.diff(lv), np.diff(lv)[0])  # round, evenly spaced
    log = contour_levels(small, log=True)
    np.testing.assert_allclose(log[0], 0.01)
    np.testing.assert_allclose(log[-1], 0.3)
    np.testing.assert_allclose(np.diff(np.log(log)), np.log(log[1] / log[0]))  # log-spaced
    explicit = contour_levels(small, vmin=1, vmax=2, vlevel=0.25)  # honoured even if off-range
    np.testing.assert_allclose(explicit, [1, 1.25, 1.5, 1.75])
    with pytest.raises(LandscapeError, match="vmax must be above"):
        contour_levels(small, vmin=2, vmax=1)


def test_titles_and_axis_labels_come_from_the_metadata(bowl_file: Path, tmp_path: Path) -> None:
    s = read_surface(bowl_file)
    assert axis_label(s, "x") == "x: random direction (filter-normalized) step"
    title = surface_title(s, "train_loss")
    assert "bowlnet on digits" in title and "filter-normalized" in title and "train loss" in title
    pca = read_surface(make_surface(tmp_path / "pca.h5", dir_kind="pca", norm="none"))
    assert axis_label(pca, "y") == "y: PCA component 2 (12.5% of variance) step"


# ---------------------------------------------------------------------------------------------
# 2D views


def test_contour_draws_the_bowl_with_labelled_levels(bowl_file: Path, tmp_path: Path) -> None:
    s = read_surface(bowl_file)
    fig = Figure()
    ax = fig.add_subplot()
    cs = plot_contour(s, "train_loss", ax)
    # bowl range 0.01..3.01: the paper's levels 0.1..9.6 are used, the lines where data reach
    np.testing.assert_allclose(cs.levels, np.arange(0.1, 10.0, 0.5))
    drawn = [lv for lv, segs in zip(cs.levels, cs.allsegs) if _drawn(segs)]
    assert drawn == pytest.approx([0.1, 0.6, 1.1, 1.6, 2.1, 2.6])
    # the 1.1 level is the ellipse x^2 + 2y^2 = 1.09: check a vertex lies on it
    seg = cs.allsegs[2][0]
    np.testing.assert_allclose(bowl(seg[:, 0], seg[:, 1]), 1.1, atol=0.03)
    assert len(ax.texts) >= 3  # inline level labels
    assert ax.get_xlabel().startswith("x: random direction")
    # the notebook way: landscape.plot_surface (auto: contour for 2D)
    again = landscape.plot_surface(s, "train_loss")
    np.testing.assert_allclose(again.levels, cs.levels)
    # a tiny-loss surface (centre 0.001, max 0.03): levels come from the data, lines are drawn
    small = read_surface(make_surface(tmp_path / "small.h5", scale=0.01, offset=0.001))
    cs2 = plot_contour(small, "train_loss", Figure().add_subplot())
    assert sum(1 for segs in cs2.allsegs if _drawn(segs)) >= 4


def test_heatmap_and_3d_surface(bowl_file: Path, tmp_path: Path) -> None:
    s = read_surface(bowl_file)
    mesh = plot_heatmap(s, "test_loss", Figure().add_subplot())
    X, Y = np.meshgrid(s.x, s.y)  # [ny, nx], as drawn
    np.testing.assert_allclose(mesh.get_array().reshape(X.shape), 1.3 * bowl(X, Y) + 0.05)
    fig = Figure(figsize=(5, 4))
    ax = fig.add_subplot(projection="3d")
    art = plot_surface3d(s, "train_loss", ax, clim=(0.0, 4.0), zlim=(0.0, 4.0))
    assert art.get_clim() == (0.0, 4.0) and ax.get_zlim() == (0.0, 4.0)
    assert len(art.get_facecolor()) == 20 * 14  # one coloured quad per grid cell (lit, so no array)
    png = tmp_path / "3d.png"
    fig.savefig(png, dpi=60)
    assert png_axes_variance(png, fig, ax) > 1e-3  # not blank (the paper's Axes3D(fig) is)
    blank = Figure(figsize=(5, 4))
    bax = blank.add_subplot(projection="3d")
    bax.set_axis_off()
    blank.savefig(tmp_path / "blank.png", dpi=60)
    assert png_axes_variance(tmp_path / "blank.png", blank, bax) < 1e-6


def test_partial_surface_renders_computed_part_with_a_note(tmp_path: Path) -> None:
    s = read_surface(make_surface(tmp_path / "half.h5", done=120))
    ax = Figure().add_subplot()
    cs = plot_contour(s, "train_loss", ax)
    assert "partial: 120 of 315 points computed" in ax.get_title()
    pts = np.concatenate([seg for segs in cs.allsegs for seg in segs if len(seg)])
    # flat order i * ny + j: 120 points are x rows 0..7 (x <= -0.3) entirely
    assert pts[:, 0].max() <= s.x[8] + 1e-9
    paths = save_plots(s, tmp_path / "plots", kind="surface", surfs=["train_loss"])
    assert [p.name for p in paths] == ["half_train_loss_surface.png"]


def test_trajectory_overlay(tmp_path: Path) -> None:
    s = read_surface(make_surface(tmp_path / "pca.h5", dir_kind="pca", norm="none", trajectory=True))
    ax = Figure().add_subplot()
    plot_contour(s, "train_loss", ax, trajectory=True)
    (line,) = ax.lines
    np.testing.assert_allclose(line.get_xdata(), np.linspace(-0.8, 0.0, 5))
    with pytest.raises(LandscapeError, match="no training trajectory"):
        save_plots(read_surface(make_surface(tmp_path / "r.h5")), tmp_path, trajectory=True)


def test_eig_ratio_heatmap_on_the_papers_scale(tmp_path: Path) -> None:
    s = read_surface(make_surface(tmp_path / "curv.h5", curvature=True))
    mesh = plot_surface(s, "eig_ratio", kind="heatmap", ax=Figure().add_subplot())
    assert mesh.get_clim() == (0.0, 0.5)
    X, Y = np.meshgrid(s.x, s.y)
    np.testing.assert_allclose(mesh.get_array().reshape(X.shape), np.clip(np.abs(X * Y / (4 + X)), 0, 0.5))
    paths = save_plots(s, tmp_path / "p")
    assert tmp_path / "p" / "curv_eig_ratio_heatmap.png" in paths


def test_one_dimensional_curve_twin_axes(tmp_path: Path) -> None:
    s = read_surface(make_surface(tmp_path / "line.h5", nx=31, ny=None))
    ax = Figure().add_subplot()
    drawn = plot_line(s, None, ax, log=True)
    assert [ln.get_label() for ln in drawn["loss"]] == ["train loss", "test loss"]
    assert [ln.get_label() for ln in drawn["acc"]] == ["train accuracy (%)", "test accuracy (%)"]
    assert drawn["twin"] is not None and ax.get_yscale() == "log"
    np.testing.assert_allclose(drawn["loss"][0].get_ydata(), bowl(s.x, 0 * s.x))
    with pytest.raises(LandscapeError, match="1D curve"):
        plot_surface(s, "train_loss", kind="surface")


def test_paper_layout_file_renders(tmp_path: Path) -> None:
    x, y = write_paper_surface(tmp_path / "paper.h5")
    s = read_surface(tmp_path / "paper.h5")
    mesh = plot_heatmap(s, "train_loss", Figure().add_subplot())
    X, Y = np.meshgrid(x, y)
    want = bowl(X, Y).ravel()
    want[-5:] = np.nan  # not computed by the paper's run
    got = np.ma.filled(mesh.get_array().astype(float), np.nan).ravel()
    np.testing.assert_allclose(got, want)
    paths = save_plots(s, tmp_path / "plots", kind="all")
    assert len(paths) == 2 * 5 and all(p.stat().st_size > 1000 for p in paths)
    assert "paper" in axis_label(s, "x")


# ---------------------------------------------------------------------------------------------
# comparison


def test_comparison_shares_levels_and_colour_scale(tmp_path: Path) -> None:
    files = [make_surface(tmp_path / f"s{k}.h5", scale=1.0 + k, model=f"net{k}") for k in range(3)]
    comp = plot_comparison([read_surface(f) for f in files], "train_loss", zscale="linear")
    assert len(comp.contours) == 3 and len(comp.surfaces3d) == 3
    assert len(comp.figure.axes) == 3 * 2 + 1  # contour row, 3D row, one colour bar
    # shared colours: the paper's levels (0.1..9.6) that the union of the data (0.01..9.01) reaches
    assert comp.clim == pytest.approx((0.1, 9.01)) and comp.zlim == pytest.approx((0.01, 9.01))
    for cs in comp.contours:
        np.testing.assert_allclose(cs.levels, np.arange(0.1, 10.0, 0.5))
        assert cs.get_clim() == comp.clim
    assert {a.get_clim() for a in comp.surfaces3d} == {comp.clim}
    assert {ax.get_zlim() for ax in comp.axes[1::2]} == {comp.zlim}
    assert "net2 on digits" in comp.axes[4].get_title() and "centre 0.01" in comp.axes[4].get_title()
    assert "basin width x" in comp.axes[0].get_title()


def test_comparison_of_many_nets_wraps_and_clips_a_diverged_one_in_3d(tmp_path: Path) -> None:
    """Seven nets as in the demo: four per row; a blown-up net neither flattens the 3D row nor
    leaves a blank contour panel."""
    files = [make_surface(tmp_path / f"s{k}.h5", scale=1.0, model=f"net{k}") for k in range(5)]
    files.append(make_surface(tmp_path / "wild.h5", scale=1e6, model="wild"))
    files.append(make_surface(tmp_path / "high.h5", offset=300.0, model="high"))
    comp = plot_comparison([read_surface(f) for f in files], "train_loss", zscale="linear")
    grids = {ax.get_subplotspec().get_geometry()[:2] for ax in comp.axes}
    assert grids == {(4, 4)}  # 2 rows of (contour, 3D) pairs, 4 columns
    assert comp.zcap == pytest.approx(comp.clim[1]) and comp.zlim[1] == pytest.approx(comp.clim[1])
    assert "3D clipped at" in comp.figure.get_suptitle()
    high = comp.axes[2 * 6]
    assert any("above the top level" in t.get_text() and "300" in t.get_text() for t in high.texts)


def test_compare_refuses_mismatches_unless_allowed(tmp_path: Path) -> None:
    a = read_surface(make_surface(tmp_path / "a.h5"))
    b = read_surface(make_surface(tmp_path / "b.h5", nx=11, ny=11))
    c = read_surface(make_surface(tmp_path / "c.h5", norm="layer"))
    d = read_surface(make_surface(tmp_path / "d.h5", dir_kind="pca", norm="filter"))
    with pytest.raises(LandscapeError, match=r"grids differ: a.h5 is 21x15 .* b.h5 is 11x11"):
        plot_comparison([a, b])
    with pytest.raises(LandscapeError, match="normalizations differ: a.h5 has filter, c.h5 has layer"):
        plot_comparison([a, c])
    with pytest.raises(LandscapeError, match="direction kinds differ"):
        plot_comparison([a, d])
    comp = plot_comparison([a, b], allow_mismatch=True)
    assert comp.mismatch and len(comp.contours) == 2


# ---------------------------------------------------------------------------------------------
# the command


def test_plot_command_writes_every_view(run_cli, bowl_file: Path, tmp_path: Path) -> None:  # noqa: ANN001
    code, out, err = run_cli("plot", bowl_file, "--dpi", "50")
    assert code == 0, err
    written = out.split()
    names = sorted(Path(p).name for p in written)
    want = sorted(f"bowlnet_{s}_{k}.png" for s in ("train_loss", "train_acc", "test_loss", "test_acc")
                  for k in ("contour", "contourf", "heatmap", "surface"))
    assert names == want
    assert all((tmp_path / p).is_file() and Path(p).parts[0] == "plots" for p in written)
    code, out, _ = run_cli("plot", bowl_file, "--kind", "contour", "--log", "--format", "svg", "--out", "o")
    assert code == 0 and len(out.split()) == 4 and out.split()[0].endswith("_contour.svg")


def test_compare_command(run_cli, tmp_path: Path) -> None:  # noqa: ANN001
    a, b = make_surface(tmp_path / "a.h5"), make_surface(tmp_path / "b.h5", scale=2.0)
    code, out, err = run_cli("compare", a, b, "--out", "plots/compare.png", "--dpi", "50")
    assert code == 0, err
    assert out.strip() == "plots/compare.png" and (tmp_path / "plots/compare.png").stat().st_size > 10_000
    other = make_surface(tmp_path / "c.h5", nx=11)
    code, out, err = run_cli("compare", a, other)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "grids differ" in err
    assert "--allow-mismatch" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--surf", "test_loss"], "has no 'test_loss'; it holds: train_loss, train_acc"),
        (["--kind", "surface"], "1D curve; --kind surface needs a 2D surface"),
    ],
)
def test_plot_bad_input_one_line(run_cli, tmp_path: Path, args: list[str], message: str) -> None:  # noqa: ANN001
    f = make_surface(tmp_path / "one.h5", ny=None, splits=("train",))
    code, out, err = run_cli("plot", f, *args)
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_plot_rejects_unusable_files(run_cli, tmp_path: Path) -> None:  # noqa: ANN001
    (tmp_path / "notes.txt").write_text("not hdf5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["weights"] = np.zeros(3)
    empty = make_surface(tmp_path / "empty.h5", done=0)
    for f, message in (
        (tmp_path / "notes.txt", "not a readable HDF5 surface file"),
        (tmp_path / "other.h5", "is not a surface file"),
        (empty, "no computed values in 'train_loss' yet (0 of 315 points done)"),
        (tmp_path / "missing.h5", "does not exist"),
    ):
        code, out, err = run_cli("plot", f)
        assert code != 0 and message in err, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "plots").exists() or not any((tmp_path / "plots").iterdir())


def test_real_surface_end_to_end(run_cli, tiny_ckpt: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """A real (tiny) surface of the session checkpoint, drawn by the installed command."""
    code, out, err = run_cli(
        "surface", "--ckpt", tiny_ckpt, "--x=-1:1:7", "--y=-1:1:5", "--max-samples", "64",
        "--out", "surfaces/mlp.h5", "--quiet", timeout=300,
    )
    assert code == 0, err
    s = read_surface(tmp_path / "surfaces/mlp.h5")
    assert s.done == 35
    code, out, err = run_cli("plot", "surfaces/mlp.h5", "--surf", "train_loss", "--dpi", "50")
    assert code == 0, err
    assert sorted(Path(p).name for p in out.split()) == [
        f"mlp_train_loss_{k}.png" for k in ("contour", "contourf", "heatmap", "surface")
    ]
    import matplotlib.image as mpimg

    img = mpimg.imread(tmp_path / "plots/mlp_train_loss_surface.png")[..., :3]
    h, w = img.shape[:2]
    assert img[h // 4 : 3 * h // 4, w // 8 : 5 * w // 8].var() > 1e-3  # the 3D view is not blank
    # the drawn contour's data are the file's train loss at the centre
    cs = plot_contour(s, "train_loss", Figure().add_subplot())
    assert len(cs.levels) >= 3
    centre = s.arrays["train_loss"][3, 2]
    assert s.metrics["center_train_loss"] == pytest.approx(centre)
