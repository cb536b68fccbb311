"""`landscape hessian`: the Hessian spectrum of a checkpoint on its data, and storing it into a surface.

`compute_hessian(HessianConfig(ckpt=...))` loads the checkpoint and data and runs
`landscape.engine.hessian.hessian_spectrum`; `store_hessian(surface, result)` writes the result
into a surface file's `hessian` attribute (one writer: under the surface's lock) and recomputes
its metrics.

Example:
    >>> result = compute_hessian(HessianConfig(ckpt="ckpts/resnet20.pt", top_k=3, smallest=True))
    >>> store_hessian("surfaces/resnet20.h5", result)["top_eigenvalue"]  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..engine.hessian import HESSIAN_IGNORES, HessianResult, check_finite_weights, hessian_spectrum
from ..engine.spectral_density import DensityConfig
from ..errors import LandscapeError
from ..system.seeds import check_seed

__all__ = ["HessianConfig", "compute_hessian", "store_hessian"]


@dataclass(frozen=True)
class HessianConfig:
    """Everything `landscape hessian` takes (see `landscape hessian --help`)."""

    ckpt: str
    model: str | None = None
    data: str | None = None
    data_root: str | None = None
    data_test: str | None = None
    split: str = "train"
    max_samples: int | None = None
    trust_torchscript: bool = False  # a TorchScript --ckpt runs its own code: only when asked
    normalization: str | None = None  # paper, landscape or MEAN,STD (default: the checkpoint's)
    batch_size: int | None = None
    top_k: int = 5
    smallest: bool = False
    trace: bool = False
    trace_samples: int = 100
    trace_tol: float = 0.01
    exact_trace: bool = False
    iters: int = 100
    tol: float = 1e-3
    seed: int = 0
    device: str = "auto"
    ignore: str = "biasbn"
    loss: str = "cross_entropy"
    dtype: str = "float32"
    density: DensityConfig | None = None  # the spectral density too (--density)

    def __post_init__(self) -> None:
        if self.split not in ("train", "test"):
            raise LandscapeError(f"--split {self.split!r}: use train or test")
        if self.ignore not in HESSIAN_IGNORES:
            raise LandscapeError(f"--ignore {self.ignore!r} is not one of {', '.join(HESSIAN_IGNORES)}")
        if self.dtype not in ("float32", "float64"):
            raise LandscapeError(f"--dtype {self.dtype!r}: use float32 or float64")
        if self.top_k < 0 or (self.top_k == 0 and not self.smallest):
            raise LandscapeError(f"--top-k must be at least 1 (or 0 with --min), got {self.top_k}")
        if self.iters < 1:
            raise LandscapeError(f"--iters must be at least 1, got {self.iters}")
        if not (self.tol > 0 and math.isfinite(self.tol)):
            raise LandscapeError(f"--tol must be a positive number, got {self.tol}")
        check_seed("--seed", self.seed)
        if self.max_samples is not None and self.max_samples < 1:
            raise LandscapeError(f"--max-samples must be at least 1, got {self.max_samples}")
        if self.data_test is not None and self.split != "test":
            raise LandscapeError(
                f"--data-test {self.data_test} has no effect with --split {self.split}; add "
                "--split test, or drop --data-test"
            )


def _load_data(cfg: HessianConfig, ckpt: Any) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    from ..data.sources import dataset_for_checkpoint

    ds = dataset_for_checkpoint(cfg.ckpt, ckpt.data, cfg.data, cfg.data_root, cfg.data_test, cfg.normalization)
    x, y = ds.split(cfg.split)
    if cfg.max_samples is not None:
        x, y = x[: cfg.max_samples], y[: cfg.max_samples]
    return x, y, {"name": ds.name, "split": cfg.split, "n": int(len(x))}


def compute_hessian(cfg: HessianConfig) -> HessianResult:
    """Load the checkpoint and data of a configuration and compute its Hessian spectrum."""
    from ..engine.inputs import check_fits
    from ..io.checkpoint import build_model, file_sha256, load_checkpoint
    from ..system.device import resolve_device

    ckpt = load_checkpoint(cfg.ckpt, model=cfg.model, trust_torchscript=cfg.trust_torchscript)
    model = build_model(ckpt)
    check_finite_weights(model.state_dict(), f"checkpoint {cfg.ckpt}")
    x, y, data = _load_data(cfg, ckpt)
    check_fits(model, x[:2], f"data split {cfg.split!r}")
    device = resolve_device(cfg.device)
    res = hessian_spectrum(
        model, x, y, cfg.top_k, cfg.smallest, cfg.trace, cfg.trace_samples, cfg.trace_tol,
        cfg.exact_trace, cfg.iters, cfg.tol, cfg.seed, cfg.loss, cfg.ignore, cfg.batch_size,
        device, torch.float64 if cfg.dtype == "float64" else torch.float32, density=cfg.density,
    )
    res.extra.update(
        checkpoint=str(cfg.ckpt),
        checkpoint_sha256=file_sha256(cfg.ckpt),
        model=ckpt.model,
        data=data["name"],
        split=data["split"],
        device=str(device),
        dtype=cfg.dtype,
    )
    return res


def store_hessian(surface: str | Path, result: HessianResult) -> dict[str, Any]:
    """Write `result` into a surface file's attrs['hessian'] and recompute attrs['metrics'].

    Refuses a surface computed around another checkpoint, or one that another run is writing.
    Returns the new metrics.
    """
    from ..io.lock import SurfaceLock
    from ..io.storage import read_surface

    read_surface(surface)  # a missing or foreign file is refused before any lock is made
    with SurfaceLock.acquire(Path(surface)):  # a surface run writing this file is not disturbed
        return _store_hessian(surface, result)


def _store_hessian(surface: str | Path, result: HessianResult) -> dict[str, Any]:
    from ..core.metrics import surface_metrics
    from ..io.storage import read_surface, update_attrs

    s = read_surface(surface)
    info = result.to_dict()
    stored = s.attrs.get("checkpoint_sha256")
    mine = info.get("checkpoint_sha256")
    if stored and mine and stored != mine:
        raise LandscapeError(
            f"{surface} was computed around another checkpoint ({s.attrs.get('checkpoint')}); "
            "store the Hessian of that checkpoint, or choose the matching surface"
        )
    update_attrs(surface, {"hessian": info})
    metrics = surface_metrics(read_surface(surface))
    update_attrs(surface, {"metrics": metrics})
    return metrics
