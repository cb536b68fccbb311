"""Mode-connecting curves (Garipov et al. 2018): a trained path of low loss between two minima.

A curve phi(t), t in [0, 1], joins the weights w_a and w_b of two checkpoints of one architecture:

- `bezier` (quadratic Bezier, one bend theta): phi(t) = (1-t)^2 w_a + 2t(1-t) theta + t^2 w_b;
- `polychain` (three segments, bends theta_1, theta_2 at t = 1/3, 2/3): piecewise linear through
  w_a, theta_1, theta_2, w_b.

`connect` trains the bend(s) by SGD on E_{t~U(0,1)} loss(phi(t)), one t per mini-batch, the
model in train mode (BatchNorm normalizes with the batch's statistics). The bends start on the
line (bezier: its midpoint; polychain: 1/3 and 2/3 of the way). The curve covers the parameters
only: the buffers of a point are w_a's, and BatchNorm running statistics are recomputed at every
evaluated point, t = 0 and 1 included (`evaluate_point`), so the ends' values are those of the
two checkpoints with recomputed statistics. The barrier of a path is
max_t [loss(t) - ((1-t) loss(0) + t loss(1))] (`barrier`).

The curve file (`torch.save` of a plain dict, loadable with `weights_only=True`) is described in
docs/curves.md; `load_curve` validates it before anything in it is used.

Example:
    >>> path = connect(ConnectConfig(ckpt="a.pt", ckpt2="b.pt", out="curve.pt"))  # doctest: +SKIP
    >>> curve = load_curve(path)                                                   # doctest: +SKIP
    >>> state = curve_state(curve, 0.5)                                            # doctest: +SKIP
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.batchnorm import reestimate_batchnorm
from ..errors import LandscapeError
from ..io.checkpoint import (
    Checkpoint,
    build_model,
    check_stored_model,
    file_sha256,
    load_checkpoint,
)
from ..io.outputs import atomic_write, check_output
from ..system.progress import Progress

__all__ = [
    "CURVE_FORMAT",
    "CURVE_VERSION",
    "CURVE_KINDS",
    "ConnectConfig",
    "Curve",
    "connect",
    "train_curve",
    "curve_weights",
    "line_weights",
    "curve_state",
    "evaluate_point",
    "barrier",
    "load_curve",
    "load_ends",
    "save_curve",
    "config_from_keywords",
]

CURVE_FORMAT = "landscape-curve"
CURVE_VERSION = 1
CURVE_KINDS = ("bezier", "polychain")
Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ConnectConfig:
    """Everything `landscape connect` takes (see `landscape connect --help`)."""

    ckpt: str
    ckpt2: str
    out: str = "curve.pt"
    kind: str = "bezier"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    points: int = 11  # t values at which the barriers are measured after training (train split)
    bn_batch_size: int = 256  # batches of the BatchNorm re-estimation at each evaluated point
    max_samples: int | None = None  # first N training samples (training, BatchNorm, barriers)
    model: str | None = None
    data: str | None = None
    data_root: str | None = None
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.kind not in CURVE_KINDS:
            raise LandscapeError(f"--kind {self.kind!r} is not one of {', '.join(CURVE_KINDS)}")
        for name in ("epochs", "batch_size", "bn_batch_size"):
            if getattr(self, name) < 1:
                raise LandscapeError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.points < 2:
            raise LandscapeError(f"--points must be at least 2 (the two ends), got {self.points}")
        if self.max_samples is not None and self.max_samples < 1:
            raise LandscapeError(f"--max-samples must be at least 1, got {self.max_samples}")
        for name in ("lr", "momentum", "weight_decay"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0) or (name == "lr" and value == 0):
                raise LandscapeError(f"--{name.replace('_', '-')} {value!r} must be a finite number >= 0 (lr > 0)")


@dataclass
class Curve:
    """Two end checkpoints and the bend(s) of the path between them (parameters only)."""

    kind: str
    model: str
    model_kwargs: dict[str, Any]
    ends: list[Checkpoint]  # w_a, w_b (full state dicts: their buffers are used at the points)
    bends: list[Tensors]  # one (bezier) or two (polychain) parameter dicts
    data: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    barriers: dict[str, Any] = field(default_factory=dict)
    path: str | None = None

    def end_params(self) -> list[Tensors]:
        keys = list(self.bends[0])
        return [{k: e.state_dict[k] for k in keys} for e in self.ends]


# --- geometry -------------------------------------------------------------------------------


def curve_weights(kind: str, ends: Sequence[Mapping[str, torch.Tensor]], bends: Sequence[Mapping[str, torch.Tensor]],
                  t: float) -> Tensors:
    """phi(t) on every key of the bends (differentiable in the bends: used to train them)."""
    a, b = ends
    if kind == "bezier":
        (theta,) = bends
        return {k: (1 - t) ** 2 * a[k] + 2 * t * (1 - t) * theta[k] + t**2 * b[k] for k in theta}
    if kind == "polychain":
        nodes = [a, *bends, b]
        i = min(int(t * 3), 2)  # segment: [0, 1/3), [1/3, 2/3), [2/3, 1]
        s = 3 * t - i
        return {k: (1 - s) * nodes[i][k] + s * nodes[i + 1][k] for k in bends[0]}
    raise LandscapeError(f"curve kind {kind!r} is not one of {', '.join(CURVE_KINDS)}")


def line_weights(ends: Sequence[Mapping[str, torch.Tensor]], t: float, keys: Sequence[str]) -> Tensors:
    """The straight line (1-t) w_a + t w_b on `keys`."""
    a, b = ends
    return {k: (1 - t) * a[k] + t * b[k] for k in keys}


def curve_state(curve: Curve, t: float, line: bool = False) -> Tensors:
    """The full state dict at t: w_a's state with the parameters replaced by phi(t) (or by the
    line's point); BatchNorm statistics are still w_a's until `evaluate_point` recomputes them."""
    ends = curve.end_params()
    with torch.no_grad():
        params = line_weights(ends, t, list(ends[0])) if line else curve_weights(curve.kind, ends, curve.bends, t)
    return {**{k: v.clone() for k, v in curve.ends[0].state_dict.items()}, **params}


# --- evaluation -----------------------------------------------------------------------------


@torch.no_grad()
def evaluate_point(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    bn_x: torch.Tensor,
    splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    bn_batch_size: int = 256,
    batch_size: int = 512,
) -> dict[str, float]:
    """Loss and accuracy (%) of `state` on each split, BatchNorm statistics recomputed first.

    The running statistics are reset and re-estimated in train mode over `bn_x` in batches of
    `bn_batch_size` (momentum None: the average of the batch statistics), then the model is
    evaluated in eval mode: mean cross-entropy over the samples, and accuracy.
    """
    from .train import evaluate_model

    model.load_state_dict(dict(state), strict=True)
    reestimate_batchnorm(model, (bn_x[i : i + bn_batch_size] for i in range(0, len(bn_x), bn_batch_size)))
    out: dict[str, float] = {}
    for name, (x, y) in splits.items():
        loss, acc = evaluate_model(model, x, y, batch_size)
        out[f"{name}_loss"], out[f"{name}_acc"] = loss, acc
    return out


def barrier(ts: Sequence[float], losses: Sequence[float]) -> tuple[float, float]:
    """(height, t at the top) of max_t [loss(t) - ((1-t) loss(0) + t loss(1))] over `ts`.

    `ts` must start at 0 and end at 1 (the ends); a path with no bump has height <= 0.

    >>> barrier([0.0, 0.5, 1.0], [1.0, 3.0, 2.0])
    (1.5, 0.5)
    """
    if len(ts) < 2 or ts[0] != 0 or ts[-1] != 1:
        raise LandscapeError("a barrier needs the path evaluated at t = 0 and t = 1 (give a grid 0:1:N)")
    l0, l1 = losses[0], losses[-1]
    rises = [loss - ((1 - t) * l0 + t * l1) for t, loss in zip(ts, losses)]
    top = max(range(len(rises)), key=lambda i: rises[i])
    return float(rises[top]), float(ts[top])


# --- training -------------------------------------------------------------------------------


def _check_same_architecture(a: Checkpoint, b: Checkpoint) -> None:
    if a.model != b.model or a.model_kwargs != b.model_kwargs:
        raise LandscapeError(
            f"--ckpt {a.path} is {a.model} {a.model_kwargs} but --ckpt2 {b.path} is {b.model} "
            f"{b.model_kwargs}: a curve joins two checkpoints of the same architecture"
        )
    sa, sb = a.state_dict, b.state_dict
    bad = [k for k in sa if k not in sb or sa[k].shape != sb[k].shape] + [k for k in sb if k not in sa]
    if bad:
        raise LandscapeError(
            f"--ckpt {a.path} and --ckpt2 {b.path} have different weights ({bad[0]}): a curve joins "
            "two checkpoints of the same architecture"
        )


def _initial_bends(kind: str, ends: Sequence[Tensors]) -> list[Tensors]:
    fractions = (0.5,) if kind == "bezier" else (1 / 3, 2 / 3)
    keys = list(ends[0])
    return [{k: v.detach().clone() for k, v in line_weights(ends, s, keys).items()} for s in fractions]


def train_curve(
    model: nn.Module,
    kind: str,
    ends: Sequence[Tensors],
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: ConnectConfig,
) -> tuple[list[Tensors], dict[str, Any]]:
    """Train the bend(s) between the parameter dicts `ends`; return them and the training record.

    Each mini-batch draws one t ~ U(0, 1) and takes one SGD step on the cross-entropy of phi(t)
    (train mode: BatchNorm uses the batch's statistics). Seeded by `cfg.seed`: the shuffles and
    the t's come from one generator, so a CPU run is repeatable bit for bit.
    """
    from torch.func import functional_call

    gen = torch.Generator().manual_seed(cfg.seed)
    bends = [{k: v.clone().requires_grad_(True) for k, v in b.items()} for b in _initial_bends(kind, ends)]
    fixed = [{k: v.detach() for k, v in e.items()} for e in ends]
    buffers = {k: v.clone() for k, v in model.named_buffers()}  # updated by train-mode BN, unused
    opt = torch.optim.SGD([p for b in bends for p in b.values()], lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    n_batches = math.ceil(len(x) / cfg.batch_size)
    progress = Progress(cfg.epochs * n_batches, desc="connect", unit="batch", enabled=not cfg.quiet)
    model.train()
    epochs: list[dict[str, float]] = []
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        order = torch.randperm(len(x), generator=gen)
        total, seen = 0.0, 0
        for i in range(n_batches):
            idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            t = float(torch.rand((), generator=gen))
            params = curve_weights(kind, fixed, bends, t)
            loss = F.cross_entropy(functional_call(model, {**params, **buffers}, (x[idx],)), y[idx])
            if not math.isfinite(loss.item()):
                raise LandscapeError(
                    f"curve training diverged at epoch {epoch} (loss {loss.item()}); lower --lr (now {cfg.lr})"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            seen += len(idx)
            progress.update(postfix=f"epoch {epoch} loss {total / seen:.4f}")
        epochs.append({"epoch": epoch, "train_loss": total / seen})
    progress.close()
    record = {"epochs": epochs, "seconds": round(time.perf_counter() - start, 3)}
    return [{k: v.detach().clone() for k, v in b.items()} for b in bends], record


def _barriers(curve: Curve, bn_x: torch.Tensor, split: tuple[torch.Tensor, torch.Tensor], cfg: ConnectConfig) -> dict[str, Any]:
    """The train loss of the curve and of the line at `cfg.points` t's in [0, 1], and their barriers."""
    model = build_model(curve.ends[0])
    ts = [i / (cfg.points - 1) for i in range(cfg.points)]
    out: dict[str, Any] = {"split": "train", "t": ts}
    with Progress(2 * len(ts), desc="barriers", unit="pt", enabled=not cfg.quiet) as progress:
        for name, line in (("curve", False), ("line", True)):
            losses = []
            for t in ts:
                state = curve_state(curve, t, line)
                losses.append(evaluate_point(model, state, bn_x, {"train": split}, cfg.bn_batch_size)["train_loss"])
                progress.update()
            height, top = barrier(ts, losses)
            out |= {f"{name}_loss": losses, f"{name}_barrier": height, f"{name}_barrier_t": top}
    return out


def load_ends(ckpt: str, ckpt2: str, model: str | None = None) -> list[Checkpoint]:
    """The two end checkpoints, checked to be model checkpoints of one architecture."""
    ends = []
    for option, path in (("--ckpt", ckpt), ("--ckpt2", ckpt2)):
        if _is_curve_file(Path(path)):
            raise LandscapeError(f"{option} {path} is a curve file (landscape connect); give a model checkpoint")
        ends.append(load_checkpoint(path, model=model))
    _check_same_architecture(*ends)
    return ends


def connect(ckpt: str | Path | ConnectConfig, ckpt2: str | Path | None = None, **options: Any) -> Path:
    """Train a curve between two checkpoints and write the curve file; return its path.

    Takes a `ConnectConfig`, or the two paths and its fields as keywords:

        >>> landscape.connect("a.pt", "b.pt", out="curve.pt", kind="polychain", epochs=20)  # doctest: +SKIP
    """
    from ..data.sources import dataset_for_checkpoint

    cfg = ckpt if isinstance(ckpt, ConnectConfig) else config_from_keywords(ConnectConfig, ckpt=str(ckpt),
                                                                    ckpt2=None if ckpt2 is None else str(ckpt2), **options)
    if cfg.ckpt2 is None:
        raise LandscapeError("connect needs two checkpoints: connect('a.pt', 'b.pt', out='curve.pt')")

    out = Path(cfg.out)
    _check_curve_output(out, (cfg.ckpt, cfg.ckpt2))
    torch.manual_seed(cfg.seed)
    ends = load_ends(cfg.ckpt, cfg.ckpt2, cfg.model)
    model = build_model(ends[0])
    ds = dataset_for_checkpoint(cfg.ckpt, ends[0].data, cfg.data, cfg.data_root)
    x, y = ds.x_train[: cfg.max_samples], ds.y_train[: cfg.max_samples]
    keys = [k for k, _ in model.named_parameters()]
    end_params = [{k: e.state_dict[k].float() for k in keys} for e in ends]
    bends, record = train_curve(model, cfg.kind, end_params, x, y, cfg)
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("ckpt", "ckpt2", "out", "quiet")}
    curve = Curve(cfg.kind, str(ends[0].model), dict(ends[0].model_kwargs), ends, bends, dict(ends[0].data),
                  {"settings": settings, **record})
    curve.barriers = _barriers(curve, x, (x, y), cfg)
    return save_curve(curve, out)


def config_from_keywords(kind: type, **fields: Any) -> Any:
    """A config dataclass from keywords; an unknown one is named in one line."""
    from dataclasses import fields as all_fields

    known = {f.name for f in all_fields(kind)}
    bad = [k for k in fields if k not in known]
    if bad:
        raise LandscapeError(f"{kind.__name__} has no option {bad[0]!r}; it takes {', '.join(sorted(known))}")
    return kind(**fields)


# --- the curve file -------------------------------------------------------------------------


def _peek(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None


def _is_curve_file(path: Path) -> bool:
    from ..io.outputs import file_kind

    if file_kind(path) != "checkpoint":
        return False
    obj = _peek(path)
    return isinstance(obj, dict) and obj.get("format") == CURVE_FORMAT


def _check_curve_output(out: Path, ends: Sequence[str]) -> None:
    """Refuse an output that is an end, or holds anything but a curve file (a model checkpoint)."""
    check_output(out, "checkpoint")
    if any(out.exists() and Path(e).exists() and out.resolve() == Path(e).resolve() for e in ends):
        raise LandscapeError(f"--out {out} is one of the end checkpoints; choose another output path")
    if out.exists() and out.stat().st_size and not _is_curve_file(out):
        raise LandscapeError(
            f"--out {out} holds a checkpoint that is not a curve file; it is left alone: choose another output path"
        )


def save_curve(curve: Curve, path: str | Path) -> Path:
    """Write the curve file atomically (see docs/curves.md for its fields)."""
    path = Path(path)
    payload = {
        "format": CURVE_FORMAT,
        "version": CURVE_VERSION,
        "kind": curve.kind,
        "model": curve.model,
        "model_kwargs": dict(curve.model_kwargs),
        "ends": [{"path": str(Path(e.path or "").resolve()), "sha256": file_sha256(e.path)} for e in curve.ends],
        "bends": [{k: v.detach().cpu().clone() for k, v in b.items()} for b in curve.bends],
        "data": dict(curve.data),
        "train": dict(curve.train),
        "barriers": dict(curve.barriers),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_write(path, "write curve file", make_folder=True) as tmp, open(tmp, "wb") as f:
        f.write(buffer.getbuffer())
        f.flush()
        os.fsync(f.fileno())
    curve.path = str(path)
    return path


_FIELDS: dict[str, tuple[type, ...]] = {
    "version": (int,), "kind": (str,), "model": (str,), "model_kwargs": (dict,), "ends": (list,),
    "bends": (list,), "data": (dict,), "train": (dict,), "barriers": (dict,),
}


def load_curve(path: str | Path, model: str | None = None) -> Curve:
    """Read and validate a curve file, and load its two end checkpoints (their sha256 checked)."""
    path = Path(path)
    obj = _read_curve_dict(path)
    for key, types in _FIELDS.items():
        if isinstance(obj.get(key), bool) or not isinstance(obj.get(key), types):
            raise LandscapeError(f"curve file {path}: field {key!r} is missing or not a {types[0].__name__}; "
                                 "the file is damaged: rerun landscape connect")
    if not 1 <= obj["version"] <= CURVE_VERSION:
        raise LandscapeError(f"curve file {path} has version {obj['version']}; this landscape reads 1 to "
                             f"{CURVE_VERSION} (upgrade: pip install -U nn-landscape)")
    kind = obj["kind"]
    wanted = 1 if kind == "bezier" else 2
    if kind not in CURVE_KINDS or len(obj["bends"]) != wanted or len(obj["ends"]) != 2:
        raise LandscapeError(f"curve file {path}: kind {kind!r} with {len(obj['bends'])} bends and "
                             f"{len(obj['ends'])} ends is not a curve landscape writes; rerun landscape connect")
    if model is None:
        check_stored_model(obj["model"], path)
    ends = [_load_end(path, e, i, model) for i, e in enumerate(obj["ends"])]
    _check_same_architecture(*ends)
    if model is None and (ends[0].model != obj["model"] or ends[0].model_kwargs != obj["model_kwargs"]):
        raise LandscapeError(f"curve file {path} records model {obj['model']} {obj['model_kwargs']}, its ends are "
                             f"{ends[0].model} {ends[0].model_kwargs}; rerun landscape connect")
    bends = [_check_bend(path, b, ends[0]) for b in obj["bends"]]
    if any(set(b) != set(bends[0]) for b in bends):
        raise LandscapeError(f"curve file {path}: its bends cover different tensors; rerun landscape connect")
    return Curve(kind, model or obj["model"], obj["model_kwargs"], ends, bends, obj["data"], obj["train"],
                 obj["barriers"], str(path))


def _read_curve_dict(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise LandscapeError(f"curve file {path} does not exist (make one with landscape connect)")
    obj = _peek(path)
    if obj is None:
        raise LandscapeError(f"{path} is not a curve file (not a torch file readable with weights_only); "
                             "give a file written by landscape connect")
    if not isinstance(obj, dict) or obj.get("format") != CURVE_FORMAT:
        raise LandscapeError(f"{path} is not a curve file (format {obj.get('format') if isinstance(obj, dict) else None!r}); "
                             "give a file written by landscape connect (a model checkpoint goes to --ckpt)")
    return obj


def _load_end(path: Path, entry: Any, i: int, model: str | None) -> Checkpoint:
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not isinstance(entry.get("sha256"), str):
        raise LandscapeError(f"curve file {path}: end {i} is damaged; rerun landscape connect")
    end = Path(entry["path"])
    if not end.is_file():
        raise LandscapeError(f"curve file {path}: end checkpoint {end} is missing; restore it (the curve is "
                             "defined relative to its two ends)")
    if file_sha256(end) != entry["sha256"]:
        raise LandscapeError(f"curve file {path}: end checkpoint {end} has changed since the curve was "
                             "trained (sha256 differs); restore it or rerun landscape connect")
    return load_checkpoint(end, model=model)


def _check_bend(path: Path, bend: Any, end: Checkpoint) -> Tensors:
    if not isinstance(bend, dict) or not bend:
        raise LandscapeError(f"curve file {path}: a bend is not a dict of tensors; rerun landscape connect")
    for k, v in bend.items():
        ref = end.state_dict.get(k)
        if not isinstance(v, torch.Tensor) or ref is None or v.shape != ref.shape or not v.is_floating_point():
            raise LandscapeError(f"curve file {path}: bend tensor {k!r} does not fit the end checkpoints; "
                                 "rerun landscape connect")
    return dict(bend)
