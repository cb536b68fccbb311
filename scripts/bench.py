"""Benchmark: the paper's per-point algorithm against the landscape engine, side by side.

Measured in one run, on the same model, data and grid:

1. resnet20 on 2,048 32x32x3 images: the paper's algorithm (per point: write the weights into
   the model, a DataLoader with per-image normalization from uint8 images at batch 128, the
   whole result arrays rewritten per point), the engine at fp32 and bf16 (full pipeline with
   HDF5 writes), the engine forced to batch grid points with vmap (to show why it does not on a
   CPU), and the engine's GFLOP/s against the practical limit: the model's own convolution
   shapes timed alone (same dtype and layout, batch 256).
2. densenet_bc40 on the same data: the paper's algorithm against the engine at fp32.
3. a small MLP on digits over a 101x101 grid: the paper's algorithm (timed on a sample of the
   points: its per-point cost does not depend on which point) against the engine on all points.
4. plans chosen by measurement (`--plans-only` runs only this): resnet20 on 1,024 32x32x3 images
   over a 9x9 grid: the engine with default settings (its trial of candidate plans included in
   its time), each candidate plan forced (`landscape.engine.planning.candidate_plans`, evaluated over
   every point by the evaluator, without the file writes), and the paper's algorithm.

5. a busy machine (`--busy-only` runs only this): a resnet20 surface on digits computed by the
   `landscape surface` command in a subprocess, as users run it, on the machine as it is and
   beside one competing busy process (a single-threaded Python loop), with the old defaults
   (all cores as threads, OpenMP threads spinning while they wait: OMP_WAIT_POLICY=ACTIVE),
   torch's plain defaults (GNU OpenMP's bounded spin) and the new ones. Each time is reported
   as a ratio to its fair share: the time without the busy process x cores / (cores - 1) (x 2 on
   a 2-core machine, or on one core), of the same settings and of the fastest settings.
6. surfaces useful early: a resnet20 surface (256 images, 25x25) computed coarse to fine, the
   time until the whole range exists at half the resolution against the whole run.

The paper's algorithm runs in a fresh Python process, as its users run it; it is also timed in
the benchmark's own process, which has the allocator setting every `landscape` command applies
(`landscape.system.device.tune_host_allocator`), so that the ratios against both are printed.

7. bf16 against fp32 (`--bf16-only`): the engine's bf16 plan against its fp32 plan on resnet20 at
   32x32, interleaved, warm-up apart, the ratio printed, and whether the CPU has native bf16
   (`scripts/bench_bf16.py`, which also runs alone).

Usage: python scripts/bench.py [--quick] [--plans-only] [--busy-only] [--preview-only] [--bf16-only] [--json results.json]
(the --*-only flags combine; without any, every section runs)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from landscape.core.directions import Directions, random_directions
from landscape.core.grid import Axis, Grid, level_points, level_spacings, point_levels
from landscape.core.preview import complete_level
from landscape.engine.evaluate import PointEvaluator
from landscape.engine.planning import candidate_plans
from landscape.jobs.job import Engine, Plane, Record, SurfaceJob, Target
from landscape.jobs.runner import run_job
from landscape.models import create_model
from landscape.system.cpu import cpu_info
from landscape.system.device import tune_host_allocator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bf16 import bench_bf16  # noqa: E402
from bench_bf16 import report as bf16_report  # noqa: E402

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


# ---------------------------------------------------------------------------------------------
# the paper's algorithm, written from its description (REFERENCE.md), not its code


class _UInt8Images(torch.utils.data.Dataset):
    """Images stored as uint8 HWC, converted and normalized one image at a time (ToTensor+Normalize)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean: tuple, std: tuple, scale: float) -> None:
        self.images, self.labels, self.scale = images, labels, scale
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = torch.from_numpy(self.images[i]).permute(2, 0, 1).float().div(self.scale)
        return (img - self.mean) / self.std, int(self.labels[i])


def paper_surface(model: nn.Module, d: Directions, dataset: torch.utils.data.Dataset,
                  coords: np.ndarray, grid_shape: tuple[int, ...], path: Path) -> float:
    """Per point: weights = w + a*dx + b*dy written into the model, a full DataLoader pass,
    and the whole loss/accuracy arrays rewritten into the HDF5 file. Returns seconds.
    On a GPU (the model's device), each batch is copied there from host memory."""
    model = model.eval()
    device = next(model.parameters()).device
    names = [n for n, _ in model.named_parameters()]
    params = dict(model.named_parameters())
    w0 = {n: params[n].detach().clone() for n in names}
    # the paper keeps directions as HDF5 datasets and re-reads them per point
    with h5py.File(path.with_suffix(".dirs.h5"), "w") as f:
        for axis, dd in (("x", d.x), ("y", d.y)):
            if dd is not None:
                for i, n in enumerate(names):
                    f.create_dataset(f"{axis}/{i}", data=dd[n].numpy())
    losses = -np.ones(grid_shape)
    accs = -np.ones(grid_shape)
    with h5py.File(path, "w") as f:
        f["train_loss"] = losses
        f["train_acc"] = accs
    loader = DataLoader(dataset, batch_size=128, shuffle=False, num_workers=0)
    start = time.perf_counter()
    fd = h5py.File(path.with_suffix(".dirs.h5"), "r")
    for flat, c in enumerate(coords):
        with torch.no_grad():
            for i, n in enumerate(names):
                step = torch.from_numpy(fd[f"x/{i}"][()]) * float(c[0])
                if len(c) > 1 and d.y is not None:
                    step = step + torch.from_numpy(fd[f"y/{i}"][()]) * float(c[1])
                params[n].data = w0[n] + step.to(device)
            total, correct, n_seen = 0.0, 0, 0
            for xb, yb in loader:
                xb, yb = xb.to(device), yb.to(device)
                out = model(xb)
                total += F.cross_entropy(out, yb, reduction="sum").item()
                correct += (out.argmax(1) == yb).sum().item()
                n_seen += len(yb)
        losses.ravel()[flat] = total / n_seen
        accs.ravel()[flat] = 100.0 * correct / n_seen
        with h5py.File(path, "r+") as f:  # whole arrays rewritten after every point
            f["train_loss"][...] = losses
            f["train_acc"][...] = accs
            f.flush()
    fd.close()
    for n in names:
        params[n].data = w0[n]
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# the engine


def engine_surface(model: nn.Module, d: Directions, x: torch.Tensor, y: torch.Tensor, grid: Grid,
                   path: Path, **plan: object) -> tuple[float, dict]:
    """The full pipeline (plan, evaluate, HDF5 chunk writes). Returns (seconds, file attrs)."""
    job = SurfaceJob(Target(model, {"train": (x, y)}), Plane(d, grid),
                     Engine(torch.device("cpu"), quiet=True, **plan),  # type: ignore[arg-type]
                     Record(path, settings={"bench": True}, force=True))
    start = time.perf_counter()
    run_job(job)
    seconds = time.perf_counter() - start
    with h5py.File(path, "r") as f:
        attrs = {k: f.attrs[k] for k in f.attrs}
        loss = f["train_loss"][()]
    return seconds, {"attrs": attrs, "loss": loss}


def model_flops(model: nn.Module, x: torch.Tensor) -> float:
    """Forward FLOPs (2 x multiply-adds of convolutions and matmuls) for the input batch."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(x)
    return float(counter.get_total_flops())


def conv_limit(model: nn.Module, sample: torch.Tensor, dtype: torch.dtype, batch: int = 256) -> float:
    """GFLOP/s of the model's own convolution shapes timed alone (channels-last, `batch` images)."""
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append((m, i[0].shape)))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(sample[:1])
    for h in hooks:
        h.remove()
    total_flops, total_time = 0.0, 0.0
    for conv, shape in shapes:
        xin = torch.randn(batch, *shape[1:]).to(dtype).contiguous(memory_format=torch.channels_last)
        w = conv.weight.detach().to(dtype).contiguous(memory_format=torch.channels_last)
        b = torch.zeros(conv.out_channels, dtype=dtype)
        args = (xin, w, b, conv.stride, conv.padding, conv.dilation, conv.groups)
        with torch.no_grad():
            out = F.conv2d(*args)
            best = float("inf")
            for _ in range(5):  # best of 5 timed blocks of >= 3 calls
                reps, t = 0, time.perf_counter()
                while reps < 3 or time.perf_counter() - t < 0.1:
                    F.conv2d(*args)
                    reps += 1
                best = min(best, (time.perf_counter() - t) / reps)
        k = conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]
        total_flops += 2.0 * out.numel() * k
        total_time += best
    return total_flops / total_time / 1e9


def _dirs(model: nn.Module) -> Directions:
    return random_directions(model, seed=1, norm="filter", ignore="biasbn", two_d=True)


def _grid(n: int) -> Grid:
    return Grid(Axis(-1, 1, n), Axis(-1, 1, n))


def _cnn_data(n_images: int) -> tuple[_UInt8Images, torch.Tensor, torch.Tensor]:
    """Seeded uint8 images (the paper's input) and the same images normalized once (ours)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n_images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n_images)
    ds = _UInt8Images(images, labels, MEAN, STD, 255.0)
    x = torch.stack([ds[i][0] for i in range(n_images)])
    return ds, x, torch.from_numpy(labels)


def _cnn_model(name: str) -> tuple[nn.Module, Directions]:
    torch.manual_seed(0)
    model = create_model(name).eval()
    return model, _dirs(model)


def paper_cnn(name: str, n_images: int, grid_n: int, tmp: Path) -> float:
    """Seconds per point of the paper's algorithm on the CNN benchmark (this process)."""
    ds, _, _ = _cnn_data(n_images)
    model, d = _cnn_model(name)
    grid = _grid(grid_n)
    coords = grid.coords_of(np.arange(grid.num_points))
    return paper_surface(model, d, ds, coords, grid.shape, tmp / f"{name}_paper.h5") / grid.num_points


def paper_cnn_in_own_process(name: str, n_images: int, grid_n: int) -> float:
    """The paper's algorithm in a fresh Python process, as its users run it (default allocator)."""
    out = subprocess.run(
        [sys.executable, "-W", "ignore", __file__, "--paper-only", name, str(n_images), str(grid_n)],
        capture_output=True, text=True, check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def bench_cnn(name: str, n_images: int, grid_n: int, tmp: Path, extra: bool) -> dict:
    ds, x, y = _cnn_data(n_images)
    model, d = _cnn_model(name)
    grid = _grid(grid_n)
    res: dict = {"model": name, "images": n_images, "points": grid.num_points}
    res["paper_s_per_point"] = paper_cnn_in_own_process(name, n_images, grid_n)
    res["paper_tuned_s_per_point"] = paper_cnn(name, n_images, grid_n, tmp)
    s, out = engine_surface(model, d, x, y, grid, tmp / f"{name}_fp32.h5")
    res["engine_fp32_s_per_point"] = s / grid.num_points
    res["plan_fp32"] = json.loads(out["attrs"]["plan"])
    res["fp32_speedup"] = res["paper_s_per_point"] / res["engine_fp32_s_per_point"]
    res["fp32_speedup_vs_tuned"] = res["paper_tuned_s_per_point"] / res["engine_fp32_s_per_point"]
    if extra:
        s16, out16 = engine_surface(model, d, x, y, grid, tmp / f"{name}_bf16.h5", precision="bf16")
        res["engine_bf16_s_per_point"] = s16 / grid.num_points
        res["bf16_speedup"] = res["paper_s_per_point"] / res["engine_bf16_s_per_point"]
        res["bf16_speedup_vs_tuned"] = res["paper_tuned_s_per_point"] / res["engine_bf16_s_per_point"]
        rel = np.abs(out16["loss"] - out["loss"]) / np.abs(out["loss"])
        res["bf16_max_rel_loss_error"] = float(rel.max())
        res["bf16_guard_slowdown"] = float(out16["attrs"].get("bf16_slowdown", 0.0)) or None
        sv, _ = engine_surface(model, d, x, y, grid, tmp / f"{name}_vmap.h5", strategy="vmap", points_per_pass=4)
        res["engine_vmap4_s_per_point"] = sv / grid.num_points
        flops = model_flops(model, x)
        res["gflop_per_point"] = flops / 1e9
        res["engine_fp32_gflops"] = flops / 1e9 / res["engine_fp32_s_per_point"]
        res["conv_limit_fp32_gflops"] = conv_limit(model, x, torch.float32)
        res["fp32_fraction_of_limit"] = res["engine_fp32_gflops"] / res["conv_limit_fp32_gflops"]
        res["engine_bf16_gflops"] = flops / 1e9 / res["engine_bf16_s_per_point"]
        res["conv_limit_bf16_gflops"] = conv_limit(model, x, torch.bfloat16)
    return res


def bench_mlp(grid_n: int, paper_points: int, tmp: Path) -> dict:
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    digits = load_digits()
    images = digits.images.astype(np.uint8).reshape(-1, 8, 8, 1)  # values 0..16
    ds = _UInt8Images(images, digits.target, (0.3053,), (0.3760,), 16.0)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    y = torch.from_numpy(digits.target)
    model = create_model("mlp", in_channels=1, num_classes=10).eval()
    d = _dirs(model)
    grid = _grid(grid_n)
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(grid.num_points, size=min(paper_points, grid.num_points), replace=False))
    coords = grid.coords_of(sample)
    paper_s = paper_surface(model, d, ds, coords, grid.shape, tmp / "mlp_paper.h5")
    res: dict = {"model": "mlp", "images": len(x), "points": grid.num_points, "paper_points_timed": len(sample)}
    res["paper_s_per_point"] = paper_s / len(sample)
    s, out = engine_surface(model, d, x, y, grid, tmp / "mlp_engine.h5")
    res["engine_s_per_point"] = s / grid.num_points
    res["plan"] = json.loads(out["attrs"]["plan"])
    res["speedup"] = res["paper_s_per_point"] / res["engine_s_per_point"]
    s_seq, _ = engine_surface(model, d, x, y, grid, tmp / "mlp_seq.h5", strategy="sequential")
    res["engine_sequential_s_per_point"] = s_seq / grid.num_points
    return res


def bench_plans(n_images: int, grid_n: int, tmp: Path, trial: str = "auto") -> dict:
    """resnet20: the engine's default (the trial included) against each candidate plan forced
    and the paper's algorithm, side by side in this process."""
    _, x, y = _cnn_data(n_images)
    model, d = _cnn_model("resnet20")
    grid = _grid(grid_n)
    n = grid.num_points
    res: dict = {"model": "resnet20", "images": n_images, "points": n, "trial_mode": trial}
    s, out = engine_surface(model, d, x, y, grid, tmp / "plans_default.h5", trial=trial)
    res["default_s_per_point"] = s / n
    res["default_plan"] = json.loads(out["attrs"]["plan"])
    coords = grid.coords_of(np.arange(n))
    forced = []
    for plan in candidate_plans(model, torch.device("cpu"), n, sample=x):
        ev = PointEvaluator(model, d, {"train": (x, y)}, plan)
        start = time.perf_counter()
        loss = np.concatenate([ev(coords[i : i + 4 * plan.points_per_pass])["train_loss"]
                               for i in range(0, n, 4 * plan.points_per_pass)])
        seconds = time.perf_counter() - start
        rel = float(np.max(np.abs(loss - out["loss"].ravel()) / np.abs(out["loss"].ravel())))
        forced.append({"plan": plan.describe(), "s_per_point": seconds / n, "compiled": ev.plan.compile,
                       "max_rel_diff_vs_default": rel})
    res["forced"] = forced
    res["paper_s_per_point"] = paper_cnn("resnet20", n_images, grid_n, tmp)
    return res


def _print_plans(r: dict) -> None:
    base = r["default_s_per_point"]
    plan, trial = r["default_plan"], r["default_plan"].get("plan_trial") or {}
    print(f"\nplans chosen by measurement: resnet20, {r['images']} images 32x32x3, {r['points']} points "
          f"(--trial {r['trial_mode']}); s/point and time against the default")
    print(f"  {'engine default (trial included)':52s} {base:8.3f}   1.00x   ran: {plan['plan_strategy']}, "
          f"batch {plan['plan_batch_size']}, channels-last {plan['plan_channels_last']}")
    if "skipped" in trial:
        print(f"  {'':52s} trial skipped: {trial['skipped']}")
    else:
        print(f"  {'':52s} trial chose {trial.get('chosen')} in {trial.get('seconds', 0):.1f} s")
    for f in r["forced"]:
        print(f"  {'forced: ' + f['plan']:52s} {f['s_per_point']:8.3f}   {f['s_per_point'] / base:.2f}x"
              f"   (max rel diff vs default {f['max_rel_diff_vs_default']:.1e})")
    print(f"  {'paper algorithm (this process)':52s} {r['paper_s_per_point']:8.3f}   "
          f"{r['paper_s_per_point'] / base:.2f}x", flush=True)
# ---------------------------------------------------------------------------------------------
# a busy machine: the command beside one competing process

_THREAD_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")


def _contention_ckpt(tmp: Path) -> Path:
    """resnet20 trained one epoch on digits (the surface's values do not matter, its cost does)."""
    from landscape.jobs.train import TrainConfig, train

    out = tmp / "resnet20_digits.pt"
    train(TrainConfig(model="resnet20", data="digits", epochs=1, device="cpu", out=str(out), quiet=True))
    return out


# name -> (environment, --threads): "old" is what the issue measured against (all cores, OpenMP
# threads spinning without limit), "spin" torch's plain defaults (GNU OpenMP spins 300,000 times
# before it sleeps), "new" the command's own defaults (landscape.system.threads)
_SETTINGS = {
    "old": ({"OMP_WAIT_POLICY": "ACTIVE"}, "all"),
    "spin": ({"GOMP_SPINCOUNT": "300000"}, "all"),
    "new": ({}, None),
}
_SETTINGS_TEXT = {
    "old": "old defaults (all cores, OMP_WAIT_POLICY=ACTIVE)",
    "spin": "torch's plain defaults (all cores, GNU OpenMP spin)",
    "new": "new defaults (landscape.system.threads, PASSIVE)",
}


def _surface_seconds(ckpt: Path, grid_n: int, out: Path, settings: str) -> float:
    """Wall seconds of `landscape surface` in a fresh process with the thread `settings`."""
    extra, threads = _SETTINGS[settings]
    env = {k: v for k, v in os.environ.items() if k not in _THREAD_VARS}
    env.update(extra, CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "landscape", "surface", "--ckpt", str(ckpt), f"--x=-1:1:{grid_n}",
           f"--y=-1:1:{grid_n}", "--out", str(out), "--force", "--quiet", "--device", "cpu"]
    if threads == "all":
        cmd += ["--threads", str(os.cpu_count() or 1)]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def bench_contention(grid_n: int, repeats: int, tmp: Path) -> dict:
    """Each thread setting alone and beside one busy process; interleaved, `repeats` rounds, the
    median of each case (other work on the machine disturbs single timings)."""
    ckpt = _contention_ckpt(tmp)
    cores = os.cpu_count() or 1
    fair = cores / (cores - 1) if cores > 1 else 2.0  # one core of `cores` goes to the busy process
    times: dict[str, list[float]] = {f"{w}_{s}": [] for s in _SETTINGS for w in ("alone", "busy")}
    res: dict = {"model": "resnet20", "data": "digits", "grid": f"{grid_n}x{grid_n}", "cores": cores,
                 "fair_factor": fair, "loadavg_before": os.getloadavg()[0]}
    _surface_seconds(ckpt, 3, tmp / "warm.h5", "new")  # first-run costs (imports, caches)
    for _ in range(repeats):
        for settings in _SETTINGS:
            times[f"alone_{settings}"].append(_surface_seconds(ckpt, grid_n, tmp / "c.h5", settings))
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                time.sleep(0.2)  # let it start spinning
                times[f"busy_{settings}"].append(_surface_seconds(ckpt, grid_n, tmp / "c.h5", settings))
            finally:
                busy.kill()
                busy.wait()
    res["seconds"] = times
    for key, values in times.items():
        res[f"{key}_s"] = float(np.median(values))
    best_alone = min(res[f"alone_{s}_s"] for s in _SETTINGS)
    for settings in _SETTINGS:
        res[f"ratio_{settings}"] = res[f"busy_{settings}_s"] / (fair * res[f"alone_{settings}_s"])
        res[f"ratio_{settings}_vs_best"] = res[f"busy_{settings}_s"] / (fair * best_alone)
    res["loadavg_after"] = os.getloadavg()[0]
    return res


def _print_contention(r: dict) -> None:
    print(f"\nbusy machine: {r['model']} {r['grid']} on {r['data']} by `landscape surface` (own process),"
          f" {r['cores']} cores, median of {len(r['seconds']['alone_new'])};"
          f" load average {r['loadavg_before']:.1f} before, {r['loadavg_after']:.1f} after")
    print(f"  fair share = {r['fair_factor']:.2f} x the time without the busy process: of the same settings"
          " (own), of the fastest settings (best)")
    for settings in _SETTINGS:
        alone, busy = r[f"alone_{settings}_s"], r[f"busy_{settings}_s"]
        print(f"  {_SETTINGS_TEXT[settings]:52s} alone {alone:6.2f} s, beside a busy process {busy:6.2f} s ="
              f" {r[f'ratio_{settings}']:.2f}x fair share (own), {r[f'ratio_{settings}_vs_best']:.2f}x (best)")
    print("  target: at most 1.3x the fair share", flush=True)
# ---------------------------------------------------------------------------------------------
# surfaces useful early: time until the first full-range preview


def _watch_levels(path: Path, anchors: tuple[int, ...], seen: dict[int, float], stop: threading.Event,
                  poll: float = 0.05) -> None:
    """Record when each level (by spacing) is first complete in the file being written."""
    while not stop.is_set():
        try:
            with h5py.File(path, "r", locking=False) as f:
                done = f["computed"][()].astype(bool)
        except (OSError, KeyError):  # not created yet
            done = None
        if done is not None:
            level = complete_level(done, anchors)
            if level is not None:
                seen.setdefault(level.spacing, time.perf_counter())
        stop.wait(poll)


def bench_preview(name: str, n_images: int, grid_n: int, tmp: Path) -> dict:
    """One 2D surface, computed coarse to fine: seconds until the whole range exists at half the
    resolution (the spacing-2 level complete in the file, as `report --watch` sees it) against
    the whole run (from the job's start: planning included)."""
    _, x, y = _cnn_data(n_images)
    model, d = _cnn_model(name)
    grid = _grid(grid_n)
    path = tmp / f"{name}_preview.h5"
    seen: dict[int, float] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_levels, args=(path, grid.anchors(), seen, stop), daemon=True)
    start = time.perf_counter()
    watcher.start()
    try:
        engine_surface(model, d, x, y, grid, path)
    finally:
        total = time.perf_counter() - start
        stop.set()
        watcher.join()
    half = min((t for s, t in seen.items() if s <= 2), default=float("nan"))
    levels = point_levels(grid.shape, grid.anchors())
    return {
        "model": name, "images": n_images, "points": grid.num_points, "total_s": total,
        "half_resolution_s": half - start, "half_resolution_fraction": (half - start) / total,
        "half_resolution_points": int((levels <= len(level_spacings(grid.shape, grid.anchors())) - 2).sum()),
        "half_resolution_shape": [len(level_points(n, 2, a)) for n, a in zip(grid.shape, grid.anchors())],
        "levels_s": {str(s): t - start for s, t in sorted(seen.items(), reverse=True)},
    }


def _print_preview(r: dict) -> None:
    n = int(round(r["points"] ** 0.5))
    half = "x".join(map(str, r["half_resolution_shape"]))
    print(f"\nfirst full-range preview: {r['model']}, {r['images']} images 32x32x3, {n}x{n} points, coarse to fine")
    print(f"  whole run              {r['total_s']:8.1f} s")
    print(f"  {half} preview ready    {r['half_resolution_s']:8.1f} s   "
          f"{100 * r['half_resolution_fraction']:.0f}% of the run (target <= 30%; "
          f"{100 * r['half_resolution_points'] / r['points']:.0f}% of the points)")
    print("  levels complete at     " + ", ".join(
        f"every {s}: {t:.1f} s" for s, t in r["levels_s"].items()), flush=True)


def _print_paper(r: dict) -> None:
    print(f"  paper's algorithm      {r['paper_s_per_point']:8.3f} s/point   (its own process, as its users run it)")
    print(f"  ... with our allocator {r['paper_tuned_s_per_point']:8.3f} s/point   (same process as the engine: 'tuned')")


def paper_section(quick: bool, tmp: Path, results: dict) -> None:
    """Sections 1-3: the paper's algorithm against the engine (resnet20, densenet_bc40, mlp)."""
    n_img = 512 if quick else 2048
    g = 2 if quick else 3
    r = bench_cnn("resnet20", n_img, g, tmp, extra=True)
    results["resnet20"] = r
    print(f"\nresnet20, {r['images']} images 32x32x3, {r['points']} points")
    _print_paper(r)
    print(f"  engine fp32            {r['engine_fp32_s_per_point']:8.3f} s/point   {r['fp32_speedup']:5.2f}x faster"
          f" ({r['fp32_speedup_vs_tuned']:.2f}x vs tuned)"
          f"   (plan: {r['plan_fp32']['plan_strategy']}, batch {r['plan_fp32']['plan_batch_size']},"
          f" channels_last {r['plan_fp32']['plan_channels_last']}, fold_bn {r['plan_fp32']['plan_fold_bn']})")
    print(f"  engine bf16            {r['engine_bf16_s_per_point']:8.3f} s/point   {r['bf16_speedup']:5.2f}x faster"
          f" ({r['bf16_speedup_vs_tuned']:.2f}x vs tuned)"
          f"   max rel loss error vs fp32 {r['bf16_max_rel_loss_error']:.2e}")
    if r["bf16_guard_slowdown"] is None:
        print("  bf16 guard             not needed: this CPU runs bf16 natively (no check, no warning)")
    else:
        verdict = "warned, kept bf16 as asked" if r["bf16_guard_slowdown"] > 1 else "no warning"
        print(f"  bf16 guard             no native bf16: measured {r['bf16_guard_slowdown']:.2f}x the fp32 time"
              f" at the first point; {verdict} (the whole run: "
              f"{r['engine_bf16_s_per_point'] / r['engine_fp32_s_per_point']:.2f}x)")
    print(f"  engine forced vmap x4  {r['engine_vmap4_s_per_point']:8.3f} s/point   "
          f"({r['engine_vmap4_s_per_point'] / r['engine_fp32_s_per_point']:.2f}x slower than the chosen plan on this CPU)")
    print(f"  engine fp32 {r['engine_fp32_gflops']:.1f} GFLOP/s = {100 * r['fp32_fraction_of_limit']:.0f}% of the "
          f"practical limit {r['conv_limit_fp32_gflops']:.1f} GFLOP/s (conv shapes alone, fp32 channels-last, batch 256);"
          f" bf16 {r['engine_bf16_gflops']:.1f} of {r['conv_limit_bf16_gflops']:.1f} GFLOP/s", flush=True)
    r = bench_cnn("densenet_bc40", n_img, g, tmp, extra=False)
    results["densenet_bc40"] = r
    print(f"\ndensenet_bc40, {r['images']} images 32x32x3, {r['points']} points")
    _print_paper(r)
    print(f"  engine fp32            {r['engine_fp32_s_per_point']:8.3f} s/point   {r['fp32_speedup']:5.2f}x faster"
          f" ({r['fp32_speedup_vs_tuned']:.2f}x vs tuned)", flush=True)
    r = bench_mlp(31 if quick else 101, 100 if quick else 300, tmp)
    results["mlp"] = r
    print(f"\nmlp on digits ({r['images']} images), {r['points']} points")
    print(f"  paper's algorithm      {1e3 * r['paper_s_per_point']:8.2f} ms/point (timed on {r['paper_points_timed']} points)")
    print(f"  engine (chosen: {r['plan']['plan_strategy']} x{r['plan']['plan_points_per_pass']})"
          f" {1e3 * r['engine_s_per_point']:6.2f} ms/point   {r['speedup']:5.1f}x faster")
    print(f"  engine forced sequential {1e3 * r['engine_sequential_s_per_point']:6.2f} ms/point", flush=True)


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--paper-only":  # child process of paper_cnn_in_own_process
        with tempfile.TemporaryDirectory() as tmpdir:
            print(paper_cnn(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), Path(tmpdir)))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller grids (a smoke run, not the record)")
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--plans-only", action="store_true",
                    help="only the plans section (the default's trial against each plan forced)")
    ap.add_argument("--busy-only", action="store_true", help="only the busy-machine comparison")
    ap.add_argument("--bf16-only", action="store_true",
                    help="only the bf16 plan against the fp32 plan (scripts/bench_bf16.py)")
    ap.add_argument("--preview-only", action="store_true",
                    help="only the time until the first full-range preview of a coarse-to-fine surface")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tune_host_allocator()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores", flush=True)
    print(f"cpu: {cpu_info().describe()}", flush=True)
    only = [name for name, on in (("plans", args.plans_only), ("busy", args.busy_only),
                                  ("preview", args.preview_only), ("bf16", args.bf16_only)) if on]
    sections = only or ["paper", "bf16", "plans", "busy", "preview"]
    results: dict = {}
    q = args.quick
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        if "paper" in sections:
            paper_section(q, tmp, results)
        if "bf16" in sections:
            results["bf16"] = bench_bf16(256 if q else 2048, 2 if q else 4, 2 if q else 3)
            print("\n" + bf16_report(results["bf16"]), flush=True)
        if "plans" in sections:
            # --quick: a smoke run, too short for the trial's "auto" bounds: the trial is forced on
            results["plans"] = bench_plans(128 if q else 1024, 8 if q else 9, tmp, trial="on" if q else "auto")
            _print_plans(results["plans"])
        if "busy" in sections:
            results["contention"] = bench_contention(5 if q else 9, 1 if q else 3, tmp)
            _print_contention(results["contention"])
        if "preview" in sections:
            results["preview"] = bench_preview("resnet20", 64 if q else 256, 17 if q else 25, tmp)
            _print_preview(results["preview"])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
