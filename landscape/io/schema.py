"""Validation of surface files against schema v1, before anything in them is used.

A surface file may come from anyone (a colleague, a paper's artifact, a damaged disk), so every
reader checks its structure from the HDF5 metadata alone, before reading or allocating:

- `xcoordinates` (and `ycoordinates` for 2D): 1-D, real numbers, finite and increasing, with
  at most `MAX_GRID_POINTS` grid points in all;
- every other root dataset: real numbers (not strings, not compound), the grid's shape
  ([nx] or [nx, ny]; 3-D arrays are refused);
- the whole file, every group at every depth (`check_self_contained`, also run on direction
  files): no soft or external link, no virtual dataset, no external storage, no filter plugin;
- landscape's own files (`format` = landscape-surface): a numeric `version` this code reads,
  a `computed` dataset, and JSON attributes (`settings`, `runs`, `metrics`, ...) that parse
  to the expected type;
- a file of frames through training (version 2, `landscape.jobs.frames`): a `frames` group whose
  datasets are real arrays [n_frames, *grid] stored in this file, `n_frames` the length of
  the `frames` attribute, `frames/computed` among them. Files of version 1 read as before.

Each problem raises one `LandscapeError` naming the file, what is wrong and what to do.

Example:
    >>> import h5py
    >>> with h5py.File("surfaces/resnet20.h5", "r") as f:  # doctest: +SKIP
    ...     layout = validate_surface(f, "surfaces/resnet20.h5")  # "landscape" or "paper"
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..core.grid import MAX_GRID_POINTS
from ..core.loss_surface import SURFACE_FORMAT, SURFACE_VERSION
from ..errors import LandscapeError
from ..system.text import printable

__all__ = [
    "MAX_GRID_POINTS",
    "MAX_ATTR_ELEMENTS",
    "SURFACE_FORMAT",
    "SURFACE_VERSION",
    "FRAMES_VERSION",
    "READ_VERSION",
    "BOOKKEEPING",
    "JSON_ATTRS",
    "validate_surface",
    "check_self_contained",
    "validate_attrs",
    "check_replaceable",
    "damaged",
    "h5_errors",
]

FRAMES_VERSION = 2  # a file holding frames through training (landscape.jobs.frames); also read: 1
READ_VERSION = FRAMES_VERSION  # the newest version this code reads
MAX_ATTR_ELEMENTS = 4096  # landscape stores scalars and JSON text; a larger array is not ours
BOOKKEEPING = ("computed", "point_seconds", "point_rank")
COORDINATES = ("xcoordinates", "ycoordinates")
# attributes landscape stores as JSON, and the type each must parse to
JSON_ATTRS: dict[str, type] = {
    "settings": dict,
    "runs": list,
    "metrics": dict,
    "dataset": dict,
    "directions": dict,
    "model_kwargs": dict,
    "checkpoint_metrics": dict,
    "plan": dict,
    "splits": list,
    "hessian": dict,
    "frames": list,
    "frames_config": dict,
}
_FIX = "the file is damaged or was not written by landscape; recompute it (landscape surface --force) or restore a copy"


def damaged(path: str | Path, what: str, fix: str = _FIX) -> LandscapeError:
    """The one-line error for a file that breaks the schema: `<path>: <what> (<fix>)`."""
    return LandscapeError(f"{printable(str(path))}: {printable(what)} ({fix})")


# h5py reports damaged structures through several exception types
_H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, OverflowError, RecursionError)


@contextlib.contextmanager
def h5_errors(path: str | Path, doing: str = "reading it") -> Iterator[None]:
    """Turn an h5py error raised inside the block into one line naming the file."""
    try:
        yield
    except LandscapeError:
        raise
    except _H5_ERRORS as e:
        text = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise damaged(path, f"HDF5 error while {doing}: {text}") from None


def validate_surface(f: Any, path: str | Path) -> str:
    """Check an open h5py file against the surface schema; return 'landscape' or 'paper'.

    Reads only metadata (shapes, dtypes, attributes), so a file declaring a huge array is
    refused before anything is allocated. Raises `LandscapeError` on the first problem.
    """
    with h5_errors(path, "checking its structure"):
        check_self_contained(f, path)
        if "xcoordinates" not in f or not _is_dataset(f["xcoordinates"]):
            names = ", ".join(printable(k) for k in list(f.keys())[:6]) or "none"
            raise LandscapeError(
                f"{printable(str(path))} is not a surface file (no 'xcoordinates' dataset; "
                f"datasets: {names}); give a file written by `landscape surface` or the paper's code"
            )
        shape = _grid_shape(f, path)
        ours = _format_of(f) == SURFACE_FORMAT
        if ours:
            _check_version(f, path)
            validate_attrs(f.attrs, path)
            if "computed" not in f:
                raise damaged(path, "has no 'computed' dataset (which points are done)")
        for name in f:
            if name in COORDINATES:
                continue
            obj = f[name]
            if _is_dataset(obj):
                _check_array(obj, name, shape, path, strict=ours or name in BOOKKEEPING)
            elif ours and name == "trajectory":
                _check_trajectory(obj, path)
            elif ours and name == "frames":
                _check_frames(f, obj, shape, path)
        return "landscape" if ours else "paper"


def validate_attrs(attrs: Any, path: str | Path) -> None:
    """Attribute sizes are bounded and landscape's JSON attributes parse to the expected type."""
    for name in attrs:
        aid = attrs.get_id(name)
        if aid.shape is not None and math.prod(aid.shape) > MAX_ATTR_ELEMENTS:
            raise damaged(path, f"attribute {name!r} holds {math.prod(aid.shape)} values")
        if aid.dtype.kind not in "biufSOUa":
            raise damaged(path, f"attribute {name!r} has unsupported type {aid.dtype}")
    for name, kind in JSON_ATTRS.items():
        if name not in attrs:
            continue
        value = attrs[name]
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if not isinstance(value, str):
            raise damaged(path, f"attribute {name!r} is not JSON text (found {type(value).__name__})")
        if value == "null":
            continue
        try:
            parsed = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            raise damaged(path, f"attribute {name!r} is not valid JSON: {value[:40]!r}") from None
        if not isinstance(parsed, kind):
            raise damaged(path, f"attribute {name!r} should be a JSON {kind.__name__}, found {type(parsed).__name__}")
        if name == "runs" and not all(isinstance(r, dict) for r in parsed):
            raise damaged(path, "attribute 'runs' should be a list of JSON objects")


def _is_dataset(obj: Any) -> bool:
    return hasattr(obj, "dtype") and hasattr(obj, "shape")


# A file may hold many groups, but a walk of a file whose links form a cycle or an exponential
# tree of hard links must end: beyond these limits the file is refused, not walked further.
MAX_OBJECTS = 100_000
MAX_DEPTH = 32
# HDF5's own filters (deflate, shuffle, fletcher32, szip, nbit, scaleoffset) and h5py's lzf; any
# other id would make the HDF5 library look for a plugin library to load
_KNOWN_FILTERS = frozenset({1, 2, 3, 4, 5, 6, 32000})
_SELF_CONTAINED = "a landscape file must hold all its own data: recompute it, or copy the data into it"


def check_self_contained(f: Any, path: str | Path) -> None:
    """Refuse a file that is not wholly its own: any soft or external link, virtual dataset,
    dataset with external storage or unknown filter, at any depth, names its path in the file.

    Walks every group from link information alone (`H5Lget_info`): no link is followed, no
    dataset read, so nothing outside the file is ever opened. Every reader of surface and
    direction files calls this first (through `validate_surface` or `read_directions`).

    Example:
        >>> with h5py.File("surfaces/resnet20.h5", "r") as f:  # doctest: +SKIP
        ...     check_self_contained(f, "surfaces/resnet20.h5")
    """
    with h5_errors(path, "checking its structure"):
        _walk(f.id, "", path, 0, [0])


def _walk(gid: Any, prefix: str, path: str | Path, depth: int, count: list[int]) -> None:
    from h5py import h5l, h5o

    if depth > MAX_DEPTH:
        raise damaged(path, f"groups are nested deeper than {MAX_DEPTH} levels at {prefix!r}", _SELF_CONTAINED)
    for raw in gid:
        count[0] += 1
        if count[0] > MAX_OBJECTS:
            raise damaged(path, f"holds more than {MAX_OBJECTS} objects (or links that loop)", _SELF_CONTAINED)
        name = f"{prefix}/{raw.decode('utf-8', 'replace')}"
        kind = gid.links.get_info(raw).type
        if kind == h5l.TYPE_EXTERNAL:
            raise damaged(path, f"{name!r} is a link to another file", _SELF_CONTAINED)
        if kind == h5l.TYPE_SOFT:
            raise damaged(path, f"{name!r} is a soft link (landscape files hold no links)", _SELF_CONTAINED)
        if kind != h5l.TYPE_HARD:
            raise damaged(path, f"{name!r} is a link of an unknown kind ({kind})", _SELF_CONTAINED)
        obj = h5o.open(gid, raw)
        otype = h5o.get_info(obj).type
        if otype == h5o.TYPE_GROUP:
            _walk(obj, name, path, depth + 1, count)
        elif otype == h5o.TYPE_DATASET:
            _check_storage(obj, name, path)
        else:
            raise damaged(path, f"{name!r} is neither a group nor a dataset", _SELF_CONTAINED)


def _check_storage(dsid: Any, name: str, path: str | Path) -> None:
    from h5py import h5d

    dcpl = dsid.get_create_plist()
    if dcpl.get_layout() == h5d.VIRTUAL:
        raise damaged(path, f"dataset {name!r} is virtual (its data lie in other files)", _SELF_CONTAINED)
    if dcpl.get_external_count() > 0:
        raise damaged(path, f"dataset {name!r} keeps its data in another file (external storage)", _SELF_CONTAINED)
    for k in range(dcpl.get_nfilters()):
        code = dcpl.get_filter(k)[0]
        if code not in _KNOWN_FILTERS:
            raise damaged(path, f"dataset {name!r} needs HDF5 filter {code}, a plugin landscape does not load",
                          _SELF_CONTAINED)


def check_replaceable(path: Path) -> None:
    """Refuse (one line) to replace an HDF5 file that is not a landscape surface file (`--force`
    over a Keras weights file, a paper surface, a data set): only the format attribute
    (`landscape-surface`) makes a file ours. A damaged file whose attributes cannot be read is
    ours only when its bytes hold that name."""
    import h5py

    from .outputs import file_kind
    from .probe import probe

    if file_kind(Path(path)) != "hdf5":
        return  # nothing there, an empty file, or another kind (`check_output` refuses that)

    def read(p: Path) -> None:
        with h5_errors(p, "reading its format"), h5py.File(p, "r", locking=False) as f:
            found = _format_of(f)
        if found != SURFACE_FORMAT:
            raise LandscapeError(refusal)

    refusal = (f"{printable(str(path))} is an HDF5 file but not a landscape surface file; it is left "
               "alone (--force replaces only surface files): choose another --out")
    try:
        probe(path, read)  # a file that crashes the HDF5 library is judged in a child
        read(path)
    except LandscapeError as e:
        if str(e) == refusal or not _names_our_format(path):
            raise LandscapeError(refusal) from None


def _names_our_format(path: Path) -> bool:
    """Whether the bytes of `path` hold the format name (a damaged surface file still does)."""
    import mmap

    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return m.find(SURFACE_FORMAT.encode()) >= 0
    except (OSError, ValueError):
        return False


def _format_of(f: Any) -> str | None:
    value = f.attrs.get("format")
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else None


def _check_version(f: Any, path: str | Path) -> None:
    if "version" not in f.attrs:
        raise damaged(path, "has no 'version' attribute (surface schema version)")
    value = f.attrs["version"]
    number = value.item() if isinstance(value, np.generic) else value
    if isinstance(number, (bool, np.bool_)) or not isinstance(number, (int, float)):
        raise damaged(path, f"schema version {number!r} is not a number")
    if not math.isfinite(number) or number != int(number) or number < 1:
        raise damaged(path, f"schema version {number!r} is not a positive whole number")
    if number > READ_VERSION:
        raise LandscapeError(
            f"{printable(str(path))} has surface schema version {int(number)}; this landscape reads "
            f"up to {READ_VERSION} (upgrade: pip install -U nn-landscape)"
        )


def _grid_shape(f: Any, path: str | Path) -> tuple[int, ...]:
    """[nx] or [nx, ny] from the coordinates, checked before the coordinates are read."""
    shape = []
    for name in COORDINATES:
        if name not in f:
            break
        ds = f[name]
        if not _is_dataset(ds) or len(ds.shape) != 1:
            raise damaged(path, f"{name!r} must be a 1-D dataset, found shape {getattr(ds, 'shape', None)}")
        if ds.dtype.kind not in "fiu":
            raise damaged(path, f"{name!r} must hold real numbers, found dtype {ds.dtype}")
        n = int(ds.shape[0])
        if n < 1:
            raise damaged(path, f"{name!r} is empty")
        shape.append(n)
    points = math.prod(shape)
    if points > MAX_GRID_POINTS:
        raise LandscapeError(
            f"{printable(str(path))} declares a {'x'.join(map(str, shape))} grid ({points} points); "
            f"landscape reads at most {MAX_GRID_POINTS} points per surface (refused before "
            "allocating; split such a surface into several files)"
        )
    for name in COORDINATES[: len(shape)]:
        coords = np.asarray(f[name][()], dtype=np.float64)
        if not np.isfinite(coords).all():
            raise damaged(path, f"{name!r} holds non-finite coordinates")
        if len(coords) > 1 and not (np.diff(coords) > 0).all():
            raise damaged(path, f"{name!r} must increase from MIN to MAX")
    return tuple(shape)


def _check_array(ds: Any, name: str, shape: tuple[int, ...], path: str | Path, strict: bool) -> None:
    """A result or bookkeeping array: real numbers, 1-D or 2-D, the grid's shape (`strict`,
    landscape's files). The paper's layout may store a result flattened, so there its size must
    match; its other datasets (the `dir_file` string) are left alone, their sizes bounded."""
    points = math.prod(shape)
    dims = tuple(ds.shape or ())
    size = math.prod(dims)
    is_result = name.endswith(("_loss", "_acc")) or name in ("max_eig", "min_eig")
    if not (strict or is_result):
        if size > max(points, 1_000_000):
            raise damaged(path, f"dataset {name!r} declares {size} values for a {points}-point grid")
        return
    if len(dims) not in (1, 2):
        raise damaged(path, f"dataset {name!r} is {len(dims)}-D; surface arrays are 1-D or 2-D")
    if ds.dtype.kind not in "fiub":
        raise damaged(path, f"dataset {name!r} must hold real numbers, found dtype {ds.dtype}")
    if dims != shape and (strict or size != points):
        raise damaged(path, f"dataset {name!r} has shape {dims} but the coordinates give {shape}")


def _check_trajectory(group: Any, path: str | Path) -> None:
    if not hasattr(group, "keys"):
        raise damaged(path, "'trajectory' must be a group")
    for key in group:
        ds = group[key]
        if not _is_dataset(ds) or len(ds.shape or ()) != 1 or ds.dtype.kind not in "fiu":
            raise damaged(path, f"trajectory/{key} must be a 1-D array of numbers")
        if ds.shape[0] > MAX_GRID_POINTS:
            raise damaged(path, f"trajectory/{key} declares {ds.shape[0]} values")


def _check_frames(f: Any, group: Any, shape: tuple[int, ...], path: str | Path) -> None:
    """The `frames` group: [n_frames, *grid] arrays of this file, n_frames from the attribute."""
    if not hasattr(group, "keys"):
        raise damaged(path, "'frames' must be a group")
    meta = json.loads(f.attrs["frames"]) if "frames" in f.attrs else None
    if not isinstance(meta, list) or len(meta) < 1 or not all(isinstance(m, dict) for m in meta):
        raise damaged(path, "has a 'frames' group but no 'frames' attribute (a JSON list, one object per frame)")
    if "computed" not in group:
        raise damaged(path, "has no 'frames/computed' dataset (which points of each frame are done)")
    if len(meta) * math.prod(shape) > MAX_GRID_POINTS:
        raise damaged(path, f"declares {len(meta)} frames of {math.prod(shape)} points, over {MAX_GRID_POINTS}")
    for key in group:
        ds = group[key]
        if not _is_dataset(ds) or ds.dtype.kind not in "fiub":
            raise damaged(path, f"frames/{key} must be an array of numbers")
        if tuple(ds.shape or ()) != (len(meta), *shape):
            raise damaged(path, f"frames/{key} has shape {tuple(ds.shape or ())}; {len(meta)} frames of "
                                f"the coordinates' grid give {(len(meta), *shape)}")
