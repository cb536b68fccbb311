"""Benchmark: the engine's bf16 plan against its fp32 plan, side by side in one run.

resnet20 on 32x32x3 images (seeded), the plan `landscape.engine.planning.plan_evaluation`
chooses for each precision (sequential, channels-last, BatchNorm folded, the batch sized for
the cache; the bf16 plan runs the whole folded model in bf16), both eager so that the ratio is
the kernels' and not the compiler's. Each evaluator first runs one point (its warm-up, timed
apart: oneDNN builds its primitives there), then the two are timed in turns, `--repeats` rounds
of `--points` points each, and the median seconds per point of each gives the ratio. The bf16
error is the largest relative difference of the loss against fp32 at the same points.

On a CPU without native bf16 (no AVX512_BF16 or AMX, `landscape info` says `bf16 emulated`) the
kernels are emulated in fp32 and bf16 is slower; the script says so and prints the ratio anyway.

Usage: python scripts/bench_bf16.py [--quick] [--images N] [--points K] [--repeats R] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from landscape.core.directions import random_directions
from landscape.engine.evaluate import PointEvaluator
from landscape.engine.planning import plan_evaluation
from landscape.models import create_model
from landscape.system.cpu import cpu_info
from landscape.system.device import tune_host_allocator

PRECISIONS = ("fp32", "bf16")


def _evaluators(n_images: int, n_points: int) -> dict[str, PointEvaluator]:
    """One evaluator per precision on the same seeded resnet20, directions and images."""
    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    x = torch.randn(n_images, 3, 32, 32)
    y = torch.randint(0, 10, (n_images,))
    dirs = random_directions(model, seed=1, norm="filter", ignore="biasbn", two_d=True)
    cpu = torch.device("cpu")
    return {
        p: PointEvaluator(model, dirs, {"train": (x, y)},
                          plan_evaluation(model, cpu, n_points, precision=p, sample=x, compile="off"))
        for p in PRECISIONS
    }


def bench_bf16(n_images: int = 2048, n_points: int = 4, repeats: int = 3) -> dict:
    """Seconds per point of each plan (median of `repeats` interleaved rounds) and the ratio."""
    evals = _evaluators(n_images, n_points)
    rng = np.random.default_rng(0)
    coords = rng.uniform(-1, 1, size=(n_points, 2))
    cpu = cpu_info()
    res: dict = {"model": "resnet20", "images": n_images, "points": n_points, "repeats": repeats,
                 "cpu": cpu.describe(), "native_bf16": cpu.native_bf16, "threads": torch.get_num_threads()}
    for p, ev in evals.items():
        start = time.perf_counter()
        ev(coords[:1])
        res[f"{p}_warmup_s"] = time.perf_counter() - start
        res[f"{p}_plan"] = ev.plan.describe()
        res[f"{p}_batch_size"] = ev.plan.batch_size
    times: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    losses: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for p, ev in evals.items():
            start = time.perf_counter()
            losses[p] = ev(coords)["train_loss"]
            times[p].append((time.perf_counter() - start) / n_points)
    for p in PRECISIONS:
        res[f"{p}_s_per_point"] = statistics.median(times[p])
        res[f"{p}_rounds_s_per_point"] = times[p]
    res["bf16_over_fp32_speed"] = res["fp32_s_per_point"] / res["bf16_s_per_point"]
    res["bf16_max_rel_loss_error"] = float(np.max(np.abs(losses["bf16"] - losses["fp32"]) / np.abs(losses["fp32"])))
    return res


def report(r: dict) -> str:
    """The benchmark's lines, ending with the ratio and what the CPU has."""
    lines = [
        f"bf16 plan against fp32 plan: {r['model']}, {r['images']} images 32x32x3, {r['points']} points x "
        f"{r['repeats']} interleaved rounds, {r['threads']} threads",
        f"cpu: {r['cpu']}",
    ]
    for p in PRECISIONS:
        lines.append(f"  {p} plan  {r[f'{p}_s_per_point']:7.3f} s/point  (batch {r[f'{p}_batch_size']}, "
                     f"warm-up point {r[f'{p}_warmup_s']:.2f} s; rounds "
                     + ", ".join(f"{t:.3f}" for t in r[f"{p}_rounds_s_per_point"]) + ")")
    lines.append(f"  bf16 max rel loss error vs fp32 {r['bf16_max_rel_loss_error']:.2e}")
    ratio = r["bf16_over_fp32_speed"]
    if r["native_bf16"]:
        lines.append(f"bf16/fp32 speed: {ratio:.2f}x (bf16 native on this CPU)")
    else:
        lines.append(f"bf16/fp32 speed: {ratio:.2f}x; this CPU has no native bf16 (no AVX512_BF16 or AMX): "
                     "its bf16 kernels are emulated, use fp32")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="256 images, 2 points, 2 rounds (a smoke run)")
    ap.add_argument("--images", type=int, default=None, help="images per point (default 2048)")
    ap.add_argument("--points", type=int, default=None, help="points per round (default 4)")
    ap.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 3)")
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    tune_host_allocator()
    r = bench_bf16(args.images or (256 if args.quick else 2048), args.points or (2 if args.quick else 4),
                   args.repeats or (2 if args.quick else 3))
    print(report(r), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
