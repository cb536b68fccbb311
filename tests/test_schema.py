"""Schema v1 validation of surface files, bounds on sizes, and text printed from files."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from landscape.cli import main
from landscape.core.directions import Directions
from landscape.core.grid import MAX_GRID_POINTS, Axis, Grid
from landscape.errors import LandscapeError
from landscape.io.storage import (
    SurfaceWriter,
    create_surface,
    open_surface,
    planned_size,
    read_surface,
)
from landscape.jobs.info import surface_summary
from landscape.jobs.runner import estimate_line, plan_line
from landscape.system.text import printable

ARRAYS = ["train_loss", "train_acc"]
SETTINGS = {"grid": {"x": "-1:1:4", "y": "0:1:3"}}


@pytest.fixture
def surface_file(tmp_path: Path) -> Path:
    path = tmp_path / "ok.h5"
    grid = Grid(Axis.parse("-1:1:4"), Axis.parse("0:1:3", "y"))
    d = {"w": torch.arange(3.0)}
    create_surface(path, grid, ARRAYS, Directions(d, dict(d), seed=0), {"model": "mlp"}, SETTINGS)
    with SurfaceWriter(path) as w:
        w.write_points(np.arange(12), {k: np.arange(12.0) for k in ARRAYS}, 0.1)
    return path


def _h5(change: Callable[[h5py.File], None]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        with h5py.File(path, "r+") as f:
            change(f)

    return damage


def _swap(name: str, **kwargs: object) -> Callable[[Path], None]:
    def change(f: h5py.File) -> None:
        del f[name]
        f.create_dataset(name, **kwargs)

    return _h5(change)


def _attr(name: str, value: object) -> Callable[[Path], None]:
    return _h5(lambda f: f.attrs.__setitem__(name, value))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:3000])


def _break_object_header(path: Path) -> None:
    """Overwrite the object header of `computed` (found by its address) with garbage."""
    with h5py.File(path, "r") as f:
        address = h5py.h5o.get_info(f["computed"].id).addr
    data = bytearray(path.read_bytes())
    data[address : address + 64] = b"\xa5" * 64
    path.write_bytes(bytes(data))


CASES = [
    ("broken-object-header", _break_object_header, "HDF5 error"),
    ("truncated", _truncate, "not a readable HDF5 surface file"),
    ("no-computed", _h5(lambda f: f.__delitem__("computed")), "no 'computed' dataset"),
    ("bad-json", _attr("settings", "{oops"), "'settings' is not valid JSON"),
    ("json-wrong-type", _attr("runs", '{"a": 1}'), "'runs' should be a JSON list"),
    ("version-text", _attr("version", "one"), "schema version 'one' is not a number"),
    ("version-newer", _attr("version", 7), "schema version 7; this landscape reads up to 2"),
    ("shape-mismatch", _swap("train_loss", data=np.zeros((3, 4))), "shape (3, 4) but the coordinates give (4, 3)"),
    ("string-array", _swap("train_acc", data=np.array([[b"x"] * 3] * 4)), "must hold real numbers"),
    ("3d-array", _swap("train_acc", data=np.zeros((4, 3, 2))), "is 3-D; surface arrays are 1-D or 2-D"),
    ("huge-declared", _swap("xcoordinates", shape=(10**9,), dtype="f8", chunks=(4096,)),
     f"at most {MAX_GRID_POINTS} points"),
    ("external-link", _h5(lambda f: (f.__delitem__("train_acc"), f.__setitem__(
        "train_acc", h5py.ExternalLink("other.h5", "/x")))), "link to another file"),
]


@pytest.mark.parametrize(("name", "damage", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_damaged_file_gives_one_line_in_every_reader(
    name: str, damage: Callable[[Path], None], fragment: str, surface_file: Path,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    damage(surface_file)
    before = surface_file.read_bytes()
    for read in (read_surface, surface_summary, lambda p: open_surface(p, SETTINGS)):
        with pytest.raises(LandscapeError) as e:
            read(surface_file)
        assert fragment in str(e.value) and "\n" not in str(e.value) and str(surface_file) in str(e.value)
    assert main(["info", str(surface_file)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err
    assert surface_file.read_bytes() == before


def test_the_check_reads_no_array_it_refuses(surface_file: Path) -> None:
    """A declared 10^9-point axis is refused from its shape: reading it would take 8 GB."""
    _swap("xcoordinates", shape=(10**9,), dtype="f8", chunks=(4096,))(surface_file)
    assert surface_file.stat().st_size < 100_000
    with pytest.raises(LandscapeError, match="refused before allocating"):
        read_surface(surface_file)


def test_a_valid_file_and_the_papers_layout_pass(surface_file: Path, tmp_path: Path) -> None:
    s = read_surface(surface_file)
    assert s.done == 12 and s.arrays["train_loss"][3, 2] == 11.0  # values exact
    paper = tmp_path / "paper.h5"
    with h5py.File(paper, "w") as f:
        f["xcoordinates"] = np.linspace(-1, 1, 3)
        f["ycoordinates"] = np.linspace(-1, 1, 2)
        f["train_loss"] = np.arange(6.0).reshape(3, 2)
        f["dir_file"] = "dirs.h5"
    assert read_surface(paper).source == "paper"


def test_grids_beyond_the_bound_are_refused_before_allocating(
    tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(LandscapeError, match=f"more than the {MAX_GRID_POINTS}"):
        Axis.parse("-1:1:100000000")
    with pytest.raises(LandscapeError, match="25000000 points"):
        Grid(Axis.parse("-1:1:5000"), Axis.parse("-1:1:5000", "y"))
    out = tmp_path / "big.h5"
    rc = main(["surface", "--ckpt", str(tiny_ckpt), "--x=-1:1:100000000", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "10000000" in err and not out.exists()


def test_plan_and_estimate_lines() -> None:
    grid = Grid(Axis.parse("-1:1:1001"), Axis.parse("-1:1:1001", "y"))
    d = Directions({"w": torch.zeros(1000)}, {"w": torch.zeros(1000)})
    line = plan_line(grid, planned_size(grid, 4, d))
    # 1002001 points x (4 arrays x 8 + 11 bytes) + 2 directions x 1000 float32 + 1 MiB of headers
    assert line == "planned: 1,002,001 points (1001x1001 grid), surface file about 44.1 MB"
    assert estimate_line(99_999_000, 1 / 143).startswith("estimate: about 8.1 days for 99,999,000 points")


def test_printable_escapes_controls_only() -> None:
    assert printable("résumé · λ 1.0") == "résumé · λ 1.0"
    assert printable("a\x1b[31mb\r\n\u202ec\x00") == "a\\x1b[31mb\\x0d\\n\\u202ec\\x00"


def test_hostile_dataset_names_are_escaped_in_errors(
    surface_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "t.h5"
    shutil.copyfile(surface_file, target)
    with h5py.File(target, "r+") as f:
        f["\x1b[2Jevil_loss"] = np.zeros((4, 3, 2))
    assert main(["info", str(target)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b[2Jevil_loss" in err
