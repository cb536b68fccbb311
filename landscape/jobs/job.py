"""A surface job: one immutable value that says what to evaluate, where, how, and what to record.

Every entry point (`landscape surface`, `scripts/surface.py` under mpirun, the Python API and
the demo) resolves its inputs into values (a model, data splits, directions, a grid) and calls
`build_job`, the one place that writes the file's `settings` (what a resume must match) and
metadata. A job is frozen: resuming from a file or adding a curvature map returns a new job
(`dataclasses.replace`), so a step never changes what another step sees.

The parts:
- `Target`: what to evaluate (the model, its data splits, the loss and metric, BatchNorm mode);
- `Plane`: the directions and the grid of coordinates along them;
- `Engine`: device, precision and the evaluation engine's knobs, the progress bar;
- `Record`: the file (`out`, `force`), its settings, attributes and PCA trajectory.

Example:
    >>> job = build_job(target, Plane(directions, grid), Engine(torch.device("cpu")),
    ...                 provenance, out="surfaces/mine.h5")
    >>> job.settings["weights_sha256"] == provenance.model["weights_sha256"]
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._version import __version__
from ..core.directions import Directions
from ..core.grid import Grid
from ..engine.losses import result_names

__all__ = [
    "Target",
    "Plane",
    "Engine",
    "Record",
    "Provenance",
    "SurfaceJob",
    "build_job",
    "model_meta",
    "weights_sha256",
    "tensor_bytes",
    "sample_counts",
    "legacy_settings",
    "pack_directions",
    "unpack_directions",
]

# direction metadata that is not a setting a resume must match: floats of an iterative solver,
# long lists, and `source` (--dirs as typed; `dirs_file` holds the resolved path)
_NOT_SETTINGS = (
    "explained_variance", "singular_values", "source", "eigenvalues", "residuals", "lanczos_iterations",
    "run_explained_variance_ratio",
)


@dataclass(frozen=True, eq=False)
class Target:
    """What to evaluate: the model (at the centre), named data splits, loss, metric, BatchNorm.

    Each split is `(X, y)` tensors, `(dict or tuple of tensors, y)`, or a DataLoader. `bn_data`
    holds the inputs BatchNorm statistics are re-estimated on when `bn_mode` is `recompute`.
    """

    model: nn.Module
    splits: Mapping[str, Any]
    loss: Any = "cross_entropy"  # a name, a callable or an import path (see losses.resolve_loss)
    metric: Any = "accuracy"  # "accuracy", a callable, or None
    bn_mode: str = "eval"
    bn_data: Any = None


@dataclass(frozen=True, eq=False)
class Plane:
    """The directions and the grid of coordinates along them (a line when the grid is 1D)."""

    directions: Directions
    grid: Grid


@dataclass(frozen=True)
class Engine:
    """How to evaluate: device, precision, the engine's knobs (None: chosen), curvature maps."""

    device: torch.device
    precision: str = "fp32"
    strategy: str | None = None
    points_per_pass: int | None = None
    batch_size: int | None = None
    compile: str = "auto"
    curvature: bool = False  # also store max_eig / min_eig maps (landscape.jobs.curvature)
    quiet: bool = False  # no progress bar, no final line
    trial: str = "auto"  # time candidate plans on the first points: auto, on, off (landscape.engine.trial)


@dataclass(frozen=True, eq=False)
class Record:
    """The surface file: its path (None: in memory), settings, attributes, PCA trajectory."""

    out: Path | None
    settings: Mapping[str, Any] = field(default_factory=dict)
    attrs: Mapping[str, Any] = field(default_factory=dict)
    trajectory: Mapping[str, Any] | None = None
    force: bool = False


@dataclass(frozen=True)
class Provenance:
    """Where the inputs came from, as the file records it.

    `model`: attributes describing the model (`model_meta`); `data`: the data set's metadata;
    `data_key`: what a resume must match about the data; `sources`: the files directions were
    made from (checksums), recorded with the direction settings.
    """

    model: Mapping[str, Any]
    data: Mapping[str, Any]
    data_key: Mapping[str, Any]
    sources: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class SurfaceJob:
    """A resolved surface computation (see the module docstring)."""

    target: Target
    plane: Plane
    engine: Engine
    record: Record

    # short names for what most steps read
    @property
    def model(self) -> nn.Module:
        return self.target.model

    @property
    def splits(self) -> Mapping[str, Any]:
        return self.target.splits

    @property
    def directions(self) -> Directions:
        return self.plane.directions

    @property
    def grid(self) -> Grid:
        return self.plane.grid

    @property
    def device(self) -> torch.device:
        return self.engine.device

    @property
    def out(self) -> Path | None:
        return self.record.out

    @property
    def settings(self) -> Mapping[str, Any]:
        return self.record.settings

    @property
    def array_names(self) -> list[str]:
        names = result_names(self.target.splits, self.target.metric is not None)
        if self.engine.curvature:
            names += ["max_eig", "min_eig"]
        return names

    def with_directions(self, directions: Directions) -> SurfaceJob:
        """The same job along other directions (the ones stored in a file being resumed)."""
        return replace(self, plane=replace(self.plane, directions=directions))

    def restarted(self) -> SurfaceJob:
        """The same job, replacing an existing file instead of resuming it (`--force`)."""
        return replace(self, record=replace(self.record, force=True))

    def quietly(self) -> SurfaceJob:
        """The same job without progress bar or final line (an MPI worker's)."""
        return replace(self, engine=replace(self.engine, quiet=True))


def build_job(
    target: Target,
    plane: Plane,
    engine: Engine,
    provenance: Provenance,
    *,
    out: str | Path | None = None,
    loss_name: str | None = None,
    metric_name: str | None = None,
    trajectory: Mapping[str, Any] | None = None,
    force: bool = False,
) -> SurfaceJob:
    """The one job builder: the parts, plus the settings and metadata every file records.

    `loss_name` / `metric_name` describe the loss and metric when they are callables (default:
    the strings given). The keys are the same whatever the entry point.
    """
    loss_name = loss_name if loss_name is not None else str(target.loss)
    if metric_name is None and target.metric is not None:
        metric_name = str(target.metric)
    d, grid = plane.directions, plane.grid
    settings = {
        "grid": {"x": grid.x.spec(), "y": grid.y.spec() if grid.y else None},
        "model": provenance.model.get("model"),
        "model_kwargs": dict(provenance.model.get("model_kwargs") or {}),
        "weights_sha256": provenance.model.get("weights_sha256"),
        "data": dict(provenance.data_key),
        "splits": list(target.splits),
        "directions": {
            **{k: v for k, v in d.meta().items() if k not in _NOT_SETTINGS},
            **provenance.sources,
        },
        "bn": target.bn_mode,
        "precision": engine.precision,
        "loss": loss_name,
        "metric": metric_name,
        "curvature": bool(engine.curvature),
    }
    attrs = {
        "software": f"landscape {__version__}",
        "torch_version": torch.__version__,
        **provenance.model,
        "dataset": dict(provenance.data),
        "splits": list(target.splits),
        **{f"n_{s}": n for s, n in sample_counts(target.splits).items()},
        "dir_kind": d.kind,
        "dir_type": d.dir_type,
        "norm": d.norm,
        "ignore": d.ignore,
        "seed": -1 if d.seed is None else d.seed,
        "directions": d.meta(),
        "bn": target.bn_mode,
        "precision": engine.precision,
        "loss": loss_name,
        "metric": metric_name,
    }
    record = Record(Path(out) if out is not None else None, settings, attrs, trajectory, force)
    return SurfaceJob(target, plane, engine, record)


def legacy_settings(stored: Mapping[str, Any], wanted: Mapping[str, Any], attrs: Mapping[str, Any]) -> dict[str, Any]:
    """`wanted` in the key set of a file written before the settings were unified.

    Files of `landscape surface` recorded `checkpoint_sha256` (of the checkpoint file) where
    all files now record `weights_sha256`, and no `metric`; files of the Python API recorded no
    `model_kwargs` or `curvature`. Those keys then keep their implied values: the metric
    follows the loss, and the API had neither model arguments nor curvature maps.
    """
    out = dict(wanted)
    if "weights_sha256" not in stored and "checkpoint_sha256" in stored:
        out.pop("weights_sha256", None)
        out["checkpoint_sha256"] = attrs.get("checkpoint_sha256")
    for key in ("metric", "model_kwargs", "curvature"):
        if key not in stored:
            out.pop(key, None)
    return out


def model_meta(net: nn.Module, name: str, source: str, **extra: Any) -> dict[str, Any]:
    """Attributes describing a model: name, class, where it came from, size, weights hash."""
    return {
        "model": name,
        "model_class": getattr(net, "original_name", None) or type(net).__name__,
        "model_source": source,
        "n_parameters": int(sum(p.numel() for p in net.parameters())),
        "weights_sha256": weights_sha256(net),
        **extra,
    }


def weights_sha256(net: nn.Module) -> str:
    """Fingerprint of a model's state (keys, shapes, dtypes, bytes): a resumed file must match."""
    h = hashlib.sha256()
    for key, t in net.state_dict().items():
        h.update(f"{key}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(tensor_bytes(t))
    return h.hexdigest()


def tensor_bytes(t: torch.Tensor) -> bytes:
    """The raw bytes of a tensor (on the CPU, contiguous; bool as uint8)."""
    flat = t.detach().cpu().contiguous().reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    return flat.view(torch.uint8).numpy().tobytes()


def sample_counts(splits: Mapping[str, Any]) -> dict[str, int]:
    """Samples per split (-1 for a DataLoader over a dataset without a length)."""
    counts = {}
    for name, value in splits.items():
        if isinstance(value, torch.utils.data.DataLoader):
            dataset = value.dataset
            counts[name] = len(dataset) if hasattr(dataset, "__len__") else -1
        else:  # (inputs, targets)
            counts[name] = int(len(value[1]))
    return counts


def _pack_tensors(d: Mapping[str, torch.Tensor] | None) -> dict[str, Any] | None:
    if d is None:
        return None
    out = {}
    for k, v in d.items():
        v = v.detach().cpu()
        try:
            out[k] = v.numpy()
        except TypeError:  # a dtype numpy lacks (bfloat16): send the tensor itself
            out[k] = v
    return out


def _unpack_tensors(d: Mapping[str, Any] | None) -> dict[str, torch.Tensor] | None:
    if d is None:
        return None
    return {k: torch.from_numpy(np.array(v)) if isinstance(v, np.ndarray) else v for k, v in d.items()}


def pack_directions(d: Directions) -> dict[str, Any]:
    """Directions as plain arrays and metadata (what rank 0 sends the other MPI ranks)."""
    meta = {k: getattr(d, k) for k in ("kind", "dir_type", "norm", "ignore", "seed", "extra")}
    return {"x": _pack_tensors(d.x), "y": _pack_tensors(d.y), "meta": meta}


def unpack_directions(p: Mapping[str, Any]) -> Directions:
    """The inverse of `pack_directions`."""
    x = _unpack_tensors(p["x"])
    assert x is not None
    return Directions(x, _unpack_tensors(p["y"]), **p["meta"])
