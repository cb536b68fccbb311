"""The paper's second experiment: small-batch against large-batch minima, with and without weight decay.

Li et al. (2018, section 4, Fig. 2-3) train the same net with a small and a large batch, each with
and without weight decay, then compare two kinds of 1D plots:

- the raw linear interpolation between the small-batch and the large-batch minimum (Goodfellow et
  al.'s plot): alpha = 0 is the small-batch net, alpha = 1 the large-batch one. Its apparent
  sharpness depends on the weights' scale, which weight decay changes, so it can say either net
  is the flatter one;
- the loss along a filter-normalized random direction around each minimum, on one axis scale:
  with the scale removed, the flatter minimum is the one that generalizes better.

`run_batch_study` trains the four nets (each to the same convergence criterion, or a cap), computes
the two interpolations and the four 1D surfaces with the library's job builder, the Hessian's top
eigenvalue at each minimum, writes two figures and prints a table of sharpness numbers read back
from the files. The paper's net, VGG-9 (no skips, where the effect is strongest), on the demo's
data; `net="resnet20"` runs the same study on ResNet-20 (about 1 and 2 minutes on 2 CPU cores).

Example:
    >>> result = run_batch_study(BatchStudyConfig(quick=True))
    >>> print(format_table(BATCH_COLUMNS, result["rows"]))  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import LandscapeError
from ..system.messages import say
from .steps import format_table, store_centre_hessian, train_or_reuse

__all__ = [
    "BatchStudyConfig", "BatchRun", "quick_batch_config", "batch_runs", "run_batch_study",
    "weight_norm", "interpolation_widths", "batch_table_rows", "BATCH_COLUMNS",
]


@dataclass(frozen=True)
class BatchStudyConfig:
    """Settings of the batch-size study (the defaults take about 2 minutes on 2 CPU cores)."""

    net: str = "vgg9"
    data: str = "digits"
    data_root: str | None = None
    small_batch: int = 32
    large_batch: int = 1024
    weight_decays: tuple[float, ...] = (0.0, 5e-4)
    lr: float = 0.1
    epochs: int = 60  # the cap
    target_loss: float | None = 0.02  # eval-mode train loss each net is trained to
    points: int = 41  # 1D grid points; the interpolation spans [-0.5, 1.5], the directions [-1, 1]
    margin: float = 0.1  # loss rise that bounds a basin's width
    hessian_samples: int | None = 512
    seed: int = 0
    device: str = "auto"
    quick: bool = False
    ckpt_dir: str = "ckpts/demo/batch"
    surface_dir: str = "surfaces/demo/batch"
    plot_dir: str = "plots"
    quiet: bool = False
    tag: str = ""  # figure names: batch_interpolation-<tag>.png (another net's, beside the default's)

    def __post_init__(self) -> None:
        if self.points < 5 or (self.points - 1) % 4:
            raise LandscapeError(
                f"the batch study's --points must be 4k+1 and at least 5 (so alpha 0 and 1 are grid "
                f"points), got {self.points}; try 41"
            )
        if not 1 <= self.small_batch < self.large_batch:
            raise LandscapeError(
                f"the small batch ({self.small_batch}) must be smaller than the large one ({self.large_batch})"
            )
        if not self.weight_decays or any(not (w >= 0 and math.isfinite(w)) for w in self.weight_decays):
            raise LandscapeError(f"weight decays must be finite and >= 0, got {self.weight_decays}")


def quick_batch_config(cfg: BatchStudyConfig) -> BatchStudyConfig:
    """The quick variant (tests, `landscape demo --quick`): ResNet-8, 2 epochs (criterion train
loss <= 0.5), 5 points per line, a 128-sample Hessian."""
    net = cfg.net if cfg.net != BatchStudyConfig.net else "resnet8"
    return replace(
        cfg, net=net, epochs=2, target_loss=0.5, points=5, hessian_samples=128,
        ckpt_dir=_quick_dir(cfg.ckpt_dir, BatchStudyConfig.ckpt_dir),
        surface_dir=_quick_dir(cfg.surface_dir, BatchStudyConfig.surface_dir),
    )


def _quick_dir(folder: str, default: str) -> str:
    """The default folders get a quick twin (`ckpts/demo-quick/batch`); a chosen one is kept."""
    return folder.replace("demo", "demo-quick", 1) if folder == default else folder


@dataclass(frozen=True)
class BatchRun:
    """One trained net of the study: its batch size and weight decay, and stable file names."""

    batch: int
    weight_decay: float
    kind: str  # "small" or "large"

    @property
    def name(self) -> str:
        return f"{self.kind}_wd{self.weight_decay:g}"

    @property
    def label(self) -> str:
        return f"{self.kind} batch ({self.batch}), wd {self.weight_decay:g}"


def batch_runs(cfg: BatchStudyConfig) -> list[BatchRun]:
    """The nets to train: small and large batch for each weight decay."""
    return [
        BatchRun(b, wd, kind)
        for wd in cfg.weight_decays
        for kind, b in (("small", cfg.small_batch), ("large", cfg.large_batch))
    ]


def _say(cfg: BatchStudyConfig, text: str) -> None:
    if not cfg.quiet:
        say(text)


def _train(cfg: BatchStudyConfig, run: BatchRun) -> tuple[Path, float]:
    """Train one net, or reuse its checkpoint when it was trained with the same recipe."""
    from ..jobs.train import TrainConfig

    tcfg = TrainConfig(
        model=cfg.net, data=cfg.data, data_root=cfg.data_root, epochs=cfg.epochs, seed=cfg.seed,
        batch_size=run.batch, lr=cfg.lr, weight_decay=run.weight_decay, target_loss=cfg.target_loss,
        device=cfg.device, out=str(Path(cfg.ckpt_dir) / f"{run.name}.pt"), quiet=True,
    )

    def done(ckpt: Any, seconds: float) -> str:
        met = ckpt.train.get("criterion_met")
        return (f"{run.label}: {ckpt.train['epochs_used']} epochs, train loss {ckpt.metrics['train_loss']:.4f}"
                + ("" if met is None else f", criterion {'met' if met else 'not met'}") + f" ({seconds:.1f}s)")

    return train_or_reuse(tcfg, lambda text: _say(cfg, text), done)


def _surface(cfg: BatchStudyConfig, out: Path, **settings: Any) -> float:
    """A 1D surface through the library's job builder (recomputed when its settings changed)."""
    from ..jobs.compute import SurfaceConfig, run_or_recompute
    from ..jobs.distributed import executor_for

    scfg = SurfaceConfig(out=str(out), device=cfg.device, comm="serial", quiet=True,
                         data_root=cfg.data_root, **settings)
    start = time.perf_counter()
    run_or_recompute(scfg, executor_for("serial"), lambda text: _say(cfg, text))
    return time.perf_counter() - start


def _hessian(cfg: BatchStudyConfig, ckpt: Path, surface: Path) -> float:
    """The top Hessian eigenvalue at the minimum, stored into its 1D surface file."""
    from ..jobs.hessian_job import HessianConfig

    hcfg = HessianConfig(
        ckpt=str(ckpt), top_k=1, max_samples=cfg.hessian_samples, device=cfg.device,
        data_root=cfg.data_root, tol=1e-2 if cfg.quick else 1e-3, iters=10 if cfg.quick else 100,
    )
    return store_centre_hessian(hcfg, surface, cfg.hessian_samples)


def weight_norm(ckpt: str | Path) -> float:
    """L2 norm of a checkpoint's conv and linear weights (tensors of 2 or more dims; no BN, no bias)."""
    from ..io.checkpoint import load_checkpoint

    state = load_checkpoint(ckpt).state_dict
    return math.sqrt(sum(float((t.double() ** 2).sum()) for k, t in state.items()
                         if k.endswith("weight") and t.dim() >= 2))


def interpolation_widths(surface: Any, margin: float) -> dict[str, float]:
    """Basin widths along the raw interpolation line, around alpha = 0 and alpha = 1 (in alpha).

    Walking both ways from each minimum, the distance at which the train loss first exceeds that
    minimum's own by `margin` (see `landscape.core.metrics.basin_half_width`).
    """
    import numpy as np

    from ..core.metrics import basin_half_width

    x = np.asarray(surface.x, dtype=float)
    loss = np.where(surface.computed, surface.arrays["train_loss"], np.nan)
    out = {}
    for key, alpha in (("small", 0.0), ("large", 1.0)):
        i = int(np.argmin(np.abs(x - alpha)))
        level = float(loss[i]) + margin
        left, _ = basin_half_width(x, loss, i, -1, level)
        right, _ = basin_half_width(x, loss, i, +1, level)
        out[key] = left + right
    return out


BATCH_COLUMNS = (
    ("run", "net", "{}"),
    ("converged", "converged (epochs)", "{}"),
    ("train_loss", "train loss", "{:.4f}"),
    ("test_err", "test err %", "{:.2f}"),
    ("weight_norm", "weight norm", "{:.2f}"),
    ("top_eigenvalue", "lambda_max", "{:.4g}"),
    ("width_filter", "width filter-norm", "{:.3f}"),
    ("width_interp", "width raw interp", "{:.3f}"),
)


def batch_table_rows(cfg: BatchStudyConfig) -> list[dict[str, Any]]:
    """One row per trained net, read back from its checkpoint and surface files (never typed)."""
    from ..io.storage import read_surface

    surf_dir = Path(cfg.surface_dir)
    interp = {wd: interpolation_widths(read_surface(surf_dir / f"interp_wd{wd:g}.h5"), cfg.margin)
              for wd in cfg.weight_decays}
    rows = []
    for run in batch_runs(cfg):
        s = read_surface(surf_dir / f"{run.name}.h5")
        m, trained = dict(s.metrics), s.attrs.get("checkpoint_metrics") or {}
        row: dict[str, Any] = {"run": run.name}
        if "criterion_met" in trained:
            row["converged"] = f"{'yes' if trained['criterion_met'] else 'no'} ({int(trained['epochs_used'])})"
        if "center_train_loss" in m:
            row["train_loss"] = m["center_train_loss"]
        if "center_test_acc" in m:
            row["test_err"] = 100.0 - m["center_test_acc"]
        row["weight_norm"] = weight_norm(Path(cfg.ckpt_dir) / f"{run.name}.pt")
        if m.get("top_eigenvalue") is not None:
            row["top_eigenvalue"] = m["top_eigenvalue"]
        if m.get("basin_width_x") is not None:
            row["width_filter"] = m["basin_width_x"]
        row["width_interp"] = interp[run.weight_decay][run.kind]
        rows.append(row)
    return rows


def _shared_scale(drawn: dict[str, Any]) -> None:
    if drawn.get("twin") is not None:  # one accuracy scale on every panel
        drawn["twin"].set_ylim(0.0, 100.0)


def render_batch(cfg: BatchStudyConfig) -> list[Path]:
    """Two figures: the raw interpolations (one panel per weight decay), and the filter-normalized
    1D surfaces around each minimum (one panel per net, one loss scale for all)."""
    import numpy as np
    from matplotlib.figure import Figure  # no pyplot: no global figure state

    from ..io.outputs import atomic_write, check_output
    from ..io.storage import read_surface
    from ..render.plotting import plot_line

    surf_dir, plot_dir = Path(cfg.surface_dir), Path(cfg.plot_dir)
    suffix = (f"-{cfg.tag}" if cfg.tag else "") + ("-quick" if cfg.quick else "")
    names = {"small": f"small batch {cfg.small_batch}", "large": f"large batch {cfg.large_batch}"}
    written: list[Path] = []

    def save(fig: Any, out: Path) -> None:  # temp file, then rename (landscape/io/outputs.py)
        check_output(out, "png")
        with atomic_write(out, "write figure", make_folder=True) as tmp:
            fig.savefig(tmp, dpi=120, format="png", bbox_inches="tight")
        written.append(out)

    loss_top = 5.0  # the paper's 1D plots show losses up to about 5; higher walls leave the axes
    interps = [(wd, read_surface(surf_dir / f"interp_wd{wd:g}.h5")) for wd in cfg.weight_decays]
    fig = Figure(figsize=(5.2 * len(interps), 4.0))
    axes = fig.subplots(1, len(interps), squeeze=False)
    top = max(float(np.nanmax(s.arrays["test_loss"] if "test_loss" in s.arrays else s.arrays["train_loss"]))
              for _, s in interps)
    for ax, (wd, s) in zip(axes[0], interps):
        _shared_scale(plot_line(s, ax=ax, ylim=(0.0, min(top, loss_top)), title=False))
        ax.set_title(f"raw interpolation, wd {wd:g}\n"
                     f"alpha 0: {names['small']}, alpha 1: {names['large']}", fontsize=9)
        ax.set_xlabel("alpha")
    fig.tight_layout()
    save(fig, plot_dir / f"batch_interpolation{suffix}.png")

    runs = batch_runs(cfg)
    curves = [(run, read_surface(surf_dir / f"{run.name}.h5")) for run in runs]
    top = max(float(np.nanmax(s.arrays["train_loss"])) for _, s in curves)
    cols = 2
    rows = math.ceil(len(curves) / cols)
    fig = Figure(figsize=(5.2 * cols, 3.6 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (run, s) in zip(axes.flat, curves):
        _shared_scale(plot_line(s, ax=ax, ylim=(0.0, min(top, loss_top)), title=False))
        lam = s.metrics.get("top_eigenvalue")
        ax.set_title(f"{run.label}: weight norm {weight_norm(Path(cfg.ckpt_dir) / f'{run.name}.pt'):.1f}"
                     + (f", lambda_max {lam:.3g}" if lam is not None else ""), fontsize=9)
        ax.set_xlabel("filter-normalized random direction")
    for ax in list(axes.flat)[len(curves):]:
        ax.set_visible(False)
    fig.tight_layout()
    save(fig, plot_dir / f"batch_directions{suffix}.png")
    return written


def run_batch_study(cfg: BatchStudyConfig) -> dict[str, Any]:
    """Train, compute, draw and tabulate the study; return rows, files and the time per stage."""
    if cfg.quick:
        cfg = quick_batch_config(cfg)
    from ..models import create_model

    create_model(cfg.net)  # a bad name fails before training anything
    start = time.perf_counter()
    timings: dict[str, float] = {"train_s": 0.0, "surface_s": 0.0, "hessian_s": 0.0}
    ckpts: dict[str, Path] = {}
    until = f"train loss <= {cfg.target_loss:g} or " if cfg.target_loss is not None else ""
    _say(cfg, f"training {cfg.net} on {cfg.data} with batch {cfg.small_batch} and {cfg.large_batch}, "
              f"weight decay {', '.join(f'{w:g}' for w in cfg.weight_decays)} ({until}{cfg.epochs} epochs)")
    for run in batch_runs(cfg):
        ckpts[run.name], t = _train(cfg, run)
        timings["train_s"] += t
    surf_dir = Path(cfg.surface_dir)
    line = f"-1:1:{cfg.points}"
    surfaces = []
    for wd in cfg.weight_decays:  # alpha 0: the small-batch net, alpha 1: the large-batch one
        out = surf_dir / f"interp_wd{wd:g}.h5"
        small, large = (ckpts[BatchRun(0, wd, k).name] for k in ("small", "large"))
        timings["surface_s"] += _surface(cfg, out, ckpt=str(small), ckpt2=str(large),
                                         x=f"-0.5:1.5:{cfg.points}")
        surfaces.append(out)
    for run in batch_runs(cfg):
        out = surf_dir / f"{run.name}.h5"
        timings["surface_s"] += _surface(cfg, out, ckpt=str(ckpts[run.name]), x=line)
        timings["hessian_s"] += _hessian(cfg, ckpts[run.name], out)
        surfaces.append(out)
    t0 = time.perf_counter()
    figures = render_batch(cfg)
    timings["render_s"] = time.perf_counter() - t0
    rows = batch_table_rows(cfg)
    if not cfg.quiet:
        say(f"\nbatch study: widths are where the train loss first rises {cfg.margin:g} above the "
              f"minimum's (filter-normalized direction in [-1, 1]; raw interpolation in alpha)")
        say(format_table(BATCH_COLUMNS, rows))
        say("\nseconds: " + ", ".join(f"{k[:-2]} {v:.0f}" for k, v in timings.items())
              + f"; total {time.perf_counter() - start:.0f}")
    return {"rows": rows, "surfaces": surfaces, "figures": figures, "checkpoints": list(ckpts.values()),
            "timings": timings, "total_s": time.perf_counter() - start}
