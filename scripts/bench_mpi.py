"""Benchmark: MPI sharding against one rank, and against the paper's lock-step algorithm.

Measured in one run, on one model (an MLP on digits), one 201x201 grid, one thread per rank:

(a) 1 rank (the serial engine) against `mpiexec -n 2` of `scripts/surface.py` (target >= 1.8x);
(b) for the 2-rank run, the share of wall time not spent evaluating: 1 - (time inside the
    evaluator summed over ranks) / (ranks x wall) (target < 5%);
(c) the paper's algorithm under the same `mpiexec -n 2`, written here from its description
    (REFERENCE.md): the pending points split into static contiguous blocks, and after every
    single point a blocking Reduce(MAX) of the whole loss and accuracy arrays to rank 0, which
    rewrites the whole datasets and flushes. Each point is evaluated by the same evaluator, one
    point at a time as the paper does. It runs on `--paper-points` points per rank and is
    extrapolated to the whole grid (its per-point cost does not depend on which point).

"wall" is the engine's own run time (first chunk handed out to last chunk written, as recorded
in the file); the whole command, Python start-up included, is printed next to it. Other users'
processes share the CPU, so the script first measures how many cores two processes actually
get (pure Python work, alone and two at once): (a) cannot exceed that figure.

Usage: python scripts/bench_mpi.py [--grid 201] [--paper-points 500] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SCRIPTS = Path(__file__).resolve().parent
MODEL, MODEL_KWARGS, DATA = "mlp", {"hidden": 16}, "digits"


def mpiexec() -> str:
    """The launcher next to this interpreter (the mpich wheel's), else the one on PATH."""
    beside = Path(sys.executable).with_name("mpiexec")
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if not found:
        sys.exit("bench_mpi: no mpiexec found; pip install mpi4py mpich")
    return found


def env_one_thread() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def surface_args(ckpt: Path, out: Path, n: int) -> list[str]:
    return ["--ckpt", str(ckpt), f"--x=-1:1:{n}", f"--y=-1:1:{n}", "--out", str(out), "--quiet"]


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env_one_thread(), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"bench_mpi: {' '.join(cmd[:4])} ... failed:\n{proc.stderr[-2000:]}")
    return wall


def last_run(path: Path) -> dict:
    from landscape.io.storage import read_surface

    s = read_surface(path)
    run = dict(s.attrs["runs"][-1])
    run["eval_seconds_total"] = float(np.nansum(s.arrays["point_seconds"]))
    run["all_computed"] = bool(s.computed.all())
    return run


# ---------------------------------------------------------------------------------------------
# (c) the paper's algorithm, run under mpiexec by this same script (`--paper-rank`)


def paper_rank(ckpt: str, n: int, out: str, points: int) -> None:
    """One rank of the paper's scheduling: static split, per-point Reduce(MAX) and rewrite."""
    import h5py
    from mpi4py import MPI

    from landscape.engine.evaluate import PointEvaluator, plan_evaluation
    from landscape.jobs.compute import SurfaceConfig, prepare_job

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    cfg = SurfaceConfig(ckpt=ckpt, x=f"-1:1:{n}", y=f"-1:1:{n}", quiet=True)
    job = prepare_job(cfg)  # every rank loads the model and data and makes the same directions
    first = next(iter(job.splits.values()))[0]
    plan = plan_evaluation(job.model, job.device, 1, strategy="sequential", sample=first)
    ev = PointEvaluator(job.model, job.directions, job.splits, plan, job.target.loss, job.target.metric)
    names = job.array_names
    shape = job.grid.shape
    if rank == 0:  # rank 0 creates the file, -1 where not computed
        with h5py.File(out, "w", locking=False) as f:
            f["xcoordinates"] = job.grid.x.coords()
            f["ycoordinates"] = job.grid.y.coords()
            for name in names:
                f[name] = -np.ones(shape)
    comm.Barrier()
    with h5py.File(out, "r", locking=False) as f:
        pending = np.flatnonzero(f[names[0]][()].ravel() <= 0)
    mine = np.array_split(pending, size)[rank][:points]  # static contiguous split
    steps = comm.allreduce(len(mine), op=MPI.MAX)
    local = {name: -np.ones(shape) for name in names}
    merged = {name: np.empty(shape) for name in names} if rank == 0 else dict.fromkeys(names)
    f = h5py.File(out, "r+", locking=False) if rank == 0 else None
    eval_seconds = 0.0
    comm.Barrier()
    start = time.perf_counter()
    for step in range(steps):
        if step < len(mine):
            t0 = time.perf_counter()
            values = ev(job.grid.coords_of(mine[step : step + 1]))
            eval_seconds += time.perf_counter() - t0
            for name in names:
                local[name].flat[mine[step]] = values[name][0]
        for name in names:  # every rank, after every point: the whole arrays, blocking
            comm.Reduce(local[name], merged[name], op=MPI.MAX, root=0)
        if f is not None:
            for name in names:
                f[name][...] = merged[name]
            f.flush()
    wall = time.perf_counter() - start
    if f is not None:
        f.close()
    evals = comm.gather(eval_seconds, root=0)
    done = comm.reduce(len(mine), op=MPI.SUM, root=0)
    if rank == 0:
        print(json.dumps({"wall": wall, "eval_seconds": evals, "points": done}))


# ---------------------------------------------------------------------------------------------


def make_checkpoint(tmp: Path) -> Path:
    from landscape.jobs.train import TrainConfig, train

    out = tmp / "mlp_digits.pt"
    train(TrainConfig(model=MODEL, model_kwargs=dict(MODEL_KWARGS), data=DATA, epochs=3, seed=0,
                      device="cpu", out=str(out), quiet=True))
    return out


_SPIN = "import time\nt = time.perf_counter()\nx = 0\nfor i in range(15_000_000):\n    x += i\nprint(time.perf_counter() - t)"


def parallelism() -> float:
    """How many cores two processes get right now: pure-Python work alone, then two at once
    (2.0 on an idle 2-core machine; less when other users' processes take CPU time)."""
    def spin(k: int) -> float:
        procs = [subprocess.Popen([sys.executable, "-c", _SPIN], stdout=subprocess.PIPE, text=True)
                 for _ in range(k)]
        return max(float(p.communicate()[0]) for p in procs)

    alone = spin(1)
    return 2 * alone / spin(2)


def load_line() -> str:
    try:
        return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "load average unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", type=int, default=201, help="points per axis (default 201)")
    p.add_argument("--paper-points", type=int, default=500,
                   help="points per rank the paper's algorithm runs before extrapolating (default 500)")
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    p.add_argument("--paper-rank", nargs=4, metavar=("CKPT", "N", "OUT", "POINTS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.paper_rank:
        ckpt, n, out, points = args.paper_rank
        paper_rank(ckpt, int(n), out, int(points))
        return

    n = args.grid
    total = n * n
    launcher = mpiexec()
    py = sys.executable
    cores_before = parallelism()
    print(f"bench_mpi: {MODEL} {MODEL_KWARGS} on {DATA}, {n}x{n} grid ({total} points), "
          f"1 thread per rank, {os.cpu_count()} cores; {load_line()}; two processes get "
          f"{cores_before:.2f} cores", flush=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ckpt = make_checkpoint(tmp)

        serial_out, mpi_out, paper_out = tmp / "serial.h5", tmp / "mpi2.h5", tmp / "paper.h5"
        serial_wall = timed([py, str(SCRIPTS / "surface.py"), "--comm", "serial",
                             *surface_args(ckpt, serial_out, n)])
        serial = last_run(serial_out)
        mpi_wall = timed([launcher, "-n", "2", py, str(SCRIPTS / "surface.py"),
                          *surface_args(ckpt, mpi_out, n)])
        mpi = last_run(mpi_out)

        t0 = time.perf_counter()
        proc = subprocess.run(
            [launcher, "-n", "2", py, str(Path(__file__).resolve()), "--paper-rank", str(ckpt), str(n),
             str(paper_out), str(args.paper_points)],
            env=env_one_thread(), capture_output=True, text=True,
        )
        paper_cmd_wall = time.perf_counter() - t0
        if proc.returncode:
            sys.exit(f"bench_mpi: the paper's algorithm failed:\n{proc.stderr[-2000:]}")
        paper = json.loads(proc.stdout.strip().splitlines()[-1])

        from landscape.io.storage import read_surface

        a, b = read_surface(serial_out), read_surface(mpi_out)
        rel = max(
            float(np.nanmax(np.abs(a.arrays[k] - b.arrays[k]) / np.maximum(np.abs(a.arrays[k]), 1e-12)))
            for k in a.arrays if k.endswith(("_loss", "_acc"))
        )

    ranks = mpi["ranks"]
    mpi_eval = float(sum(mpi["eval_seconds_per_rank"]))
    mpi_idle = 1.0 - mpi_eval / (ranks * mpi["seconds"])
    serial_idle = 1.0 - serial["eval_seconds_total"] / serial["seconds"]
    paper_pps = paper["points"] / paper["wall"]
    paper_idle = 1.0 - sum(paper["eval_seconds"]) / (2 * paper["wall"])
    paper_total = total / paper_pps
    results = {
        "grid": f"{n}x{n}",
        "points": total,
        "serial": {"seconds": serial["seconds"], "command_seconds": serial_wall,
                   "points_per_second": total / serial["seconds"], "not_evaluating": serial_idle},
        "mpi2": {"seconds": mpi["seconds"], "command_seconds": mpi_wall,
                 "points_per_second": total / mpi["seconds"], "not_evaluating": mpi_idle,
                 "points_per_rank": mpi["points_per_rank"], "write_seconds": mpi["write_seconds"],
                 "eval_seconds_per_rank": mpi["eval_seconds_per_rank"]},
        "paper2": {"measured_points": paper["points"], "seconds": paper["wall"],
                   "command_seconds": paper_cmd_wall, "points_per_second": paper_pps,
                   "not_evaluating": paper_idle, "extrapolated_seconds": paper_total},
        "speedup_2_ranks": serial["seconds"] / mpi["seconds"],
        "speedup_2_ranks_whole_command": serial_wall / mpi_wall,
        "engine_vs_paper_2_ranks": (total / mpi["seconds"]) / paper_pps,
        "max_rel_diff_serial_vs_mpi": rel,
        "load_after": load_line(),
        "cores_for_two_processes": [cores_before, parallelism()],
    }
    s, m, pp = results["serial"], results["mpi2"], results["paper2"]
    print(f"(a) 1 rank x 1 thread : {s['seconds']:7.2f} s  {s['points_per_second']:8.1f} points/s  "
          f"(whole command {s['command_seconds']:.1f} s)")
    print(f"    2 ranks x 1 thread: {m['seconds']:7.2f} s  {m['points_per_second']:8.1f} points/s  "
          f"(whole command {m['command_seconds']:.1f} s)  points per rank {m['points_per_rank']}")
    print(f"    speed-up {results['speedup_2_ranks']:.2f}x (target >= 1.8x); whole command "
          f"{results['speedup_2_ranks_whole_command']:.2f}x; largest relative difference of the "
          f"stored values {rel:.1e}")
    print(f"(b) 2 ranks, share of wall time not evaluating: {100 * mpi_idle:.2f}% (target < 5%); "
          f"serial engine: {100 * serial_idle:.2f}%")
    print(f"(c) paper's algorithm, mpiexec -n 2: {pp['points_per_second']:8.1f} points/s on "
          f"{pp['measured_points']} points ({pp['seconds']:.2f} s), not evaluating "
          f"{100 * paper_idle:.1f}%; whole grid extrapolated {paper_total:.0f} s")
    print(f"    engine / paper at 2 ranks: {results['engine_vs_paper_2_ranks']:.1f}x points/s")
    print(f"after: {results['load_after']}; two processes get "
          f"{results['cores_for_two_processes'][1]:.2f} cores")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
