"""`landscape export --vtp`: VTK PolyData structure for non-square grids, clipping, log, gaps."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from test_plotting import bowl, make_surface, write_paper_surface

from landscape.errors import LandscapeError
from landscape.io.storage import read_surface
from landscape.render.export import export_vtp


def _parse(path: Path) -> dict[str, object]:
    root = ET.parse(path).getroot()
    assert root.tag == "VTKFile" and root.get("type") == "PolyData"
    piece = root.find("PolyData/Piece")
    arrays = {}
    for da in piece.iter("DataArray"):
        kind = int if da.get("type").startswith(("Int", "UInt")) else float
        arrays[da.get("Name")] = np.array([kind(v) for v in da.text.split()])
    return {
        "points": int(piece.get("NumberOfPoints")),
        "polys": int(piece.get("NumberOfPolys")),
        "xyz": next(v for k, v in arrays.items() if k.startswith("points")).reshape(-1, 3),
        "conn": arrays["connectivity"].reshape(-1, 4),
        "offsets": arrays["offsets"],
        "arrays": arrays,
    }


def test_vtp_of_a_non_square_grid(tmp_path: Path) -> None:
    s = read_surface(make_surface(tmp_path / "bowl.h5", nx=21, ny=15))
    vtp = _parse(export_vtp(s, tmp_path / "b.vtp"))
    assert vtp["points"] == 21 * 15 == len(vtp["xyz"])
    assert vtp["polys"] == 20 * 14 == len(vtp["conn"])
    np.testing.assert_array_equal(vtp["offsets"], 4 * np.arange(1, 20 * 14 + 1))
    xyz = vtp["xyz"]
    np.testing.assert_allclose(xyz[:, 2], bowl(xyz[:, 0], xyz[:, 1]), rtol=1e-12)
    assert sorted(set(np.round(xyz[:, 0], 9))) == pytest.approx(s.x) and len(set(np.round(xyz[:, 1], 9))) == 15
    # each quad is one grid cell: corners adjacent in x and y, cell size equal to the grid step
    c = xyz[vtp["conn"]]  # [polys, 4, 3]
    dx, dy = s.x[1] - s.x[0], s.y[1] - s.y[0]
    np.testing.assert_allclose(c[:, 1, 0] - c[:, 0, 0], dx)
    np.testing.assert_allclose(c[:, 3, 1] - c[:, 0, 1], dy)
    np.testing.assert_allclose(c[:, 2, :2] - c[:, 0, :2], np.tile([dx, dy], (len(c), 1)))
    assert len({tuple(sorted(q)) for q in vtp["conn"].tolist()}) == 20 * 14  # all distinct
    np.testing.assert_allclose(vtp["arrays"]["test_loss"], 1.3 * xyz[:, 2] + 0.05, rtol=1e-12)


def test_vtp_zmax_log_and_missing_points(tmp_path: Path) -> None:
    s = read_surface(make_surface(tmp_path / "bowl.h5", nx=9, ny=5, scale=10.0))
    raw = _parse(export_vtp(s, tmp_path / "raw.vtp"))["xyz"][:, 2]
    clipped = _parse(export_vtp(s, tmp_path / "clip.vtp", zmax=5.0))["xyz"][:, 2]
    np.testing.assert_allclose(clipped, np.minimum(raw, 5.0))
    logged = _parse(export_vtp(s, tmp_path / "log.vtp", zmax=5.0, log=True))["xyz"][:, 2]
    np.testing.assert_allclose(logged, np.log(np.minimum(raw, 5.0) + 0.1))
    half = read_surface(make_surface(tmp_path / "half.h5", nx=9, ny=5, done=20))  # x rows 0..3
    vtp = _parse(export_vtp(half, tmp_path / "half.vtp"))
    assert vtp["points"] == 45 and vtp["polys"] == 3 * 4  # only cells whose 4 corners exist
    assert vtp["arrays"]["computed"].sum() == 20


def test_vtp_of_a_paper_file_and_bad_input(tmp_path: Path) -> None:
    x, y = write_paper_surface(tmp_path / "paper.h5", nx=13, ny=9, missing=0)
    vtp = _parse(export_vtp(read_surface(tmp_path / "paper.h5"), tmp_path / "p.vtp"))
    assert (vtp["points"], vtp["polys"]) == (13 * 9, 12 * 8)
    np.testing.assert_allclose(vtp["xyz"][:, 2], bowl(vtp["xyz"][:, 0], vtp["xyz"][:, 1]))
    with pytest.raises(LandscapeError, match="1D curve; --vtp needs a 2D surface"):
        export_vtp(read_surface(make_surface(tmp_path / "line.h5", ny=None)), tmp_path / "l.vtp")


def test_export_command(run_cli, tmp_path: Path) -> None:  # noqa: ANN001
    f = make_surface(tmp_path / "resnet20.h5", nx=7, ny=5)
    code, out, err = run_cli("export", f, "--vtp", "--zmax", "2", "--log")
    assert code == 0, err
    assert out.strip() == "plots/resnet20_train_loss_log.vtp"
    assert _parse(tmp_path / out.strip())["polys"] == 24
    code, out, err = run_cli("export", f)
    assert code != 0 and "--vtp" in err and len(err.strip().splitlines()) == 1
