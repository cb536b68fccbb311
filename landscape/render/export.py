"""Export a 2D surface as a VTK PolyData file (`.vtp`, ASCII XML) for ParaView.

The surface becomes nx*ny points (x, y, z) and (nx-1)*(ny-1) quads; point j*nx + i lies at
(x[i], y[j]), so any grid shape works (the paper's converter assumed a square one). Cells
touching a point that is not computed yet are left out; every array of the file is attached
as point data, so ParaView can colour by test loss or accuracy too.

Example:
    >>> from landscape.io.storage import read_surface
    >>> export_vtp(read_surface("surfaces/resnet20.h5"), "plots/resnet20_train_loss.vtp", zmax=10)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import LandscapeError
from ..io.outputs import atomic_write, check_output
from .views import available_surfs, surface_values

if TYPE_CHECKING:  # the value type draws itself through these modules: no import at run time
    from ..core.loss_surface import Surface

__all__ = ["export_vtp", "vtp_text", "default_vtp_path"]


def _numbers(values: np.ndarray, per_line: int) -> str:
    flat = np.asarray(values).ravel()
    if flat.dtype.kind in "iu":
        items = [str(int(v)) for v in flat]
    else:
        items = [repr(float(v)) if np.isfinite(v) else "nan" for v in flat]
    rows = (" ".join(items[k : k + per_line]) for k in range(0, len(items), per_line))
    return "\n".join("          " + r for r in rows)


def vtp_text(surface: Surface, surf: str = "train_loss", zmax: float | None = None, log: bool = False) -> str:
    """The `.vtp` document: z is `surf` clipped at `zmax`, then ln(z + 0.1) with `log`.

    `log` uses ln(z + 0.1), the transform of the paper's converter, so a zero loss stays finite.
    """
    if surface.y is None:
        raise LandscapeError(f"{surface.path} is a 1D curve; --vtp needs a 2D surface")
    z = surface_values(surface, surf, zmax)  # [nx, ny], NaN where not computed
    if log:
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.log(z + 0.1)
    nx, ny = len(surface.x), len(surface.y)
    X, Y = np.meshgrid(surface.x, surface.y, indexing="ij")
    # VTK point order: x fastest, so point id = j * nx + i; transpose [nx, ny] -> [ny, nx].
    valid = np.isfinite(z).T.ravel()
    zt = np.where(np.isfinite(z), z, 0.0).T.ravel()
    points = np.column_stack([X.T.ravel(), Y.T.ravel(), zt])
    ii, jj = np.meshgrid(np.arange(nx - 1), np.arange(ny - 1), indexing="xy")  # [ny-1, nx-1]
    p0 = (jj * nx + ii).ravel()
    quads = np.column_stack([p0, p0 + 1, p0 + 1 + nx, p0 + nx])  # counter-clockwise
    quads = quads[valid[quads].all(axis=1)]
    offsets = 4 * np.arange(1, len(quads) + 1)
    point_data = []
    names = [surf] + [n for n in available_surfs(surface) if n != surf and n in surface.arrays]
    for name in names:
        raw = np.where(surface.computed, surface.arrays[name], np.nan) if name in surface.arrays else z
        point_data.append(
            f'        <DataArray type="Float64" Name="{name}" format="ascii">\n'
            f"{_numbers(np.asarray(raw, dtype=np.float64).T.ravel(), 6)}\n"
            "        </DataArray>"
        )
    point_data.append(
        '        <DataArray type="UInt8" Name="computed" format="ascii">\n'
        f"{_numbers(valid.astype(np.int64), 30)}\n"
        "        </DataArray>"
    )
    zname = ("ln(z+0.1) of " if log else "") + surf
    return "\n".join(
        [
            '<?xml version="1.0"?>',
            '<VTKFile type="PolyData" version="1.0" byte_order="LittleEndian">',
            "  <PolyData>",
            f'    <Piece NumberOfPoints="{nx * ny}" NumberOfVerts="0" NumberOfLines="0" '
            f'NumberOfStrips="0" NumberOfPolys="{len(quads)}">',
            f'      <PointData Scalars="{surf}">',
            *point_data,
            "      </PointData>",
            "      <Points>",
            f'        <DataArray type="Float64" Name="points (x, y, {zname})" '
            'NumberOfComponents="3" format="ascii">',
            _numbers(points, 3),
            "        </DataArray>",
            "      </Points>",
            "      <Polys>",
            '        <DataArray type="Int64" Name="connectivity" format="ascii">',
            _numbers(quads, 4),
            "        </DataArray>",
            '        <DataArray type="Int64" Name="offsets" format="ascii">',
            _numbers(offsets, 16),
            "        </DataArray>",
            "      </Polys>",
            "    </Piece>",
            "  </PolyData>",
            "</VTKFile>",
            "",
        ]
    )


def default_vtp_path(surface: Surface, surf: str, out_dir: str | Path = "plots", log: bool = False) -> Path:
    """`<out_dir>/<surface file stem>_<surf>[_log].vtp`."""
    return Path(out_dir) / f"{Path(surface.path).stem}_{surf}{'_log' if log else ''}.vtp"


def export_vtp(
    surface: Surface, path: str | Path, surf: str = "train_loss", zmax: float | None = None, log: bool = False
) -> Path:
    """Write `vtp_text(...)` to `path`; return the path."""
    path = Path(path)
    check_output(path, "vtp")
    text = vtp_text(surface, surf, zmax, log)
    with atomic_write(path, "write VTK file", make_folder=True) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return path
