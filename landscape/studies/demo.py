"""The main job: skips versus no skips versus DenseNet, end to end, on the built-in data.

`run_demo(DemoConfig())` trains (or reuses cached checkpoints of) ResNets with and without skip
connections and a DenseNet, each to the same convergence criterion (train loss on the whole
train split, eval mode, at most `target_loss`, checked after each epoch, with a cap of `epochs`;
a net that cannot reach it stops at the cap and is reported as not converged), computes
filter-normalized 2D surfaces over [-1, 1]^2 with train and test loss for each, the Hessian's
extreme eigenvalues at each centre, a comparison figure, an interactive report, and a table of
metrics read back from the surface files. Then the paper's second experiment, small against
large batch (`landscape.studies.batch_study`).

Example:
    >>> result = run_demo(DemoConfig(quick=True))
    >>> result["rows"][0]["converged"]  # doctest: +SKIP
    'yes (3)'
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import LandscapeError
from ..system.messages import say
from .batch_study import BatchStudyConfig, run_batch_study
from .recipes import recipe_for
from .steps import format_table, store_centre_hessian, train_or_reuse

__all__ = [
    "DemoConfig", "DEFAULT_NETS", "QUICK_NETS", "run_demo", "train_net", "net_surface", "net_hessian",
    "render", "table_rows", "COLUMNS", "criterion_text", "batch_config", "STUDIES",
]

DEFAULT_NETS = (
    "resnet20", "resnet20_noshort", "resnet56", "resnet56_noshort", "resnet110", "resnet110_noshort",
    "densenet_bc40",
)
QUICK_NETS = ("resnet20", "resnet20_noshort", "densenet_bc40")
STUDIES = ("all", "skips", "batch")
QUICK_TARGET_LOSS = 0.5


@dataclass(frozen=True)
class DemoConfig:
    """Settings of `landscape demo` (the defaults took 17 minutes on 2 CPU cores, docs/demo.md).

    Why train loss <= 0.03: measured, ResNet-20/56/110 reach it after 18 / 21 / 21 epochs and
    DenseNet-BC-40 after 10 (each ends at 0.021-0.027); ResNet-110 stays at 0.023-0.03 once its
    learning rate drops, so 0.01 would leave it "not met". Each net's peak lr and epoch cap are
    its recipe (`landscape.studies.recipes`); `lr` / `epochs` set one for every net. Why 27x27:
    on `AMD EPYC: AVX-512 ..., bf16 native` (2 cores) the seven 27x27 surfaces take 522 s of the
    924 s skip comparison (training 218 s, Hessians 176 s); 29x29 would add ~80 s.
    """

    nets: tuple[str, ...] = DEFAULT_NETS  # on CIFAR: the paper's (`study_inputs.CIFAR_NETS`)
    resolution: int | None = None  # 27 on digits, the paper's 51 on CIFAR
    epochs: int | None = None  # the cap (the schedule spans it); None: each net's recipe (`recipes`)
    target_loss: float | None = 0.03  # convergence criterion: eval-mode train loss, checked each epoch
    study: str = "all"  # skips (the skip-connection comparison), batch (small vs large batch), all
    batch_size: int = 64
    batch_net: str = "vgg9"  # the batch study's net (the paper's; resnet20 is the other one we ran)
    lr: float | None = None  # peak learning rate for every net; None: each net's recipe
    quick: bool = False
    data: str = "digits"
    data_root: str | None = None
    device: str = "auto"
    seed: int = 0
    hessian_samples: int | None = None  # samples for the Hessian (None: the whole train split)
    curvature: bool = False  # also map |min/max eigenvalue| over the grid (slow)
    ckpt_dir: str = "ckpts/demo"
    surface_dir: str = "surfaces/demo"
    plot_dir: str = "plots"
    quiet: bool = False
    max_samples: int | None = None  # a seeded, class-stratified subset per split (CIFAR on a CPU)
    normalization: str | None = None  # paper, landscape or MEAN,STD (the built-in image sets)
    given: tuple[tuple[str, str], ...] = ()  # (net, checkpoint file) used instead of training net

    def __post_init__(self) -> None:
        if self.resolution is not None and (self.resolution < 3 or self.resolution % 2 == 0):
            raise LandscapeError(
                f"--resolution must be odd and at least 3 (so the grid has its centre), got {self.resolution}"
            )
        if not self.nets:
            raise LandscapeError("--nets needs at least one model name")
        if self.study not in STUDIES:
            raise LandscapeError(f"--study {self.study!r} is not one of {', '.join(STUDIES)}")
        if self.max_samples is not None and self.max_samples < 10:
            raise LandscapeError(f"--max-samples must be at least 10 (a sample per class), got {self.max_samples}")


def study_config(cfg: DemoConfig) -> DemoConfig:
    """The defaults that depend on the data: the paper's nets at 51x51 on CIFAR (the nets given
    with --ckpt are added), 27x27 on digits; on CIFAR-10 with a checkpoint from the paper's code
    (it records no data set), the paper's normalization for every net, unless --normalization."""
    from .study_inputs import foreign_given, study_defaults

    nets, resolution = study_defaults(cfg.data)
    if nets is None or cfg.nets != DEFAULT_NETS:
        nets = cfg.nets
    nets = tuple(nets) + tuple(n for n, _ in cfg.given if n not in nets)
    norm = cfg.normalization
    if norm is None and cfg.data == "cifar10" and foreign_given(cfg.given):
        norm = "paper"
    return replace(cfg, nets=nets, resolution=cfg.resolution or resolution or 27, normalization=norm)


def quick_config(cfg: DemoConfig) -> DemoConfig:
    """`--quick`: three nets, at most 3 epochs (criterion: train loss <= 0.5), a 5x5 grid, a
    512-sample Hessian, and the batch study's quick variant (what CI runs)."""
    nets = cfg.nets if cfg.nets != DEFAULT_NETS else QUICK_NETS + tuple(n for n, _ in cfg.given if n not in QUICK_NETS)
    target = QUICK_TARGET_LOSS if cfg.target_loss is not None else None
    return replace(
        cfg, nets=nets, resolution=5, epochs=3, target_loss=target, hessian_samples=cfg.hessian_samples or 512,
        ckpt_dir=cfg.ckpt_dir + "-quick", surface_dir=cfg.surface_dir + "-quick",
    )


def _say(cfg: DemoConfig, text: str) -> None:
    if not cfg.quiet:
        say(text)


def _stage(cfg: DemoConfig, text: str) -> None:
    _say(cfg, f"\n== {text}")


def train_net(cfg: DemoConfig, net: str, ds: Any = None) -> tuple[Path, float]:
    """Train `net` on `ds` (the study's data set), or reuse a cached checkpoint trained with
    the same recipe on the same samples, or import the checkpoint given for it (`--ckpt`)."""
    from ..jobs.train import TrainConfig

    path = Path(cfg.ckpt_dir) / f"{net}.pt"
    given = dict(cfg.given).get(net)
    if given is not None:
        from .study_inputs import import_checkpoint

        _say(cfg, f"using {given} for {net} (given with --ckpt; not trained here)")
        return import_checkpoint(given, net, ds if ds is not None else _dataset(cfg), path), 0.0
    recipe = recipe_for(net, cfg.lr, cfg.epochs)
    tcfg = TrainConfig(
        model=net, data=cfg.data, data_root=cfg.data_root, epochs=recipe.epochs, seed=cfg.seed,
        batch_size=cfg.batch_size, lr=recipe.lr, warmup_epochs=recipe.warmup_epochs, device=cfg.device,
        out=str(path), quiet=cfg.quiet, target_loss=cfg.target_loss,
    )

    def same_samples(ckpt: Any) -> bool:
        """Trained here on the same samples, normalized alike (not imported with --ckpt)."""
        return (
            ckpt.data.get("max_samples") == cfg.max_samples
            and (ds is None or ckpt.data.get("normalization") == ds.meta().get("normalization"))
            and "imported_from" not in ckpt.train
        )

    return train_or_reuse(tcfg, lambda text: _say(cfg, text), dataset=ds, also_same=same_samples)


def _dataset(cfg: DemoConfig) -> Any:
    """The study's data set: `--max-samples` (stratified, seeded by --seed) and `--normalization`."""
    from .study_inputs import study_dataset

    return study_dataset(cfg.data, cfg.data_root, cfg.max_samples, cfg.seed, cfg.normalization)


def net_surface(cfg: DemoConfig, net: str, ckpt: Path, comm: str = "serial") -> tuple[Path, float]:
    """The filter-normalized 2D surface of one net over [-1, 1]^2 (resumed if it exists).

    The job is prepared once: a file made with other settings (an older demo) is recomputed.
    """
    from ..jobs.compute import SurfaceConfig, run_or_recompute
    from ..jobs.distributed import executor_for

    out = Path(cfg.surface_dir) / f"{net}.h5"
    spec = f"-1:1:{cfg.resolution}"
    scfg = SurfaceConfig(
        ckpt=str(ckpt), x=spec, y=spec, out=str(out), device=cfg.device, curvature=cfg.curvature,
        comm=comm, quiet=cfg.quiet, data_root=cfg.data_root,
    )

    start = time.perf_counter()
    run_or_recompute(scfg, executor_for(comm), lambda text: _say(cfg, text))
    return out, time.perf_counter() - start


def net_hessian(cfg: DemoConfig, ckpt: Path, surface: Path) -> float:
    """Top and smallest Hessian eigenvalue at the centre, stored into the surface file."""
    from ..jobs.hessian_job import HessianConfig

    hcfg = HessianConfig(
        ckpt=str(ckpt), top_k=1, smallest=True, max_samples=cfg.hessian_samples,
        device=cfg.device, data_root=cfg.data_root, tol=1e-3 if not cfg.quick else 1e-2,
        iters=100 if not cfg.quick else 30,
    )
    return store_centre_hessian(hcfg, surface, _hessian_n(cfg, ckpt), lambda text: _say(cfg, text))


def _hessian_n(cfg: DemoConfig, ckpt: Path) -> int:
    from ..io.checkpoint import load_checkpoint

    n = int(load_checkpoint(ckpt).data.get("n_train", 0))
    return min(n, cfg.hessian_samples) if cfg.hessian_samples else n


COLUMNS = (
    ("net", "net", "{}"),
    ("converged", "converged (epochs)", "{}"),
    ("recipe", "recipe", "{}"),
    ("test_err", "test err %", "{:.2f}"),
    ("center_train_loss", "centre train loss", "{:.4f}"),
    ("center_test_loss", "centre test loss", "{:.4f}"),
    ("top_eigenvalue", "lambda_max", "{:.4g}"),
    ("eig_ratio", "|lmin/lmax|", "{:.3f}"),
    ("basin_width_x", "basin width x", "{:.3f}"),
    ("basin_width_y", "basin width y", "{:.3f}"),
    ("max_rise_r0.25", "rise r<=0.25", "{:.4g}"),
    ("max_rise_r0.5", "rise r<=0.5", "{:.4g}"),
    ("basin_fraction", "basin frac", "{:.3f}"),
    ("flat_curvature_fraction", "flat curv frac", "{:.3f}"),
)


def table_rows(surfaces: Sequence[str | Path]) -> list[dict[str, Any]]:
    """One row of metrics per surface file, read back from the files (never typed)."""
    from ..io.storage import read_surface

    rows = []
    for path in surfaces:
        s = read_surface(path)
        m = dict(s.metrics)
        hess = s.attrs.get("hessian") or {}
        row: dict[str, Any] = {"net": s.attrs.get("model", Path(path).stem)}
        trained = s.attrs.get("checkpoint_metrics") or {}
        if isinstance(trained, dict) and "criterion_met" in trained:
            met = "yes" if trained["criterion_met"] else "no"
            row["converged"] = f"{met} ({int(trained['epochs_used'])})"
        if isinstance(trained, dict) and "peak_lr" in trained:
            cap = f", cap {int(trained['epoch_cap'])}" if "epoch_cap" in trained else ""
            row["recipe"] = f"lr {trained['peak_lr']:g}{cap}"
        if "center_test_acc" in m:
            row["test_err"] = 100.0 - m["center_test_acc"]
        for key, *_ in COLUMNS[4:]:
            if key in m and m[key] is not None:
                row[key] = m[key]
        if isinstance(hess, dict) and hess.get("eig_ratio") is not None:
            row["eig_ratio"] = hess["eig_ratio"]
        rows.append(row)
    return rows


def criterion_text(cfg: DemoConfig) -> str:
    """The convergence criterion and the recipes in words (printed above the table)."""
    caps = f"at most {cfg.epochs} epochs" if cfg.epochs is not None else "at most each net's cap"
    if cfg.target_loss is None:
        fixed = f"a fixed {cfg.epochs} epochs" if cfg.epochs is not None else "each net's epoch cap"
        return f"training: {fixed} (no convergence criterion)"
    return (
        f"convergence criterion: train loss (whole train split, eval mode, checked after each epoch) "
        f"<= {cfg.target_loss:g}, {caps} (the learning-rate schedule spans the cap); SGD + Nesterov, "
        f"batch {cfg.batch_size}, each net's peak lr and cap in the recipe column"
    )


def render(cfg: DemoConfig, surfaces: Sequence[Path]) -> tuple[list[Path], Path]:
    """The comparison figure, a contour and a 3D view per net, and the HTML report."""
    from ..io.storage import read_surface
    from ..render.comparison import save_comparison
    from ..render.figure_files import save_plots
    from ..render.report import write_report

    read = [read_surface(p) for p in surfaces]
    plot_dir = Path(cfg.plot_dir)
    suffix = "-quick" if cfg.quick else ""
    figures = [save_comparison(read, plot_dir / f"demo_compare{suffix}.png", surf="train_loss")]
    for s in read:
        for kind in ("contour", "surface"):
            figures += save_plots(s, out_dir=plot_dir / f"demo{suffix}", surfs=["train_loss"], kind=kind)
    return figures, write_report(read, plot_dir / f"report{suffix}.html")


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run the whole study; return the table rows, the files written and the time per stage."""
    cfg = study_config(cfg)
    if cfg.quick:
        cfg = quick_config(cfg)
    from ..models import create_model

    for net in (*cfg.nets, cfg.batch_net):  # fail on a bad name before training anything
        create_model(net)
    result: dict[str, Any] = {"rows": [], "surfaces": [], "figures": [], "report": None, "timings": {}}
    start = time.perf_counter()
    if cfg.study in ("all", "skips"):
        result = _skip_study(cfg)
    if cfg.study in ("all", "batch"):
        _stage(cfg, "the paper's second experiment: small against large batch, with and without weight decay")
        result["batch"] = run_batch_study(batch_config(cfg))
        result["figures"] = list(result["figures"]) + list(result["batch"]["figures"])
    result["total_s"] = time.perf_counter() - start
    if not cfg.quiet:
        say(f"\ndemo total {result['total_s']:.0f}s")
    return result


def batch_config(cfg: DemoConfig) -> BatchStudyConfig:
    """The batch study's settings under the demo's (its files beside the demo's, in batch/, or in
    batch-<net>/ for a net other than the default VGG-9)."""
    sub = "batch" if cfg.batch_net == BatchStudyConfig.net else f"batch-{cfg.batch_net}"
    return BatchStudyConfig(
        net=cfg.batch_net, data=cfg.data, data_root=cfg.data_root, device=cfg.device, seed=cfg.seed,
        quick=cfg.quick, ckpt_dir=f"{cfg.ckpt_dir}/{sub}", surface_dir=f"{cfg.surface_dir}/{sub}", plot_dir=cfg.plot_dir,
        quiet=cfg.quiet, tag="" if sub == "batch" else cfg.batch_net,
    )


def _say_estimate(cfg: DemoConfig, ds: Any) -> None:
    """On CIFAR without a GPU: how long the study will take, measured, and how to shorten it."""
    from ..system.device import resolve_device
    from .study_inputs import cpu_estimate

    device = resolve_device(cfg.device)
    if cfg.quiet or cfg.data not in ("cifar10", "cifar100") or device.type == "cuda":
        return
    nets = tuple(n for n in cfg.nets if n not in dict(cfg.given))
    epochs = max(recipe_for(n, cfg.lr, cfg.epochs).epochs for n in nets or cfg.nets)
    say(cpu_estimate(nets or cfg.nets, ds, cfg.resolution or 51, 0 if not nets else epochs, device.type))


def _skip_study(cfg: DemoConfig) -> dict[str, Any]:
    """Skips against no skips against DenseNet: train, surfaces, Hessians, figures, table."""
    timings: dict[str, dict[str, float]] = {}
    surfaces: list[Path] = []
    total = len(cfg.nets)
    start = time.perf_counter()
    ds = _dataset(cfg)
    _say_estimate(cfg, ds)
    for i, net in enumerate(cfg.nets, 1):
        until = f"until train loss <= {cfg.target_loss:g}, at most " if cfg.target_loss is not None else ""
        recipe = recipe_for(net, cfg.lr, cfg.epochs)
        how = f"lr {recipe.lr:g}: {recipe.why}" if net not in dict(cfg.given) else "given with --ckpt"
        _stage(cfg, f"[{i}/{total}] {net}: training ({until}{recipe.epochs} epochs on {cfg.data}, {how})")
        ckpt, t_train = train_net(cfg, net, ds)
        _stage(cfg, f"[{i}/{total}] {net}: surface {cfg.resolution}x{cfg.resolution} over [-1, 1]^2")
        surf, t_surf = net_surface(cfg, net, ckpt)
        _stage(cfg, f"[{i}/{total}] {net}: Hessian eigenvalues at the centre")
        t_hess = net_hessian(cfg, ckpt, surf)
        timings[net] = {"train_s": t_train, "surface_s": t_surf, "hessian_s": t_hess}
        surfaces.append(surf)
    _stage(cfg, "figures and report")
    t0 = time.perf_counter()
    figures, report = render(cfg, surfaces)
    t_render = time.perf_counter() - t0
    rows = table_rows(surfaces)
    if not cfg.quiet:
        say("\n" + criterion_text(cfg) + "\n" + format_table(COLUMNS, rows))
        say("\nseconds per stage: " + ", ".join(
            f"{net} train {t['train_s']:.0f} surface {t['surface_s']:.0f} hessian {t['hessian_s']:.0f}"
            for net, t in timings.items()
        ) + f"; render {t_render:.0f}; total {time.perf_counter() - start:.0f}")
        say(f"wrote {len(surfaces)} surfaces in {cfg.surface_dir}/, {len(figures)} figures in "
              f"{cfg.plot_dir}/, and {report}")
    return {
        "rows": rows, "surfaces": surfaces, "figures": figures, "report": report,
        "timings": timings, "render_s": t_render, "total_s": time.perf_counter() - start,
    }
