"""Topology of a surface (landscape.core.topology): minima, persistence pairs, basins, on surfaces
whose minima and saddles are known exactly; gudhi's cubical persistence as an independent oracle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import RunCli
from scipy import ndimage

from landscape.core.loss_surface import Surface
from landscape.core.topology import sublevel_topology, topology_line, topology_metrics
from landscape.errors import LandscapeError
from landscape.io.storage import read_surface


def _grid(n: int = 41, lim: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(-lim, lim, n)  # odd n: 0 and +-1 on the grid
    return np.meshgrid(x, x, indexing="ij")


def test_double_well_has_two_minima_and_one_pair_of_depth_one() -> None:
    X, Y = _grid()
    t = sublevel_topology(X**4 - 2 * X**2 + Y**2)
    assert len(t.basins) == 2
    deep, shallow = t.basins
    assert deep.death is None and deep.birth == pytest.approx(-1.0, abs=1e-12)
    assert shallow.birth == pytest.approx(-1.0, abs=1e-12)
    assert shallow.death == pytest.approx(0.0, abs=1e-12) and shallow.depth == pytest.approx(1.0, abs=1e-12)
    places = sorted((round(X[b.index], 9), round(Y[b.index], 9)) for b in t.basins)
    assert places == [(-1.0, 0.0), (1.0, 0.0)]
    assert shallow.saddle is not None and np.hypot(X[shallow.saddle], Y[shallow.saddle]) < 1e-9
    # the younger basin: its component of {z < saddle}; the older: every other cell
    z = X**4 - 2 * X**2 + Y**2
    parts, _ = ndimage.label(z < 0.0, structure=np.ones((3, 3)))
    assert t.area(1) == pytest.approx((parts == parts[shallow.index]).sum() / z.size)
    assert t.area(0) + t.area(1) == pytest.approx(1.0) and t.area(1) > 0.05


def test_convex_bowl_one_minimum_no_pairs_whole_grid_is_its_basin() -> None:
    X, Y = _grid(21)
    m = topology_metrics(X**2 + 3 * Y**2 + 0.5, np.ones(X.shape, bool), (10, 10))
    assert m["local_minima"] == 1
    assert m["persistence"] == [[0.5, None]]
    assert m["centre_basin_fraction"] == 1.0 and m["centre_basin_level"] is None


def test_gaussian_wells_depths_and_centre_basin() -> None:
    """Three narrow wells far apart on a flat 0 plane: minima at -a, all merge near 0."""
    X, Y = _grid(61, 3.0)
    wells = [((0.0, 0.0), 0.5), ((-2.0, -2.0), 2.0), ((2.0, 1.0), 1.0)]
    z = 1e-3 * (X**2 + Y**2)  # a gentle tilt: the plane is not a plateau
    for (cx, cy), a in wells:
        z = z - a * np.exp(-((X - cx) ** 2 + (Y - cy) ** 2) / 0.1)
    t = sublevel_topology(z)
    assert len(t.basins) == 3
    assert t.basins[0].death is None and t.basins[0].birth == pytest.approx(-2.0 + 8e-3, abs=1e-3)
    depths = [b.depth for b in t.basins[1:]]
    assert depths == pytest.approx([1.0, 0.5], abs=0.02)  # saddle heights near the plane
    centre = (30, 30)
    k = t.basin_of(centre)
    assert t.basins[k].birth == pytest.approx(-0.5, abs=1e-9)
    m = topology_metrics(z, np.ones(z.shape, bool), centre)
    assert m["centre_basin_depth"] == pytest.approx(0.5, abs=0.02)
    # its basin: the cells below the saddle level in its component, nothing more
    level = m["centre_basin_level"]
    parts, _ = ndimage.label(z < level, structure=np.ones((3, 3)))  # 8-connected components
    assert m["centre_basin_fraction"] == pytest.approx((parts == parts[centre]).sum() / z.size)
    assert 0 < m["centre_basin_fraction"] < 0.5


def test_ties_and_plateaus_counted_once_and_labelled_after_their_level() -> None:
    """Separable z = g(x) + h(y), worked by hand: minima of g at rows 1 (value 1) and 3 (0)."""
    g = np.array([3.0, 1.0, 2.0, 0.0, 4.0])
    h = np.array([1.0, 0.0, 1.0])
    z = g[:, None] + h[None, :]
    t = sublevel_topology(z)
    assert [(b.index, b.birth, b.death) for b in t.basins] == [((3, 1), 0.0, None), ((1, 1), 1.0, 2.0)]
    # (1,0) and (1,2) are at the saddle's level 2: at that level they join the deeper basin
    assert (t.labels == 1).sum() == 1 and t.labels[1, 1] == 1
    # a flat-bottomed bowl is one minimum; two equal plateaus behind a ridge are two
    X, Y = _grid(21)
    assert len(sublevel_topology(np.maximum(np.hypot(X, Y) - 1.0, 0.0)).basins) == 1
    two = np.where(np.abs(X) < 0.3, 1.0, 0.0)
    t2 = sublevel_topology(two)
    assert [(b.birth, b.death) for b in t2.basins] == [(0.0, None), (0.0, 1.0)]


def test_partial_grid_excluded_cells_connect_nothing() -> None:
    X, Y = _grid(21)
    bowl = (np.abs(X) - 1.0) ** 2 + Y**2  # minima at x = +-1, saddle at x = 0 (value 1)
    whole = sublevel_topology(bowl)
    assert len(whole.basins) == 2 and whole.basins[1].depth == pytest.approx(1.0, abs=1e-12)
    cut = bowl.copy()
    cut[10, :] = np.nan  # a wall of uncomputed points through the saddle
    t = sublevel_topology(cut)
    assert [b.death for b in t.basins] == [None, None]  # two regions, each deepest in its own
    assert (t.labels[10] == -1).all()
    holes = np.ones(bowl.shape, bool)
    holes[::3, ::4] = False  # scattered uncomputed points (one is the minimum at x = 1)
    t = sublevel_topology(bowl, holes)
    assert len(t.basins) == 2 and t.basins[1].depth == pytest.approx(1.0, abs=0.05)
    empty = sublevel_topology(np.full((3, 3), np.nan))  # a net that diverged everywhere
    assert empty.basins == () and (empty.labels == -1).all()
    assert topology_metrics(np.full((3, 3), np.nan), np.ones((3, 3), bool), (1, 1)) == {
        "local_minima": 0, "persistence": []}


def test_topology_line_summarises_in_one_line() -> None:
    X, Y = _grid()
    m = topology_metrics(X**4 - 2 * X**2 + Y**2, np.ones(X.shape, bool), (20, 20))
    line = topology_line(m)
    assert line is not None and "\n" not in line
    assert line.startswith("2 local minima; depths 1 (+1 never dies); centre's basin")
    assert topology_line({"center_train_loss": 1.0}) is None


def test_pairs_match_gudhi_cubical_persistence() -> None:
    """An independent implementation: gudhi's cubical complex of the cells (8-connected)."""
    gudhi = pytest.importorskip("gudhi")
    rng = np.random.default_rng(0)
    for trial in range(5):
        X, Y = _grid(31, 3.0)
        z = 0.05 * (X**2 + Y**2)
        for _ in range(8):
            c, a, w = rng.uniform(-3, 3, 2), rng.uniform(0.2, 2.0), rng.uniform(0.1, 1.0)
            z -= a * np.exp(-((X - c[0]) ** 2 + (Y - c[1]) ** 2) / w)
        if trial == 4:
            z = np.round(z, 1)  # many exact ties
        cc = gudhi.CubicalComplex(top_dimensional_cells=z)
        ref = sorted((b, d) for dim, (b, d) in cc.persistence() if dim == 0 and np.isfinite(d))
        ours = sorted((b.birth, b.death) for b in sublevel_topology(z).basins if b.death is not None)
        assert len(ours) == len(ref)
        np.testing.assert_allclose(np.array(ours).reshape(-1, 2), np.array(ref).reshape(-1, 2), rtol=0, atol=1e-12)


def _double_well_surface() -> Surface:
    x = np.linspace(-2, 2, 21)
    X, Y = np.meshgrid(x, x, indexing="ij")
    z = X**4 - 2 * X**2 + Y**2 + 0.1 * X  # the well at x = +1 is the shallower one
    return Surface("double_well.h5", x, x.copy(), {"train_loss": z}, np.ones(z.shape, bool))


def test_plot_minima_marks_every_minimum_where_it_is() -> None:
    from matplotlib.figure import Figure

    from landscape.render.plotting import plot_contour
    from landscape.render.topology_plot import plot_minima

    s = _double_well_surface()
    ax = Figure().add_subplot()
    plot_contour(s, "train_loss", ax)
    drawn = plot_minima(s, "train_loss", ax)
    np.testing.assert_allclose(drawn["deepest"].get_offsets(), [[-1.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(drawn["minima"].get_offsets(), [[1.0, 0.0]], atol=1e-12)
    depth = sublevel_topology(s.arrays["train_loss"]).basins[1].depth
    assert [t.get_text() for t in drawn["labels"]] == [f"{depth:.2g}"]
    one_d = Surface("line.h5", s.x, None, {"train_loss": s.arrays["train_loss"][:, 10]}, np.ones(21, bool))
    with pytest.raises(LandscapeError, match="1D curve"):
        plot_minima(one_d, "train_loss", ax)
    from landscape.render.plotly_specs import minima_traces  # the report's contour marks them alike

    marks = {t["name"]: t for t in minima_traces(s, "train_loss", s.arrays["train_loss"])}
    assert (marks["deepest minimum (1)"]["x"], marks["deepest minimum (1)"]["y"]) == ([-1.0], [0.0])
    assert (marks["local minima (1)"]["x"], marks["local minima (1)"]["y"]) == ([1.0], [0.0])
    assert marks["local minima (1)"]["text"] == [f"depth {depth:.3g}"]
    assert minima_traces(one_d, "train_loss", one_d.arrays["train_loss"]) == []


def test_surface_info_and_plot_minima_end_to_end(run_cli: RunCli, tiny_ckpt: Path, tmp_path: Path) -> None:
    """A real surface file: its stored topology equals the topology of its stored loss."""
    code, _, err = run_cli("surface", "--ckpt", tiny_ckpt, "--x=-1:1:5", "--y=-1:1:5",
                           "--max-samples", "100", "--out", "s.h5")
    assert code == 0, err
    s = read_surface(tmp_path / "s.h5")
    m = s.metrics
    t = sublevel_topology(s.arrays["train_loss"], s.computed)
    assert m["local_minima"] == len(t.basins) >= 1
    assert m["persistence"] == [[b.birth, b.death] for b in t.basins]
    assert m["centre_basin_fraction"] == pytest.approx(t.area(t.basin_of((2, 2))))
    code, out, err = run_cli("info", "s.h5")
    assert code == 0, err
    line = next(ln for ln in out.splitlines() if "topology:" in ln)
    assert f"{len(t.basins)} local minim" in line and "centre's basin" in line
    assert "persistence" not in out
    code, out, err = run_cli("info", "s.h5", "--json")
    assert code == 0, err
    assert json.loads(out)["metrics"]["persistence"] == m["persistence"]
    code, out, err = run_cli("plot", "s.h5", "--surf", "train_loss", "--kind", "contour", "--minima")
    assert code == 0, err
    assert (tmp_path / "plots" / "s_train_loss_contour.png").stat().st_size > 0
