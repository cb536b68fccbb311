"""Directions around a checkpoint: random (filter-normalized), interpolation, PCA, from a file.

A direction is a dict from state-dict key to a tensor of the same shape. `weights` directions
cover the model's parameters; `states` directions cover every floating state entry (BatchNorm
running mean and variance included, `num_batches_tracked` excluded).

Normalization follows Li et al. (2018) exactly: for a tensor with 2+ dims, `filter` scales each
slice along dim 0 (a conv output channel, or an FC output row) to the norm of the matching
slice of the weights, d_i <- d_i * ||w_i|| / (||d_i|| + 1e-10); `layer` scales the whole tensor;
`weight` multiplies elementwise. Tensors with 1 dim (biases, BatchNorm) are zeroed under
`ignore=biasbn` and, as in the paper, set to the weights themselves under `ignore=none`.

Tied tensors (GPT-2's `lm_head.weight` is `transformer.wte.weight`) are one tensor under two
state-dict keys: a direction covers it once, under the first key (`tied_keys` names the others),
and records the tie in `extra["tied"]`.

Example:
    >>> d = random_directions(model, seed=1)           # filter-normalized, biasbn ignored, 2D
    >>> d.x["conv1.weight"].shape == model.conv1.weight.shape
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import LandscapeError
from ..system.seeds import check_seed

__all__ = [
    "DIR_TYPES",
    "NORMS",
    "IGNORES",
    "Directions",
    "direction_keys",
    "tied_keys",
    "random_direction",
    "normalize_direction",
    "random_directions",
    "interpolation_directions",
    "pca_directions",
    "run_variance_ratios",
    "directions_from_tensors",
    "point_state",
    "point_weights",
    "filter_norms",
]

DIR_TYPES = ("weights", "states")
NORMS = ("filter", "layer", "weight", "none")
IGNORES = ("biasbn", "none")
Tensors = dict[str, torch.Tensor]


@dataclass
class Directions:
    """The x (and, for a plane, y) direction, and how they were made."""

    x: Tensors
    y: Tensors | None = None
    kind: str = "random"  # random | interpolate | plane | pca | file | hessian
    dir_type: str = "weights"
    norm: str = "filter"
    ignore: str = "biasbn"
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    trajectory: dict[str, Any] | None = None  # PCA: projected coordinates of the snapshots

    @property
    def ndim(self) -> int:
        return 1 if self.y is None else 2

    def keys(self) -> list[str]:
        return list(self.x)

    def meta(self) -> dict[str, Any]:
        """Plain metadata (no tensors) recorded in the surface file."""
        meta = {
            "kind": self.kind,
            "dir_type": self.dir_type,
            "norm": self.norm,
            "ignore": self.ignore,
            "seed": -1 if self.seed is None else int(self.seed),
        }
        meta.update(self.extra)
        return meta

    def to(self, device: torch.device | str) -> Directions:
        move = lambda d: None if d is None else {k: v.to(device) for k, v in d.items()}  # noqa: E731
        return Directions(
            move(self.x), move(self.y), self.kind, self.dir_type, self.norm, self.ignore,
            self.seed, dict(self.extra), self.trajectory,
        )


def _check_choice(value: str, choices: Sequence[str], option: str) -> None:
    if value not in choices:
        raise LandscapeError(f"{option} {value!r} is not one of {', '.join(choices)}")


def tied_keys(model: nn.Module) -> dict[str, str]:
    """State-dict keys that name a tensor an earlier key already names: {alias: first key}.

    Example:
        >>> tied_keys(gpt2)                                     # doctest: +SKIP
        {'lm_head.weight': 'transformer.wte.weight'}
    """
    first: dict[tuple[Any, ...], str] = {}
    tied: dict[str, str] = {}
    for k, v in model.state_dict(keep_vars=True).items():
        if not isinstance(v, torch.Tensor) or v.numel() == 0 or v.device.type == "meta":
            continue
        key = (v.data_ptr(), v.dtype, tuple(v.shape), v.stride())
        if key in first:
            tied[k] = first[key]
        else:
            first[key] = k
    return tied


def direction_keys(model: nn.Module, dir_type: str = "weights") -> list[str]:
    """State-dict keys that a direction covers, in model order (a tied tensor once)."""
    _check_choice(dir_type, DIR_TYPES, "--dir-type")
    if dir_type == "weights":
        return [name for name, _ in model.named_parameters()]  # torch lists a shared one once
    tied = tied_keys(model)
    return [
        k
        for k, v in model.state_dict().items()
        if v.is_floating_point() and not k.endswith("num_batches_tracked") and k not in tied
    ]


def _with_ties(model: nn.Module, extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` with the model's tied keys recorded (`tied`: {alias: covered key}), if any."""
    tied = tied_keys(model)
    return {**extra, "tied": tied} if tied else extra


def filter_norms(t: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of each slice along dim 0."""
    return t.reshape(t.shape[0], -1).norm(dim=1)


def normalize_direction(d: torch.Tensor, w: torch.Tensor, norm: str) -> torch.Tensor:
    """Scale a direction tensor (2+ dims) against the weights it will move."""
    _check_choice(norm, NORMS, "--norm")
    if norm == "filter":
        scale = filter_norms(w) / (filter_norms(d) + 1e-10)
        return d * scale.view(-1, *([1] * (d.dim() - 1)))
    if norm == "layer":
        return d * (w.norm() / (d.norm() + 1e-10))
    if norm == "weight":
        return d * w
    return d


def random_direction(
    state: Mapping[str, torch.Tensor],
    keys: Sequence[str],
    generator: torch.Generator,
    norm: str = "filter",
    ignore: str = "biasbn",
) -> Tensors:
    """One Gaussian direction over `keys`, normalized against `state` (generated on the CPU)."""
    _check_choice(ignore, IGNORES, "--ignore")
    out: Tensors = {}
    for k in keys:
        w = state[k].detach().float().cpu()
        d = torch.randn(w.shape, generator=generator, dtype=torch.float32)
        if w.dim() <= 1:
            d = torch.zeros_like(w) if ignore == "biasbn" else w.clone()
        else:
            d = normalize_direction(d, w, norm)
        out[k] = d.to(state[k].dtype) if state[k].is_floating_point() else d
    return out


def random_directions(
    model: nn.Module,
    seed: int = 0,
    dir_type: str = "weights",
    norm: str = "filter",
    ignore: str = "biasbn",
    two_d: bool = True,
    same_dir: bool = False,
) -> Directions:
    """Seeded random direction(s) around the model's current state (the paper's method)."""
    keys = direction_keys(model, dir_type)
    state = model.state_dict()
    g = torch.Generator().manual_seed(check_seed("--seed", int(seed)))
    x = random_direction(state, keys, g, norm, ignore)
    y = None
    if two_d:
        y = {k: v.clone() for k, v in x.items()} if same_dir else random_direction(state, keys, g, norm, ignore)
    extra = {"same_dir": bool(same_dir)} if two_d else {}
    return Directions(x, y, "random", dir_type, norm, ignore, int(seed), _with_ties(model, extra))


def _difference(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], keys: Sequence[str], what: str) -> Tensors:
    missing = [k for k in keys if k not in a]
    if missing:
        raise LandscapeError(f"{what} lacks {len(missing)} tensors of the model, e.g. {missing[0]}")
    bad = [k for k in keys if a[k].shape != b[k].shape]
    if bad:
        raise LandscapeError(f"{what} has tensor {bad[0]} of shape {tuple(a[bad[0]].shape)}, model has {tuple(b[bad[0]].shape)}")
    return {k: (a[k].float() - b[k].float()).to(b[k].dtype) for k in keys}


def interpolation_directions(
    model: nn.Module,
    state2: Mapping[str, torch.Tensor],
    state3: Mapping[str, torch.Tensor] | None = None,
    dir_type: str = "states",
) -> Directions:
    """x = checkpoint 2 - checkpoint 1 (the model), y = checkpoint 3 - checkpoint 1."""
    keys = direction_keys(model, dir_type)
    state1 = model.state_dict()
    x = _difference(state2, state1, keys, "--ckpt2")
    y = _difference(state3, state1, keys, "--ckpt3") if state3 is not None else None
    kind = "interpolate" if y is None else "plane"
    return Directions(x, y, kind, dir_type, "none", "none", None, _with_ties(model, {}))


def _flatten(state: Mapping[str, torch.Tensor], keys: Sequence[str], zero_1d: bool) -> torch.Tensor:
    parts = [
        torch.zeros(state[k].numel()) if (zero_1d and state[k].dim() <= 1) else state[k].detach().double().flatten()
        for k in keys
    ]
    return torch.cat(parts)


def _unflatten(vec: torch.Tensor, like: Mapping[str, torch.Tensor], keys: Sequence[str]) -> Tensors:
    out, i = {}, 0
    for k in keys:
        n = like[k].numel()
        out[k] = vec[i : i + n].view(like[k].shape).to(like[k].dtype).clone()
        i += n
    return out


def pca_directions(
    model: nn.Module,
    snapshots: Sequence[Mapping[str, torch.Tensor]],
    dir_type: str = "weights",
    ignore: str = "biasbn",
    epochs: Sequence[int] | None = None,
    components: int = 2,
    runs: Mapping[str, int] | None = None,
) -> Directions:
    """Top two principal components of (snapshot - final), and the projected trajectory.

    The final model is `model`. Components are unit vectors (not filter-normalized), as in the
    paper; explained variance ratios and the snapshots' coordinates are recorded. The first
    `components` (1 or 2) must have variance: snapshots that do not vary along one are refused,
    since SVD would return an arbitrary direction there.

    `runs` (name -> number of snapshots, in order) splits `snapshots` into several training
    runs: ONE plane is fitted to all their deltas together (pooled PCA), every run's path is
    projected onto it (`trajectory["run"]` numbers each snapshot's run), and each run's share of
    its own variance captured per component is recorded (`run_explained_variance_ratio`).
    """
    _check_choice(ignore, IGNORES, "--ignore")
    if len(snapshots) < 2:
        raise LandscapeError(
            f"--pca needs at least 2 snapshots, got {len(snapshots)} "
            "(train with --save-every K to keep a trajectory)"
        )
    keys = direction_keys(model, dir_type)
    final = model.state_dict()
    zero = ignore == "biasbn"
    f = _flatten(final, keys, zero)
    rows = []
    for i, s in enumerate(snapshots):
        _difference(s, final, keys, f"snapshot {i}")  # shape check with a clear message
        rows.append(_flatten(s, keys, zero) - f)
    m = torch.stack(rows)  # [n_snapshots, D]
    centered = m - m.mean(0, keepdim=True)
    _, sing, vt = torch.linalg.svd(centered, full_matrices=False)
    _check_variance(sing, m, components)
    var = sing**2 / max(len(rows) - 1, 1)
    ratio = (var / var.sum()).tolist() if var.sum() > 0 else [0.0] * len(var)
    comps = vt[:2]
    coords = (m @ comps.T).numpy()  # [n, 2]; components are unit vectors
    x = _unflatten(comps[0], final, keys)
    y = _unflatten(comps[1], final, keys) if len(comps) > 1 else None
    extra = {
        "explained_variance_ratio": [float(r) for r in ratio[:2]],
        "explained_variance": [float(v) for v in var[:2]],
        "singular_values": [float(s) for s in sing[:2]],
        "n_snapshots": len(snapshots),
    }
    trajectory = {
        "x": coords[:, 0],
        "y": coords[:, 1] if coords.shape[1] > 1 else None,
        "epochs": list(epochs) if epochs is not None else list(range(len(snapshots))),
    }
    if runs is not None and len(runs) > 1:
        run_index = _run_index(runs, len(rows))
        extra["runs"] = list(runs)
        extra["run_explained_variance_ratio"] = run_variance_ratios(m, comps, run_index)
        trajectory["run"] = run_index
    return Directions(x, y, "pca", dir_type, "none", ignore, None, _with_ties(model, extra), trajectory)


def _run_index(runs: Mapping[str, int], n: int) -> np.ndarray:
    """The run number of each snapshot; a run of fewer than 2 snapshots has no path: refused."""
    short = [name for name, k in runs.items() if k < 2]
    if short:
        raise LandscapeError(
            f"--pca run {short[0]!r} has {runs[short[0]]} snapshot; a path needs at least 2 per run "
            "(give each run's snapshots after its own --pca)"
        )
    if sum(runs.values()) != n:
        raise LandscapeError(f"--pca runs hold {sum(runs.values())} snapshots, {n} were given")
    return np.repeat(np.arange(len(runs)), list(runs.values()))


def run_variance_ratios(m: torch.Tensor, comps: torch.Tensor, run_index: np.ndarray) -> list[list[float]]:
    """Per run: the fraction of the run's own variance (about its own mean) that lies along
    each shared component. `m`: [n_snapshots, D] deltas, `comps`: [k, D] unit rows."""
    out = []
    for r in range(int(run_index.max()) + 1):
        rows = m[torch.from_numpy(run_index == r)]
        c = rows - rows.mean(0, keepdim=True)
        total = float((c**2).sum())
        along = ((c @ comps.T) ** 2).sum(0)
        out.append([float(a) / total if total > 0 else 0.0 for a in along])
    return out


def _check_variance(sing: torch.Tensor, m: torch.Tensor, components: int) -> None:
    """Refuse a PCA component with (numerically) zero variance: its direction would be arbitrary."""
    scale = float(torch.linalg.norm(m))
    for k in range(components):
        value = float(sing[k]) if k < len(sing) else 0.0
        if not value > 1e-6 * scale or value == 0.0:
            which = "vary at all" if k == 0 else "vary along a second component (a 2D plane needs 3 or more distinct snapshots)"
            raise LandscapeError(
                f"--pca: the {m.shape[0]} snapshots do not {which}: zero variance, so the PCA "
                f"direction {'xy'[k]} would be arbitrary; give snapshots from different epochs of one "
                "run (landscape train --save-every K), or drop --y for a 1D curve"
            )


def directions_from_tensors(
    model: nn.Module,
    x: Sequence[torch.Tensor] | Mapping[str, torch.Tensor],
    y: Sequence[torch.Tensor] | Mapping[str, torch.Tensor] | None,
    source: str,
    meta: Mapping[str, Any] | None = None,
) -> Directions:
    """Match stored direction tensors to the model (by key, or by order for the paper's files)."""
    meta = dict(meta or {})
    dir_type = meta.get("dir_type") or _guess_dir_type(model, x)
    keys = direction_keys(model, dir_type)
    state = model.state_dict()

    def match(d: Sequence[torch.Tensor] | Mapping[str, torch.Tensor], axis: str) -> Tensors:
        if isinstance(d, Mapping):
            missing = [k for k in keys if k not in d]
            extra = [k for k in d if k not in keys]
            if missing or extra:
                what = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
                raise LandscapeError(
                    f"direction file {source} does not match the model ({axis}: {what}; "
                    f"{len(d)} tensors vs {len(keys)} {dir_type})"
                )
            tensors = [d[k] for k in keys]
        else:
            tensors = list(d)
            if len(tensors) == len(state) and dir_type == "states":  # paper: includes counters
                tensors = [t for t, k in zip(tensors, state) if k in keys]
            if len(tensors) != len(keys):
                raise LandscapeError(
                    f"direction file {source} has {len(tensors)} tensors in {axis}, the model has "
                    f"{len(keys)} {dir_type} entries"
                )
        out: Tensors = {}
        for k, t in zip(keys, tensors):
            t = torch.as_tensor(t)
            if tuple(t.shape) != tuple(state[k].shape):
                raise LandscapeError(
                    f"direction file {source}: {axis} tensor for {k} has shape {tuple(t.shape)}, "
                    f"the model's is {tuple(state[k].shape)}"
                )
            out[k] = t.to(state[k].dtype)
        return out

    xd = match(x, "x")
    yd = match(y, "y") if y is not None else None
    known = {"kind", "dir_type", "norm", "ignore", "seed"}
    extra = {k: v for k, v in meta.items() if k not in known}
    extra["source"] = str(source)
    extra = _with_ties(model, extra)
    seed = meta.get("seed")
    return Directions(
        xd, yd, str(meta.get("kind", "file")), dir_type, str(meta.get("norm", "unknown")),
        str(meta.get("ignore", "unknown")), None if seed in (None, -1) else int(seed), extra,
    )


def _guess_dir_type(model: nn.Module, x: Sequence[torch.Tensor] | Mapping[str, torch.Tensor]) -> str:
    n = len(x)
    if n == len(direction_keys(model, "weights")):
        return "weights"
    return "states"


def point_weights(
    center: Mapping[str, torch.Tensor], d: Directions, a: float, b: float = 0.0
) -> dict[str, torch.Tensor]:
    """The covered tensors at grid coordinates (a, b): center + a*x (+ b*y), summed in that order.

    Every evaluator moves the weights with this one formula, so its values are bit-identical.
    """
    out = {}
    for k in d.x:
        v = center[k] + a * d.x[k].to(center[k].device)
        if d.y is not None:
            v = v + b * d.y[k].to(center[k].device)
        out[k] = v
    return out


def point_state(
    center: Mapping[str, torch.Tensor], d: Directions, a: float, b: float = 0.0
) -> dict[str, torch.Tensor]:
    """The full state dict at grid coordinates (a, b): center + a*x + b*y on the covered keys."""
    out = {k: v.clone() for k, v in center.items()}
    out.update(point_weights(center, d, a, b))
    return out
