"""`landscape surface --curve`: loss and accuracy along a trained curve, and on its plane.

1D (`--x=0:1:21`, x is t): each point is phi(t) of the curve and, stored beside it as
`line_<split>_<loss|acc>`, the straight line's (1-t) w_a + t w_b; the metrics hold the barrier
of both (`landscape.jobs.curves.barrier`) for each split's loss.

2D (`--x`, `--y`): the plane through w_a, w_b and the bend c (polychain: the mean of its two
bends), origin w_a, x direction u = w_b - w_a, y direction v = the part of c - w_a orthogonal
to u. So w_a is at (0, 0), w_b at (1, 0) and c at (alpha, 1), alpha = <c - w_a, u> / <u, u>;
the `curve` attribute stores these coordinates (`nodes`: the ends and bends, projected).

Every point is evaluated by `landscape.jobs.curves.evaluate_point` (BatchNorm statistics recomputed
on the training samples, then plain eval-mode cross-entropy and accuracy), so each stored value
is what plain PyTorch gives for those weights. Points are written as they are computed, under
the surface lock; an interrupted run resumes.

Example:
    >>> cfg = CurveSurfaceConfig(curve="curve.pt", x="0:1:21", out="surfaces/curve.h5")  # doctest: +SKIP
    >>> compute_curve_surface(cfg)                                                     # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._version import __version__
from ..core.directions import Directions, point_weights
from ..core.grid import Axis, Grid
from ..errors import LandscapeError
from ..io.checkpoint import build_model, file_sha256
from ..io.lock import SurfaceLock
from ..system.progress import Progress
from .curves import Curve, barrier, config_from_keywords, curve_state, evaluate_point, load_curve

__all__ = ["CurveSurfaceConfig", "compute_curve_surface", "curve_plane"]

_T_TOLERANCE = 1e-9


@dataclass(frozen=True)
class CurveSurfaceConfig:
    """What `landscape surface --curve` takes."""

    curve: str
    x: str = "0:1:21"
    y: str | None = None
    out: str | None = None
    model: str | None = None
    data: str | None = None
    data_root: str | None = None
    splits: tuple[str, ...] = ("train", "test")
    max_samples: int | None = None  # first N samples per split (BatchNorm statistics included)
    batch_size: int = 512  # evaluation batch (does not change the values beyond rounding)
    bn_batch_size: int = 256  # batches of the BatchNorm re-estimation (part of the definition)
    force: bool = False
    quiet: bool = False

    def __post_init__(self) -> None:
        bad = [s for s in self.splits if s not in ("train", "test")]
        if bad or not self.splits:
            raise LandscapeError(f"--splits {','.join(self.splits)!r}: use train, test or train,test")
        for name in ("max_samples", "batch_size", "bn_batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise LandscapeError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def curve_plane(curve: Curve) -> tuple[Directions, dict[str, Any]]:
    """The plane's directions u, v (see the module docstring) and the coordinates of the ends
    and bends in it (`nodes`, with each bend's distance off the plane relative to |v|)."""
    a, b = (torch.cat([e[k].double().flatten() for k in e]) for e in curve.end_params())
    bends = [torch.cat([bd[k].double().flatten() for k in bd]) for bd in curve.bends]
    u = b - a
    d = torch.stack(bends).mean(0) - a
    uu = float(u @ u)
    if uu == 0:
        raise LandscapeError(f"curve file {curve.path}: its two ends have the same weights; there is no plane")
    alpha = float(d @ u) / uu
    v = d - alpha * u
    vv = float(v @ v)
    if vv <= 1e-24 * uu:
        raise LandscapeError(f"curve file {curve.path}: its bend lies on the line between the ends; there is no plane")
    nodes = [[0.0, 0.0]]
    off = []
    for bend in bends:
        r = bend - a
        x, y = float(r @ u) / uu, float(r @ v) / vv
        nodes.append([x, y])
        off.append(float((r - x * u - y * v).norm()) / vv**0.5)
    nodes.append([1.0, 0.0])
    keys = list(curve.bends[0])
    like = curve.end_params()[0]
    directions = Directions(_unflatten(u, like, keys), _unflatten(v, like, keys), "curve_plane", "weights",
                            "none", "none", None, {"curve_kind": curve.kind})
    plane = {"nodes": nodes, "bend_off_plane": off, "u_norm": uu**0.5, "v_norm": vv**0.5, "bend_x": alpha}
    return directions, plane


def _unflatten(vec: torch.Tensor, like: Mapping[str, torch.Tensor], keys: list[str]) -> dict[str, torch.Tensor]:
    out, i = {}, 0
    for k in keys:
        n = like[k].numel()
        out[k] = vec[i : i + n].view_as(like[k]).to(like[k].dtype)
        i += n
    return out


def _grid(cfg: CurveSurfaceConfig) -> Grid:
    grid = Grid(Axis.parse(cfg.x, "x"), Axis.parse(cfg.y, "y") if cfg.y is not None else None)
    t = grid.x.coords()
    if grid.y is None and (t.min() < -_T_TOLERANCE or t.max() > 1 + _T_TOLERANCE):
        raise LandscapeError(f"--x {cfg.x}: along a curve x is t in [0, 1]; give e.g. --x=0:1:21")
    return grid


def _arrays(splits: tuple[str, ...], one_d: bool) -> list[str]:
    names = [f"{s}_{m}" for s in splits for m in ("loss", "acc")]
    return names + [f"line_{n}" for n in names] if one_d else names


def _settings(cfg: CurveSurfaceConfig, curve_sha: str, grid: Grid, n: Mapping[str, int]) -> dict[str, Any]:
    return {
        "grid": {"x": grid.x.spec(), "y": grid.y.spec() if grid.y else None},
        "curve_sha256": curve_sha,
        "splits": list(cfg.splits),
        "samples": dict(n),
        "bn": "recompute",
        "bn_batch_size": cfg.bn_batch_size,
        "data": cfg.data,
        "precision": "fp32",
        "loss": "cross_entropy",
    }


def _attrs(cfg: CurveSurfaceConfig, curve: Curve, model: torch.nn.Module, data: dict[str, Any],
           d: Directions, plane: dict[str, Any] | None, n: Mapping[str, int]) -> dict[str, Any]:
    info = {"path": str(Path(cfg.curve).resolve()), "kind": curve.kind,
            "ends": [str(e.path) for e in curve.ends], **(plane or {})}
    return {
        "software": f"landscape {__version__}",
        "torch_version": torch.__version__,
        "model": curve.model,
        "model_kwargs": dict(curve.model_kwargs),
        "model_class": type(model).__name__,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "dataset": data,
        "splits": list(cfg.splits),
        **{f"n_{s}": c for s, c in n.items()},
        "dir_kind": d.kind, "dir_type": "weights", "norm": "none", "ignore": "none", "seed": -1,
        "directions": d.meta(),
        "bn": "recompute", "precision": "fp32", "loss": "cross_entropy", "metric": "accuracy",
        "curve": info,
    }


def _point_state(curve: Curve, d: Directions, grid: Grid, flat: int, line: bool) -> dict[str, torch.Tensor]:
    if grid.y is None:
        return curve_state(curve, float(grid.x.coords()[flat]), line)
    i, j = np.unravel_index(flat, grid.shape)
    a = curve.end_params()[0]
    with torch.no_grad():
        params = point_weights(a, d, float(grid.x.coords()[i]), float(grid.y.coords()[j]))
    return {**{k: v.clone() for k, v in curve.ends[0].state_dict.items()}, **params}


def _barrier_metrics(surface: Any, splits: tuple[str, ...]) -> dict[str, float]:
    t = [float(v) for v in surface.x]
    if abs(t[0]) > _T_TOLERANCE or abs(t[-1] - 1) > _T_TOLERANCE or not surface.computed.all():
        return {}
    t[0], t[-1] = 0.0, 1.0
    out: dict[str, float] = {}
    for s in splits:
        for path in ("curve", "line"):
            name = f"{s}_loss" if path == "curve" else f"line_{s}_loss"
            height, top = barrier(t, [float(v) for v in surface.arrays[name]])
            out[f"{path}_barrier_{s}_loss"], out[f"{path}_barrier_t_{s}_loss"] = height, top
    return out


def compute_curve_surface(curve: str | Path | CurveSurfaceConfig, **options: Any) -> Path:
    """Evaluate (or resume) a curve's 1D profile or plane into a surface file; return its path.

    Takes a `CurveSurfaceConfig`, or the curve file and its fields as keywords:

        >>> landscape.compute_curve_surface("curve.pt", x="0:1:21", out="surfaces/curve.h5")  # doctest: +SKIP
    """
    from ..core.metrics import surface_metrics
    from ..data.sources import dataset_for_checkpoint
    from ..io.storage import SurfaceWriter, create_surface, open_surface, read_surface, update_attrs
    from .compute import select_splits

    cfg = curve if isinstance(curve, CurveSurfaceConfig) else config_from_keywords(CurveSurfaceConfig, curve=str(curve), **options)
    grid = _grid(cfg)
    curve = load_curve(cfg.curve, cfg.model)
    out = Path(cfg.out) if cfg.out else Path("surfaces") / f"{Path(cfg.curve).stem}{'_1d' if grid.y is None else ''}.h5"
    model = build_model(curve.ends[0])
    if set(curve.bends[0]) != {k for k, _ in model.named_parameters()}:
        raise LandscapeError(f"curve file {cfg.curve}: its bends do not cover the model's parameters; rerun landscape connect")
    end = curve.ends[0]
    ds = dataset_for_checkpoint(str(end.path), curve.data or end.data, cfg.data, cfg.data_root)
    splits = select_splits(ds, cfg.splits, cfg.max_samples)
    bn_x = select_splits(ds, ("train",), cfg.max_samples)["train"][0]
    n = {s: int(len(v[0])) for s, v in splits.items()}
    if grid.y is None:
        a, b = curve.end_params()
        d, plane = Directions({k: b[k] - a[k] for k in a}, None, "curve", "weights", "none", "none", None,
                              {"curve_kind": curve.kind}), None
    else:
        d, plane = curve_plane(curve)
    settings = _settings(cfg, file_sha256(cfg.curve), grid, n)
    with SurfaceLock.acquire(out):
        if out.exists() and not cfg.force and out.stat().st_size:
            open_surface(out, settings)
        else:
            data_meta = ds.meta() | {f"n_{s}": c for s, c in n.items()}
            create_surface(out, grid, _arrays(cfg.splits, grid.y is None), d,
                           _attrs(cfg, curve, model, data_meta, d, plane, n), settings)
        start, done = time.perf_counter(), 0
        with SurfaceWriter(out) as writer:
            pending = writer.pending()
            progress = Progress(grid.num_points, desc="curve", unit="pt", enabled=not cfg.quiet,
                                initial=grid.num_points - len(pending))
            for flat in pending:
                t0 = time.perf_counter()
                values = _evaluate(model, curve, d, grid, int(flat), bn_x, splits, cfg)
                writer.write_points(np.array([flat]), {k: np.array([v]) for k, v in values.items()},
                                    time.perf_counter() - t0)
                done += 1
                progress.update()
            progress.close()
        surface = read_surface(out)
        metrics = surface_metrics(surface) | (_barrier_metrics(surface, cfg.splits) if grid.y is None else {})
        seconds = time.perf_counter() - start
        run = {"finished": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()), "points": done,
               "seconds": round(seconds, 4), "points_per_second": round(done / seconds, 4) if seconds > 0 else 0.0,
               "ranks": 1, "device": "cpu", "threads": torch.get_num_threads()}
        update_attrs(out, {"metrics": metrics}, append_run=run)
    return out


def _evaluate(model: torch.nn.Module, curve: Curve, d: Directions, grid: Grid, flat: int, bn_x: torch.Tensor,
              splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]], cfg: CurveSurfaceConfig) -> dict[str, float]:
    values = evaluate_point(model, _point_state(curve, d, grid, flat, False), bn_x, splits, cfg.bn_batch_size,
                            cfg.batch_size)
    if grid.y is None:
        line = evaluate_point(model, _point_state(curve, d, grid, flat, True), bn_x, splits, cfg.bn_batch_size,
                              cfg.batch_size)
        values |= {f"line_{k}": v for k, v in line.items()}
    return values
