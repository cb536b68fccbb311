"""The surface file: a versioned HDF5 schema (v1) that is safe to resume and to read while written.

Layout (a superset of the paper code's, so that its readers keep working):

- `xcoordinates` float64 [nx] and, for 2D, `ycoordinates` [ny];
- per split s: `s_loss`, `s_acc` float64 [nx] or [nx, ny], value [i, j] at (x[i], y[j]), NaN until
  computed; optional curvature maps `max_eig`, `min_eig`;
- `computed` uint8 (1 where a point is done: a diverged point is a real result, never "missing"),
  `point_seconds` float64 (evaluation time per point) and `point_rank` int16 (who computed it);
- groups `directions/x`, `directions/y`: one float32 dataset per state-dict key;
- optional group `trajectory` (projected PCA path and the loss along it);
- optional group `frames` (version 2: every frame through training, `landscape.jobs.frames`);
- root attributes: format, version, provenance, settings, plans, run timings, scalar metrics.

Safety: a file is created whole in a temporary file and renamed into place. Every dataset is
allocated at creation, so results are written in place as raw data, values before their
`computed` flags, flushed per chunk: a process killed at any moment leaves a file that opens and
resumes. Attributes are only changed by copy-and-rename. Files are opened without HDF5 file
locks, so another process can read (and plot) a surface while it is being computed.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.grid import Grid, axis_anchor, coarse_to_fine
from ..core.loss_surface import Surface, base_attrs
from ..errors import LandscapeError
from ..system.text import printable
from .outputs import atomic_write, check_free_space, check_output, os_reason, output_error
from .probe import probe
from .schema import (
    BOOKKEEPING,
    SURFACE_FORMAT,
    SURFACE_VERSION,
    check_replaceable,
    check_self_contained,
    damaged,
    h5_errors,
    validate_surface,
)

__all__ = [
    "SURFACE_FORMAT",
    "SURFACE_VERSION",
    "Surface",
    "SurfaceWriter",
    "create_surface",
    "open_surface",
    "read_surface",
    "read_directions",
    "update_attrs",
    "settings_difference",
    "atomic_write",
]

def _h5():
    import h5py

    return h5py


def _open(path: str | Path, mode: str):
    """Open without HDF5 file locks (a reader may look at a file that is being written)."""
    h5py = _h5()
    try:
        return h5py.File(path, mode, locking=False)
    except FileNotFoundError:
        raise LandscapeError(f"{printable(str(path))} does not exist") from None
    except IsADirectoryError:
        raise LandscapeError(f"{printable(str(path))} is a folder; give a surface file (.h5)") from None
    except OSError as e:
        raise LandscapeError(
            f"{printable(str(path))} is not a readable HDF5 surface file ({_first_line(e)}); it is "
            "truncated, damaged or of another kind: recompute it or restore a copy"
        ) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)


def _attr_value(value: Any) -> Any:
    """Store dicts and lists as JSON strings, scalars as they are."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=_json_default)
    if value is None:
        return "null"
    if isinstance(value, str):
        return str(value)  # plain str (h5py refuses str subclasses such as torch's version)
    return value


def _read_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str) and value[:1] in "[{" or value == "null":
        try:
            return json.loads(value)
        except (json.JSONDecodeError, TypeError, RecursionError):
            return value
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---------------------------------------------------------------------------------------------
# reading


def read_surface(path: str | Path) -> Surface:
    """Read a landscape surface file (schema v1) or one written by the paper's code.

    The file is validated first (`landscape.io.schema.validate_surface`); a damaged or hand-made
    file raises one `LandscapeError` naming the problem, never an h5py error.
    """
    path = Path(path)
    if not path.exists():
        raise LandscapeError(f"{printable(str(path))} does not exist")
    probe(path, _read_checked)  # a file that crashes or hangs HDF5 is refused, in one line
    return _read_checked(path)


def _read_checked(path: Path) -> Surface:
    with _open(path, "r") as f:
        layout = validate_surface(f, path)
        with h5_errors(path):
            return _read_ours(f, path) if layout == "landscape" else _read_paper(f, path)


def _read_ours(f: Any, path: Path) -> Surface:
    x = f["xcoordinates"][()]
    y = f["ycoordinates"][()] if "ycoordinates" in f else None
    arrays = {
        k: f[k][()]
        for k in f.keys()
        if k not in ("xcoordinates", "ycoordinates", *BOOKKEEPING) and not hasattr(f[k], "keys")
    }
    computed = f["computed"][()].astype(bool)
    for k in ("point_seconds", "point_rank"):
        if k in f:
            arrays[k] = f[k][()]
    attrs = {k: _read_attr(v) for k, v in f.attrs.items()}
    traj = None
    if "trajectory" in f:
        traj = {k: f["trajectory"][k][()] for k in f["trajectory"].keys()}
    frames = {k: f["frames"][k][()] for k in f["frames"].keys()} if "frames" in f else None
    return Surface(str(path), x, y, arrays, computed, attrs, traj, frames=frames)


def _read_paper(f: Any, path: Path) -> Surface:
    """The paper's layout: -1 for missing, points flattened in meshgrid (y-major) order."""
    x = f["xcoordinates"][()]
    y = f["ycoordinates"][()] if "ycoordinates" in f else None
    arrays: dict[str, np.ndarray] = {}
    computed = None
    for k in f.keys():
        if k in ("xcoordinates", "ycoordinates") or hasattr(f[k], "keys") or f[k].dtype.kind not in "fiu":
            continue  # e.g. the paper's `dir_file` string
        v = np.asarray(f[k][()], dtype=np.float64)
        if v.dtype.kind not in "fi" or v.size != (len(x) * (len(y) if y is not None else 1)):
            continue
        if y is not None:
            v = v.ravel().reshape(len(y), len(x)).T.copy()  # paper: flat = j * nx + i
        missing = v == -1 if k != "min_eig" else v == 1
        v = np.where(missing, np.nan, v)
        arrays[k] = v
        if k.endswith("_loss"):
            computed = ~missing if computed is None else computed | ~missing
    if not arrays:
        raise LandscapeError(f"{path} has coordinates but no loss or accuracy arrays")
    if computed is None:
        computed = np.isfinite(next(iter(arrays.values())))
    dir_file = f["dir_file"][()] if "dir_file" in f and not hasattr(f["dir_file"], "keys") else ""
    attrs = {"format": "paper", "dir_file": _read_attr(dir_file)}
    return Surface(str(path), x, y, arrays, computed, attrs, None, source="paper")


def _read_direction_group(group: Any, path: Path) -> dict[str, Any]:
    import torch

    order = _read_attr(group.attrs.get("order", "null"))
    if not isinstance(order, list) or not all(isinstance(k, str) and k in group for k in order):
        raise damaged(path, f"direction group {group.name!r} has no valid 'order' attribute")
    tensors = {}
    for k in order:
        ds = group[k]
        if not hasattr(ds, "dtype") or ds.dtype.kind != "f":
            raise damaged(path, f"direction {group.name}/{k} must be an array of floats")
        tensors[k] = torch.from_numpy(np.asarray(ds[()]))
    return tensors


def _read_paper_direction(f: Any, name: str, path: Path) -> list[Any]:
    """The paper's `xdirection`/`ydirection` group: float datasets named 0, 1, ... in order."""
    import torch

    group = f[name]
    if not hasattr(group, "keys"):
        raise damaged(path, f"{name!r} must be a group of direction tensors")
    tensors = []
    for i in range(len(group)):
        ds = group.get(str(i))
        if ds is None or not hasattr(ds, "dtype") or ds.dtype.kind != "f":
            raise damaged(path, f"{name}/{i} must be an array of floats (the paper's layout: 0, 1, ...)")
        tensors.append(torch.from_numpy(np.asarray(ds[()])))
    return tensors


def read_directions(path: str | Path) -> tuple[Any, Any, dict[str, Any]]:
    """Direction tensors from a surface file (by key) or a paper direction file (by order).

    Returns (x, y or None, metadata). x and y are dicts (ours) or lists (the paper's).
    """
    path = Path(path)
    probe(path, _read_directions)
    return _read_directions(path)


def _read_directions(path: Path) -> tuple[Any, Any, dict[str, Any]]:
    with h5_errors(path, "reading its directions"):
        return _read_directions_unchecked(path)


def _read_directions_unchecked(path: Path) -> tuple[Any, Any, dict[str, Any]]:
    with _open(path, "r") as f:
        check_self_contained(f, path)  # before any data is read: nothing from another file
        if "directions" in f and "x" in f["directions"]:
            g = f["directions"]
            x = _read_direction_group(g["x"], path)
            y = _read_direction_group(g["y"], path) if "y" in g else None
            attrs = {k: _read_attr(v) for k, v in f.attrs.items()}
            meta = {
                "kind": attrs.get("dir_kind", "file"),
                "dir_type": attrs.get("dir_type"),
                "norm": attrs.get("norm"),
                "ignore": attrs.get("ignore"),
                "seed": attrs.get("seed"),
            }
            return x, y, meta
        if "xdirection" in f:
            x = _read_paper_direction(f, "xdirection", path)
            y = _read_paper_direction(f, "ydirection", path) if "ydirection" in f else None
            meta = {"kind": "file"}
            if "explained_variance_ratio_" in f:
                meta["explained_variance_ratio"] = f["explained_variance_ratio_"][()].tolist()
            return x, y, meta
    raise LandscapeError(
        f"{printable(str(path))} holds no directions (expected a landscape surface file with a "
        "'directions' group, or a direction file of the paper's code with 'xdirection')"
    )


# ---------------------------------------------------------------------------------------------
# writing


def settings_difference(stored: Mapping[str, Any], wanted: Mapping[str, Any], prefix: str = "") -> str | None:
    """Name the first setting that differs, as `name: stored vs wanted`, or None."""
    for key in sorted(set(stored) | set(wanted)):
        a, b = stored.get(key, "<unset>"), wanted.get(key, "<unset>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            diff = settings_difference(a, b, f"{prefix}{key}.")
            if diff:
                return diff
        elif _jsonable(a) != _jsonable(b):
            return f"{prefix}{key}: file has {a!r}, this run asks {b!r}"
    return None


def create_surface(
    path: str | Path,
    grid: Grid,
    arrays: Sequence[str],
    directions: Any,
    attrs: Mapping[str, Any],
    settings: Mapping[str, Any],
    trajectory: Mapping[str, Any] | None = None,
) -> Path:
    """Write a new, empty surface file atomically (temporary file, then rename).

    Refuses (one line) a path holding another kind of file, and a disk without room for the
    whole file: every array is allocated here, so later writes never need more space.
    """
    h5py = _h5()
    path = Path(path)
    check_output(path, "hdf5")
    check_replaceable(path)  # --force: only over a surface file, never another HDF5 file
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(e, "create folder", path.parent) from None
    check_free_space(path.parent, planned_size(grid, len(arrays), directions, trajectory), f"surface file {path}")
    # Built in memory, then written with plain file I/O: a full disk is then an ordinary OSError,
    # while HDF5 failing a write half-way through creating a file can crash the process.
    image = io.BytesIO()
    with h5py.File(image, "w", locking=False) as f:
        f.create_dataset("xcoordinates", data=grid.x.coords())
        if grid.y is not None:
            f.create_dataset("ycoordinates", data=grid.y.coords())
        for name in arrays:
            f.create_dataset(name, data=np.full(grid.shape, np.nan, dtype=np.float64))
        f.create_dataset("computed", data=np.zeros(grid.shape, dtype=np.uint8))
        f.create_dataset("point_seconds", data=np.full(grid.shape, np.nan, dtype=np.float64))
        f.create_dataset("point_rank", data=np.full(grid.shape, -1, dtype=np.int16))
        g = f.create_group("directions")
        for axis, d in (("x", directions.x), ("y", directions.y)):
            if d is None:
                continue
            sub = g.create_group(axis)
            sub.attrs["order"] = json.dumps(list(d))
            for key, t in d.items():
                sub.create_dataset(key, data=t.detach().cpu().float().numpy())
        if trajectory is not None:
            t = f.create_group("trajectory")
            for key, value in trajectory.items():
                if value is not None:
                    t.create_dataset(key, data=np.asarray(value))
        created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        base = {**base_attrs(grid, settings), "created": created, "runs": []}
        for key, value in {**base, **attrs}.items():
            f.attrs[key] = _attr_value(value)
        f.flush()
    _write_bytes(path, image.getbuffer(), "write surface file")
    return path


def planned_size(grid: Grid, n_arrays: int, directions: Any, trajectory: Mapping[str, Any] | None = None) -> int:
    """Bytes a new surface file will take (arrays, bookkeeping, directions, a margin)."""
    points = grid.num_points
    per_point = 8 * n_arrays + 1 + 8 + 2  # float64 arrays, computed, point_seconds, point_rank
    dirs = sum(
        int(t.numel()) * 4 for d in (directions.x, directions.y) if d is not None for t in d.values()
    )
    traj = sum(np.asarray(v).nbytes for v in (trajectory or {}).values() if v is not None)
    return points * per_point + dirs + traj + (1 << 20)  # 1 MiB for HDF5 headers and attributes


def open_surface(path: str | Path, settings: Mapping[str, Any]) -> None:
    """Check that an existing file was made with the same settings; raise naming the difference."""
    path = Path(path)
    probe(path, _resumable_settings)
    stored = _resumable_settings(path)
    diff = settings_difference(stored, settings)
    if diff:
        raise LandscapeError(
            f"{path} was computed with other settings ({diff}); use another --out, or --force "
            "to start afresh"
        )


def _resumable_settings(path: Path) -> Any:
    """The settings a resume must match, from a file checked against the schema."""
    with _open(path, "r") as f:
        if _read_attr(f.attrs.get("format", "")) != SURFACE_FORMAT:
            raise LandscapeError(
                f"{printable(str(path))} exists and is not a landscape surface file; choose "
                "another --out (or --force to replace it)"
            )
        validate_surface(f, path)  # a damaged file is named before a run writes into it
        with h5_errors(path):
            stored = _read_attr(f.attrs.get("settings", "{}"))
            if "directions" not in f or "x" not in f["directions"]:
                raise damaged(path, "has no 'directions/x' group to resume with")
    if not isinstance(stored, Mapping):
        raise damaged(path, "its 'settings' attribute is not a JSON object")
    return stored


class SurfaceWriter:
    """Appends computed points to an existing surface file, chunk by chunk (one writer)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.f = _open(self.path, "r+")
        self.shape = self.f["computed"].shape

    def pending(self) -> np.ndarray:
        """Flat indices of the points not yet computed, coarse to fine from the centre
        (`Grid.order`, levels anchored at each axis's zero coordinate):
        every rank, and a resumed run, takes them in this order, so the file holds complete
        levels (full-range previews) as early as possible."""
        anchors = tuple(axis_anchor(self.f[k][()]) for k in ("xcoordinates", "ycoordinates")[: len(self.shape)])
        order = coarse_to_fine(self.shape, anchors)
        return order[self.f["computed"][()].ravel()[order] == 0]

    def write_points(
        self,
        flat: np.ndarray,
        values: Mapping[str, np.ndarray],
        seconds: np.ndarray | float | None = None,
        rank: int = 0,
    ) -> None:
        """Write one chunk: values first, flushed, then their `computed` flags, flushed."""
        flat = np.asarray(flat, dtype=np.int64)
        if not len(flat):
            return
        try:
            self._write_points(flat, values, seconds, rank)
        except OSError as e:
            raise LandscapeError(
                f"cannot write results to {self.path}: {os_reason(e)}; every point stored before "
                "is kept: rerun the same command to resume"
            ) from None

    def _write_points(
        self, flat: np.ndarray, values: Mapping[str, np.ndarray], seconds: np.ndarray | float | None, rank: int
    ) -> None:
        idx = np.unravel_index(flat, self.shape)
        for name, vals in values.items():
            if name not in self.f:
                raise LandscapeError(f"{self.path} has no dataset {name!r} to store results in")
            self._put(name, idx, np.asarray(vals, dtype=self.f[name].dtype))
        if seconds is not None:
            self._put("point_seconds", idx, np.broadcast_to(np.asarray(seconds, dtype=np.float64), flat.shape))
        self._put("point_rank", idx, np.full(flat.shape, rank, dtype=np.int16))
        self.f.flush()
        self._put("computed", idx, np.ones(flat.shape, dtype=np.uint8))
        self.f.flush()

    def _put(self, name: str, idx: tuple[np.ndarray, ...], vals: np.ndarray) -> None:
        """Write `vals` at exactly these points (an HDF5 point selection): a coarse-to-fine chunk
        is spread over the whole grid, and rewriting its bounding box would rewrite whole arrays
        (measured side by side on a busy 2-core machine: 3-10x the time for 2,000 points of a
        1001x1001 grid, and every byte of the arrays dirtied)."""
        from h5py import h5s

        ds = self.f[name]
        points = np.stack([np.asarray(i, dtype=np.uint64) for i in idx], axis=1)  # [k, ndim]
        space = ds.id.get_space()
        space.select_elements(points)
        ds.id.write(h5s.create_simple((len(points),)), space, np.ascontiguousarray(vals, dtype=ds.dtype).reshape(-1))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.f.close()

    def __enter__(self) -> SurfaceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def update_attrs(path: str | Path, attrs: Mapping[str, Any], append_run: Mapping[str, Any] | None = None) -> None:
    """Change root attributes by copy-and-rename, so a crash never damages the file."""
    h5py = _h5()
    path = Path(path)
    check_free_space(path.parent, path.stat().st_size + (1 << 20), f"updating {path} (a copy is made)")
    image = io.BytesIO(path.read_bytes())  # edited in memory: see create_surface
    with h5py.File(image, "r+", locking=False) as f:
        for key, value in attrs.items():
            f.attrs[key] = _attr_value(value)
        if append_run is not None:
            runs = _read_attr(f.attrs.get("runs", "[]")) or []
            runs.append(dict(append_run))
            f.attrs["runs"] = _attr_value(runs)
    _write_bytes(path, image.getbuffer(), "update", keep_mode=True)


def _write_bytes(path: Path, data: Any, doing: str, keep_mode: bool = False) -> None:
    """Write `data` (bytes-like) to `path` atomically, synced to disk before the rename."""
    with atomic_write(path, doing, keep_mode=keep_mode) as tmp, open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
