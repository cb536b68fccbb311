"""Tests of the HDF5 surface file: layout, point placement, resume bookkeeping, readers, paper files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from landscape.core.directions import Directions
from landscape.core.grid import Axis, Grid
from landscape.errors import LandscapeError
from landscape.io.schema import READ_VERSION
from landscape.io.storage import (
    SURFACE_FORMAT,
    SURFACE_VERSION,
    SurfaceWriter,
    create_surface,
    open_surface,
    read_directions,
    read_surface,
    settings_difference,
    update_attrs,
)
from landscape.jobs.info import surface_summary

ARRAYS = ["train_loss", "train_acc", "test_loss", "test_acc"]
SETTINGS = {"grid": {"x": "-1:1:5", "y": "0:0.5:3"}, "directions": {"norm": "filter", "seed": 0}, "bn": "eval"}


def _directions(two_d: bool = True) -> Directions:
    g = torch.Generator().manual_seed(0)
    x = {"fc1.weight": torch.randn(4, 3, generator=g), "fc1.bias": torch.zeros(4),
         "fc2.weight": torch.randn(2, 4, generator=g)}
    y = {k: torch.randn(v.shape, generator=g) for k, v in x.items()} if two_d else None
    return Directions(x, y, seed=0)


def _value(name: str, a: float, b: float = 0.0) -> float:
    """A distinct, recognizable value for each array and point."""
    return {"train_loss": 1.0, "train_acc": 2.0, "test_loss": 3.0, "test_acc": 4.0}[name] * 1000 + 10 * a + b


def _grid() -> Grid:
    return Grid(Axis.parse("-1:1:5"), Axis.parse("0:0.5:3"))


@pytest.fixture
def surface_file(tmp_path: Path) -> Path:
    path = tmp_path / "surf.h5"
    create_surface(path, _grid(), ARRAYS, _directions(), {"model": "mlp", "model_kwargs": {"hidden": 16}}, SETTINGS)
    return path


def _write(path: Path, grid: Grid, flat: list[int], rank: int = 0) -> None:
    coords = grid.coords_of(flat)
    values = {n: np.array([_value(n, *c) for c in coords]) for n in ARRAYS}
    with SurfaceWriter(path) as w:
        w.write_points(np.array(flat), values, seconds=0.5, rank=rank)


# ----------------------------------------------------------------------------- layout


def test_new_file_has_the_v1_layout(surface_file: Path) -> None:
    with h5py.File(surface_file, "r") as f:
        assert f.attrs["format"] == SURFACE_FORMAT and f.attrs["version"] == SURFACE_VERSION == 1
        assert f["xcoordinates"].dtype == np.float64 and f["ycoordinates"].dtype == np.float64
        np.testing.assert_array_equal(f["xcoordinates"][()], np.linspace(-1, 1, 5))
        np.testing.assert_array_equal(f["ycoordinates"][()], np.linspace(0, 0.5, 3))
        for name in ARRAYS:
            assert f[name].shape == (5, 3) and f[name].dtype == np.float64
            assert np.isnan(f[name][()]).all()
        assert f["computed"].dtype == np.uint8 and not f["computed"][()].any()
        d = _directions()
        for axis, tensors in (("x", d.x), ("y", d.y)):
            group = f["directions"][axis]
            assert json.loads(group.attrs["order"]) == list(tensors)
            for key, t in tensors.items():
                assert group[key].dtype == np.float32
                np.testing.assert_array_equal(group[key][()], t.numpy())
        assert json.loads(f.attrs["settings"]) == SETTINGS
        assert f.attrs["x_spec"] == "-1:1:5" and f.attrs["y_spec"] == "0:0.5:3"
        assert f.attrs["model"] == "mlp" and json.loads(f.attrs["model_kwargs"]) == {"hidden": 16}
    leftovers = [p.name for p in surface_file.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_new_file_is_readable_by_others_as_umask_allows(surface_file: Path) -> None:
    """Surface files are shared results: 0666 minus the umask, not mkstemp's private 0600."""
    umask = os.umask(0)
    os.umask(umask)
    assert surface_file.stat().st_mode & 0o777 == 0o666 & ~umask
    update_attrs(surface_file, {"note": "x"})
    assert surface_file.stat().st_mode & 0o777 == 0o666 & ~umask


def test_points_written_in_any_order_land_at_x_i_y_j(surface_file: Path) -> None:
    grid = _grid()
    _write(surface_file, grid, [14, 0, 7], rank=1)
    _write(surface_file, grid, [3, 4, 12], rank=2)
    s = read_surface(surface_file)
    assert s.shape == (5, 3) and s.ndim == 2 and s.done == 6
    done = {0, 3, 4, 7, 12, 14}
    for i in range(5):
        for j in range(3):
            flat = i * 3 + j
            assert s.computed[i, j] == (flat in done)
            for name in ARRAYS:
                if flat in done:
                    assert s.arrays[name][i, j] == _value(name, s.x[i], s.y[j])
                else:
                    assert np.isnan(s.arrays[name][i, j])
    assert s.arrays["point_rank"][4, 2] == 1 and s.arrays["point_rank"][1, 0] == 2
    assert s.arrays["point_rank"][0, 1] == -1
    assert s.arrays["point_seconds"][2, 1] == 0.5
    with SurfaceWriter(surface_file) as w:
        # coarse to fine on the 5x3 grid (x -1..1, y 0..0.5): levels counted from x = 0 (row 2)
        # and y = 0 (column 0); spacing 2 keeps rows 0, 2, 4 and columns 0, 2; spacing 1 adds
        # the rest (rows 1, 3 and column 1), each level in C order
        coarse = [0, 2, 6, 8, 12, 14]
        fine = [1, 3, 4, 5, 7, 9, 10, 11, 13]
        assert w.pending().tolist() == [k for k in coarse + fine if k not in done]


def test_1d_surface(tmp_path: Path) -> None:
    grid = Grid(Axis.parse("-0.5:1.5:9"))
    path = create_surface(tmp_path / "line.h5", grid, ARRAYS, _directions(two_d=False), {}, {"grid": "1d"})
    _write(path, grid, [8, 2])
    s = read_surface(path)
    assert s.y is None and s.shape == (9,) and s.ndim == 1
    assert s.arrays["test_loss"][8] == _value("test_loss", 1.5, 0.0)
    assert s.computed.tolist() == [i in (2, 8) for i in range(9)]
    with h5py.File(path, "r") as f:
        assert "ycoordinates" not in f and "y" not in f["directions"]


def test_diverged_values_are_stored_as_they_are_and_count_as_computed(surface_file: Path) -> None:
    values = {n: np.array([np.inf, np.nan]) for n in ARRAYS}
    with SurfaceWriter(surface_file) as w:
        w.write_points(np.array([5, 9]), values)
        assert 5 not in w.pending() and 9 not in w.pending()
    s = read_surface(surface_file)
    assert s.computed[1, 2] and s.computed[3, 0]
    assert np.isposinf(s.arrays["train_loss"][1, 2]) and np.isnan(s.arrays["train_loss"][3, 0])


def test_values_without_their_flags_are_still_pending(surface_file: Path) -> None:
    """A kill between the value flush and the flag flush loses the chunk, never corrupts it."""
    with h5py.File(surface_file, "r+") as f:
        f["train_loss"][1, 1] = 0.25
    with SurfaceWriter(surface_file) as w:
        assert 4 in w.pending()
    assert not read_surface(surface_file).computed[1, 1]


_READER = """
import sys
from landscape.io.storage import read_surface
s = read_surface(sys.argv[1])
print(s.done, float(s.arrays["train_loss"][4, 2]))
"""


def test_another_process_reads_the_file_while_a_writer_holds_it_open(surface_file: Path) -> None:
    grid = _grid()
    w = SurfaceWriter(surface_file)
    try:
        for chunk, done in (([14], 1), ([0, 1, 2], 4)):
            coords = grid.coords_of(chunk)
            w.write_points(np.array(chunk), {n: np.array([_value(n, *c) for c in coords]) for n in ARRAYS})
            out = subprocess.run(
                [sys.executable, "-c", _READER, str(surface_file)],
                capture_output=True, text=True, timeout=60,
            )
            assert out.returncode == 0, out.stderr
            n, value = out.stdout.split()
            assert int(n) == done and float(value) == _value("train_loss", 1.0, 0.5)
    finally:
        w.close()


# ----------------------------------------------------------------------------- settings, attrs


def test_settings_difference_names_the_setting() -> None:
    assert settings_difference(SETTINGS, json.loads(json.dumps(SETTINGS))) is None
    other = {**SETTINGS, "directions": {"norm": "layer", "seed": 0}}
    diff = settings_difference(SETTINGS, other)
    assert diff == "directions.norm: file has 'filter', this run asks 'layer'"
    assert "grid.x" in settings_difference(SETTINGS, {**SETTINGS, "grid": {"x": "-1:1:7", "y": "0:0.5:3"}})
    assert "bn" in settings_difference(SETTINGS, {k: v for k, v in SETTINGS.items() if k != "bn"})


def test_open_surface_refuses_other_settings_and_leaves_the_file_alone(surface_file: Path) -> None:
    open_surface(surface_file, json.loads(json.dumps(SETTINGS)))
    before = surface_file.read_bytes()
    with pytest.raises(LandscapeError) as e:
        open_surface(surface_file, {**SETTINGS, "directions": {"norm": "filter", "seed": 1}})
    assert "directions.seed" in str(e.value) and "--force" in str(e.value) and "\n" not in str(e.value)
    assert surface_file.read_bytes() == before


def test_update_attrs_keeps_the_data_and_appends_runs(surface_file: Path) -> None:
    _write(surface_file, _grid(), [0, 1])
    update_attrs(surface_file, {"plan": {"strategy": "vmap"}}, append_run={"points": 2})
    update_attrs(surface_file, {"metrics": {"a": 1.0}}, append_run={"points": 3})
    s = read_surface(surface_file)
    assert s.done == 2 and s.attrs["plan"] == {"strategy": "vmap"} and s.metrics == {"a": 1.0}
    assert [r["points"] for r in s.attrs["runs"]] == [2, 3]
    assert [p.name for p in surface_file.parent.iterdir()] == [surface_file.name]


def test_summary_counts_points_done(surface_file: Path) -> None:
    _write(surface_file, _grid(), [0, 1, 2, 3])
    info = surface_summary(surface_file)
    assert info["points done"] == "4/15 (26.7%)"
    assert info["grid"] == "5x3 (2D)" and info["model"] == "mlp"
    assert set(info["arrays"].split(", ")) == set(ARRAYS)


# ----------------------------------------------------------------------------- readers


def test_read_directions_returns_tensors_by_key(surface_file: Path) -> None:
    x, y, meta = read_directions(surface_file)
    d = _directions()
    assert list(x) == list(d.x) and list(y) == list(d.y)
    for k in d.x:
        assert torch.equal(x[k], d.x[k]) and torch.equal(y[k], d.y[k])


def _paper_surface(path: Path, xs: np.ndarray, ys: np.ndarray | None, filled: dict[int, float]) -> None:
    """What the paper's code writes: -1 everywhere, points flattened in meshgrid (y-major) order."""
    shape = (len(xs),) if ys is None else (len(xs), len(ys))
    with h5py.File(path, "w") as f:
        f["dir_file"] = "model_300.t7_weights_xignore=biasbn_xnorm=filter.h5"
        f["xcoordinates"] = xs
        if ys is not None:
            f["ycoordinates"] = ys
        for name, offset in (("train_loss", 0.0), ("train_acc", 100.0)):
            arr = -np.ones(shape)
            for flat, v in filled.items():
                arr.ravel()[flat] = v + offset
            f[name] = arr


def test_paper_surface_file_is_read_into_x_i_y_j(tmp_path: Path) -> None:
    xs, ys = np.linspace(-1, 1, 4), np.linspace(0, 2, 3)
    # the paper's index `ind` is a position in ravel(meshgrid(x, y)): x = xs[ind % nx], y = ys[ind // nx]
    mesh_x, mesh_y = np.meshgrid(xs, ys)
    flat_x, flat_y = mesh_x.ravel(), mesh_y.ravel()
    filled = {ind: 10 * flat_x[ind] + flat_y[ind] + 50 for ind in (0, 1, 5, 6, 11)}
    path = tmp_path / "paper.h5"
    _paper_surface(path, xs, ys, filled)
    s = read_surface(path)
    assert s.source == "paper" and s.shape == (4, 3) and s.done == 5
    for i in range(4):
        for j in range(3):
            ind = j * 4 + i
            assert s.computed[i, j] == (ind in filled)
            if ind in filled:
                assert s.arrays["train_loss"][i, j] == pytest.approx(10 * xs[i] + ys[j] + 50)
                assert s.arrays["train_acc"][i, j] == pytest.approx(10 * xs[i] + ys[j] + 150)
            else:
                assert np.isnan(s.arrays["train_loss"][i, j])
    assert "model_300" in s.attrs["dir_file"]
    assert surface_summary(path)["points done"] == "5/12 (41.7%)"


def test_paper_1d_surface_file(tmp_path: Path) -> None:
    xs = np.linspace(-0.5, 1.5, 5)
    path = tmp_path / "paper1d.h5"
    _paper_surface(path, xs, None, {0: 1.0, 3: 2.0})
    s = read_surface(path)
    assert s.ndim == 1 and s.computed.tolist() == [True, False, False, True, False]
    assert s.arrays["train_loss"][3] == 2.0


def test_paper_direction_file_is_read_in_order(tmp_path: Path) -> None:
    d = _directions()
    path = tmp_path / "dirs.h5"
    with h5py.File(path, "w") as f:
        for group, tensors in (("xdirection", d.x), ("ydirection", d.y)):
            g = f.create_group(group)
            for i, t in enumerate(tensors.values()):
                g[str(i)] = t.numpy()
    x, y, meta = read_directions(path)
    assert isinstance(x, list) and len(x) == len(d.x)
    for got, want in zip(x, d.x.values()):
        assert torch.equal(got, want)
    for got, want in zip(y, d.y.values()):
        assert torch.equal(got, want)


def test_unreadable_files_give_one_line(tmp_path: Path, surface_file: Path) -> None:
    cases = []
    cases.append((tmp_path / "missing.h5", "does not exist"))
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    cases.append((text, "not a readable HDF5"))
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["weights"] = np.zeros(3)
    cases.append((other, "no 'xcoordinates'"))
    newer = tmp_path / "newer.h5"
    newer.write_bytes(surface_file.read_bytes())
    with h5py.File(newer, "r+") as f:
        f.attrs["version"] = READ_VERSION + 1
    cases.append((newer, f"schema version {READ_VERSION + 1}"))
    for path, fragment in cases:
        with pytest.raises(LandscapeError) as e:
            read_surface(path)
        assert fragment in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(LandscapeError, match="holds no directions"):
        read_directions(other)
