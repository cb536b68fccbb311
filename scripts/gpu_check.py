#!/usr/bin/env python
"""GPU check: exactness and speed of every candidate plan on one device, in one command.

For resnet56 and densenet121 on synthetic CIFAR-size inputs (32x32x3; 10,000 and 50,000 images
held in device memory), measured on the device:

- exactness: the loss of every candidate plan at a few grid points against plain PyTorch on
  the same device (weights written into the model, fp32 with TF32 off, float64 sums), at fp32,
  tf32 and bf16 (relative error; fp32 must be <= 1e-5);
- points per second of every candidate plan (fp32), and peak device memory, each timed for a
  fixed budget of seconds after one warm-up pass;
- the paper's per-point loop (weights written into the model, a DataLoader from host memory:
  `scripts/bench.py`'s `paper_surface`), timed on a few points;
- the plan the engine chooses (the real engine, `landscape.jobs.runner.run_job`, to a temporary file,
  whose `plan` attribute is read back) and its points per second;
- two MPI ranks sharing the device (`mpiexec -n 2 scripts/surface.py`) against one rank.

It writes a JSON file and prints a table. CUDA-only calls are the ones under `_on_cuda`.
`--device cpu --quick` is the smoke test the test suite runs (tiny models and data).

Usage:
    python scripts/gpu_check.py                       (one GPU: under 8 minutes)
    python scripts/gpu_check.py --device cpu --quick --json check.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import _cnn_data, _dirs, paper_surface  # noqa: E402  (the paper's loop and its data)

from landscape.core.directions import Directions  # noqa: E402
from landscape.core.grid import Axis, Grid  # noqa: E402
from landscape.engine.evaluate import PointEvaluator  # noqa: E402
from landscape.engine.planning import EvalPlan, candidate_plans  # noqa: E402
from landscape.io.checkpoint import Checkpoint, save_checkpoint  # noqa: E402
from landscape.jobs.job import Engine, Plane, Record, SurfaceJob, Target  # noqa: E402
from landscape.jobs.runner import run_job  # noqa: E402
from landscape.models import create_model  # noqa: E402

PRECISIONS = ("fp32", "tf32", "bf16")
FP32_TOLERANCE = 1e-5
SCRIPTS = Path(__file__).resolve().parent


@dataclass(frozen=True)
class CheckConfig:
    """What the check measures, and how long each measurement may take."""

    device: str
    models: tuple[str, ...]
    images: tuple[int, ...]
    budget_s: float  # seconds each timing runs (after its warm-up pass)
    exact_points: tuple[tuple[float, float], ...]  # grid points of the exactness check
    exact_images: int  # images of the exactness check (the first ones)
    plan_points: int  # the run the candidate plans are made for (a 51x51 grid: 2601)
    paper_points: int  # points of the paper's loop timed
    engine_grid: int  # the engine's run: engine_grid x engine_grid points
    mpi_images: int
    mpi_grid: int
    mpiexec: str | None


def check_config(device: str, quick: bool, mpiexec: str | None) -> CheckConfig:
    if quick:  # the test suite's smoke run: every code path, tiny sizes
        return CheckConfig(device, ("resnet8", "densenet_bc40"), (32,), 0.2, ((0.0, 0.0), (0.3, -0.2)),
                           32, 25, 1, 2, 32, 2, mpiexec)
    # densenet121 is 1.8 GFLOP per 32x32 image: 89 TFLOP per grid point at 50,000 images
    return CheckConfig(device, ("resnet56", "densenet121"), (10_000, 50_000), 4.0,
                       ((0.0, 0.0), (0.3, -0.2)), 10_000, 2601, 2, 3, 10_000, 7, mpiexec)


def _on_cuda(device: torch.device) -> bool:
    return device.type == "cuda"


def _sync(device: torch.device) -> None:
    if _on_cuda(device):
        torch.cuda.synchronize(device)


def _candidates(model: nn.Module, device: torch.device, n_points: int, precision: str,
                sample: torch.Tensor) -> list[EvalPlan]:
    """The engine's candidate plans for this device (first = the rule's plan)."""
    return list(candidate_plans(model, device, n_points, precision=precision, sample=sample))


def _describe(plan: EvalPlan) -> str:
    layout = "nhwc" if plan.channels_last else "nchw"
    return f"{plan.strategy} x{plan.points_per_pass} b{plan.batch_size} {layout}" + (" fold" if plan.fold_bn else "")


def plain_losses(model: nn.Module, d: Directions, x: torch.Tensor, y: torch.Tensor,
                 points: tuple[tuple[float, float], ...], batch: int = 1000) -> list[float]:
    """Plain PyTorch on x's device: weights written into a copy of the model, fp32 with TF32
    off, cross-entropy summed in float64. The reference every plan is compared with."""
    net = copy.deepcopy(model).to(x.device).eval()
    center = {k: v.detach().clone() for k, v in net.state_dict().items()}
    out = []
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        for a, b in points:
            state = dict(center)
            for k in d.x:
                step = a * d.x[k].to(x.device)
                if d.y is not None:
                    step = step + b * d.y[k].to(x.device)
                state[k] = center[k] + step
            net.load_state_dict(state)
            total = torch.zeros((), dtype=torch.float64, device=x.device)
            with torch.no_grad():
                for i in range(0, len(x), batch):
                    logits = net(x[i:i + batch])
                    total += F.cross_entropy(logits, y[i:i + batch], reduction="sum").double()
            out.append(float(total) / len(x))
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
    return out


def time_plan(model: nn.Module, d: Directions, x: torch.Tensor, y: torch.Tensor, plan: EvalPlan,
              budget_s: float, seconds_per_point: float, device: torch.device) -> dict[str, Any]:
    """Points per second of `plan` over about `budget_s` seconds (after a warm-up pass), and the
    peak device memory.

    A pass holds `points_per_pass` points; where one pass over all images would take more than
    half the budget (`seconds_per_point`: the estimate for all of them), the pass runs on the
    first images only and the speed is scaled to all images (the cost is linear in them).
    """
    rng = np.random.default_rng(0)
    k = plan.points_per_pass
    n = len(x)
    images = max(min(n, 256), min(n, int(n * 0.5 * budget_s / max(k * seconds_per_point, 1e-9))))
    ev = PointEvaluator(model, d, {"train": (x[:images], y[:images])}, plan)
    ev(rng.uniform(-1, 1, size=(k, 2)))  # warm-up: kernels chosen, caches filled
    if _on_cuda(device):
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    points, start = 0, time.perf_counter()
    while points == 0 or time.perf_counter() - start < budget_s:
        ev(rng.uniform(-1, 1, size=(k, 2)))
        points += k
    _sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) if _on_cuda(device) else None
    return {"points_per_s": points / seconds * images / n, "points_timed": points, "images_timed": images,
            "peak_memory_bytes": peak}


def check_plans(model: nn.Module, d: Directions, x: torch.Tensor, y: torch.Tensor, cfg: CheckConfig,
                device: torch.device) -> list[dict[str, Any]]:
    """Every candidate plan: its relative loss error per precision (on the first `exact_images`
    images), and (fp32) its speed on all images."""
    xe, ye = x[:cfg.exact_images], y[:cfg.exact_images]
    reference = np.array(plain_losses(model, d, xe, ye, cfg.exact_points))
    coords = np.array(cfg.exact_points, dtype=np.float64)
    rows: dict[int, dict[str, Any]] = {}
    for precision in PRECISIONS:
        for i, plan in enumerate(_candidates(model, device, cfg.plan_points, precision, x[:1])):
            ev = PointEvaluator(model, d, {"train": (xe, ye)}, plan)
            _sync(device)
            start = time.perf_counter()
            losses = ev(coords)["train_loss"]
            _sync(device)
            per_point = (time.perf_counter() - start) / len(coords) * len(x) / len(xe)  # all images
            err = float(np.max(np.abs(losses - reference) / np.abs(reference)))
            # candidate i is the same choice at every precision (bf16 may size batches apart)
            row = rows.setdefault(i, {"plan": _describe(plan), "rule": i == 0, "meta": plan.meta(),
                                      "errors": {}, "plans": {}})
            row["errors"][precision] = err
            row["plans"][precision] = _describe(plan)
            if precision == "fp32":
                row.update(time_plan(model, d, x, y, ev.plan, cfg.budget_s, per_point, device))
            del ev
            if _on_cuda(device):
                torch.cuda.empty_cache()
    return list(rows.values())


def check_paper(model: nn.Module, d: Directions, dataset: Any, cfg: CheckConfig, device: torch.device,
                tmp: Path) -> float:
    """Points per second of the paper's per-point loop (its DataLoader reads host memory)."""
    grid = Grid(Axis(-1, 1, cfg.engine_grid), Axis(-1, 1, cfg.engine_grid))
    coords = grid.coords_of(np.arange(cfg.paper_points))
    net = copy.deepcopy(model).to(device)
    seconds = paper_surface(net, d, dataset, coords, grid.shape, tmp / "paper.h5")
    return cfg.paper_points / seconds


def check_engine(model: nn.Module, d: Directions, x: torch.Tensor, y: torch.Tensor, cfg: CheckConfig,
                 device: torch.device, tmp: Path) -> dict[str, Any]:
    """The real engine on an engine_grid^2 grid: the plan it chooses, its speed (from the file)."""
    grid = Grid(Axis(-1, 1, cfg.engine_grid), Axis(-1, 1, cfg.engine_grid))
    out = tmp / "engine.h5"
    job = SurfaceJob(Target(model, {"train": (x, y)}), Plane(d, grid), Engine(device, quiet=True),
                     Record(out, settings={"gpu_check": True}, force=True))
    start = time.perf_counter()
    run_job(job)
    seconds = time.perf_counter() - start
    with h5py.File(out, "r") as f:
        plan = json.loads(f.attrs["plan"])
        runs = json.loads(f.attrs["runs"])
    return {"plan": plan, "points_per_s": grid.num_points / seconds,
            "run_points_per_s": runs[-1]["points_per_second"]}


def check_mpi(cfg: CheckConfig, tmp: Path) -> dict[str, Any]:
    """Points per second of scripts/surface.py with one rank and with two ranks on one device."""
    if cfg.mpiexec is None:
        return {"skipped": "no mpiexec (pip install mpi4py mpich)"}
    torch.manual_seed(0)
    name = cfg.models[0]
    model = create_model(name)
    ckpt = save_checkpoint(Checkpoint(
        model=name, state_dict=model.state_dict(),
        data={"name": "synthetic", "n_train": cfg.mpi_images, "n_test": 16, "in_channels": 3,
              "image_size": 32, "num_classes": 10},
    ), tmp / "mpi.pt")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if cfg.device == "cpu":
        env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    result: dict[str, Any] = {"model": name, "images": cfg.mpi_images, "grid": f"{cfg.mpi_grid}x{cfg.mpi_grid}"}
    for ranks in (1, 2):
        out = tmp / f"mpi{ranks}.h5"
        cmd = [sys.executable, str(SCRIPTS / "surface.py"), "--ckpt", str(ckpt), f"--x=-1:1:{cfg.mpi_grid}",
               f"--y=-1:1:{cfg.mpi_grid}", "--splits", "train", "--out", str(out), "--quiet",
               "--device", cfg.device, "--force"]
        if ranks > 1:
            cmd = [cfg.mpiexec, "-n", str(ranks), *cmd]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:4])} ... failed: {proc.stderr.strip()[-500:]}")
        with h5py.File(out, "r") as f:
            run = json.loads(f.attrs["runs"])[-1]
        result[f"ranks{ranks}"] = {"ranks": run["ranks"], "points_per_s": run["points_per_second"]}
    result["speedup_2_vs_1"] = result["ranks2"]["points_per_s"] / result["ranks1"]["points_per_s"]
    return result


def run_check(cfg: CheckConfig) -> dict[str, Any]:
    device = torch.device(cfg.device)
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads()}
    if _on_cuda(device):
        info["gpu"] = torch.cuda.get_device_name(device)
    report: dict[str, Any] = {"config": {k: v for k, v in cfg.__dict__.items()}, "machine": info, "cases": []}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for name in cfg.models:
            for n_images in cfg.images:
                dataset, x_host, y_host = _cnn_data(n_images)
                torch.manual_seed(0)
                model = create_model(name).eval()
                d = _dirs(model)
                x, y = x_host.to(device), y_host.to(device)  # in device memory
                case: dict[str, Any] = {"model": name, "images": n_images}
                case["plans"] = check_plans(model, d, x, y, cfg, device)
                case["paper_points_per_s"] = check_paper(model, d, dataset, cfg, device, tmp)
                case["engine"] = check_engine(model, d, x, y, cfg, device, tmp)
                report["cases"].append(case)
                print(f"{name} {n_images}: done at {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
                del x, y
                if _on_cuda(device):
                    torch.cuda.empty_cache()
        report["mpi"] = check_mpi(cfg, tmp)
    report["seconds"] = time.perf_counter() - start
    report["fp32_exact"] = all(p["errors"]["fp32"] <= FP32_TOLERANCE for c in report["cases"] for p in c["plans"])
    return report


def format_table(report: dict[str, Any]) -> str:
    lines = [f"device {report['machine']['device']} {report['machine'].get('gpu', '')}".rstrip()]
    header = f"  {'plan':34s} {'pts/s':>9s} {'peak MiB':>9s} {'fp32 err':>9s} {'tf32 err':>9s} {'bf16 err':>9s}"
    for case in report["cases"]:
        lines.append(f"{case['model']}, {case['images']} images")
        lines.append(header)
        for p in case["plans"]:
            peak = f"{p['peak_memory_bytes'] / 2**20:9.0f}" if p.get("peak_memory_bytes") else f"{'-':>9s}"
            errs = " ".join(f"{p['errors'].get(k, float('nan')):9.1e}" for k in PRECISIONS)
            mark = "*" if p["rule"] else " "
            lines.append(f" {mark}{p['plan']:34s} {p['points_per_s']:9.2f} {peak} {errs}")
        e = case["engine"]
        chosen = f"{e['plan']['plan_strategy']} x{e['plan']['plan_points_per_pass']} b{e['plan']['plan_batch_size']}"
        lines.append(f"  {'paper per-point loop':34s} {case['paper_points_per_s']:9.2f}")
        lines.append(f"  {'engine (chose ' + chosen + ')':34s} {e['points_per_s']:9.2f}")
    m = report["mpi"]
    if "skipped" in m:
        lines.append(f"mpi: skipped ({m['skipped']})")
    else:
        lines.append(f"mpi ({m['model']}, {m['images']} images, {m['grid']}): 1 rank {m['ranks1']['points_per_s']:.2f}"
                     f" pts/s, 2 ranks on one device {m['ranks2']['points_per_s']:.2f} pts/s"
                     f" ({m['speedup_2_vs_1']:.2f}x)")
    lines.append(f"(* = the rule's plan; errors relative to plain PyTorch fp32; fp32 exact: {report['fp32_exact']};"
                 f" {report['seconds']:.0f} s in all)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    ap.add_argument("--quick", action="store_true", help="tiny models and data (the test suite's smoke run)")
    ap.add_argument("--json", default="gpu_check.json", help="results file (default gpu_check.json)")
    ap.add_argument("--mpiexec", default=None, help="mpiexec to use (default: beside python, else on PATH)")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; use --device cpu (with --quick for the smoke run)", file=sys.stderr)
        return 2
    beside = Path(sys.executable).with_name("mpiexec")
    mpiexec = args.mpiexec or (str(beside) if beside.exists() else shutil.which("mpiexec"))
    report = run_check(check_config(args.device, args.quick, mpiexec))
    out = Path(args.json)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    tmp.replace(out)  # written whole, then renamed
    print(format_table(report))
    return 0 if report["fp32_exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
