#!/usr/bin/env python
"""Same command, same file: compute surfaces with one checkout's code, compare two sets of files.

`make` runs a fixed list of commands (serial CLI, `mpiexec -n 2`, the Python API in memory, to
a file and under MPI) with the package found at `--root` (put first on PYTHONPATH) and keeps
the files; `compare` checks that two such directories hold equal surfaces: every array value
for value (NaN where NaN), the same computed flags and coordinates, and reports the settings
and metadata keys that differ (timings, per-rank bookkeeping and run records are not compared).

Example (the pre-change commit against this checkout):
    git worktree add /tmp/wt-base 8ae0f3e
    python scripts/same_file.py ckpts /tmp/eq/ckpts
    python scripts/same_file.py make /tmp/eq/base --root /tmp/wt-base --ckpts /tmp/eq/ckpts
    python scripts/same_file.py make /tmp/eq/new --root . --ckpts /tmp/eq/ckpts
    python scripts/same_file.py compare /tmp/eq/base /tmp/eq/new
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

# (name, arguments of `landscape surface`, ranks); checkpoints are named by their stem
CLI_CASES: tuple[tuple[str, tuple[str, ...], int], ...] = (
    ("mlp_2d", ("--ckpt", "{mlp}", "--x=-1:1:9", "--y=-1:1:7", "--max-samples", "300"), 1),
    ("mlp_1d_test", ("--ckpt", "{mlp}", "--x=-2:2:11", "--splits", "test", "--max-samples", "200"), 1),
    ("resnet_2d", ("--ckpt", "{resnet}", "--x=-1:1:7", "--y=-0.5:0.5:5", "--max-samples", "200"), 1),
    ("resnet_bn_recompute", ("--ckpt", "{resnet}", "--x=-1:1:5", "--y=-1:1:3", "--max-samples", "100",
                             "--bn", "recompute"), 1),
    ("resnet_ckpt2", ("--ckpt", "{resnet}", "--ckpt2", "{resnet_e0}", "--x=-0.5:1.5:9",
                      "--max-samples", "200"), 1),
    ("resnet_pca", ("--ckpt", "{resnet}", "--pca", "{resnet_e0}", "{resnet_e1}", "{resnet}",
                    "--x=-1:1:5", "--y=-1:1:5", "--max-samples", "200"), 1),
    ("mlp_curvature", ("--ckpt", "{mlp}", "--x=-1:1:3", "--y=-1:1:3", "--max-samples", "150",
                       "--curvature"), 1),
    ("mlp_mse", ("--ckpt", "{mlp}", "--x=-1:1:5", "--y=-1:1:5", "--max-samples", "200", "--loss", "mse"), 1),
    ("mpi_mlp_2d", ("--ckpt", "{mlp}", "--x=-1:1:9", "--y=-1:1:7", "--max-samples", "300"), 2),
    ("mpi_resnet_2d", ("--ckpt", "{resnet}", "--x=-1:1:7", "--y=-0.5:0.5:5", "--max-samples", "200"), 2),
    ("mpi_mlp_curvature", ("--ckpt", "{mlp}", "--x=-1:1:3", "--y=-1:1:3", "--max-samples", "150",
                           "--curvature"), 2),
)

API_SCRIPT = """
import sys, numpy as np, torch, landscape
from landscape.io.checkpoint import build_model, load_checkpoint
from landscape.data.sources import load_dataset
ckpt, out = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)
net = build_model(load_checkpoint(ckpt))
ds = load_dataset("digits")
data = {"train": (ds.x_train[:300], ds.y_train[:300]), "test": (ds.x_test[:200], ds.y_test[:200])}
s = landscape.surface(net, data, x="-1:1:9", y="-1:1:7", seed=3)
np.savez(out + "/api_memory.npz", x=s.x, y=s.y, **{k: v for k, v in s.arrays.items()})
landscape.surface(net, data, x="-1:1:9", y="-1:1:7", seed=3, out=out + "/api_file.h5")
landscape.surface(net, (ds.x_train[:200], ds.y_train[:200]), x="-1:1:11", loss="mse",
                  out=out + "/api_file_mse_1d.h5")
"""

API_MPI_SCRIPT = """
import sys, torch, landscape
from landscape.io.checkpoint import build_model, load_checkpoint
from landscape.data.sources import load_dataset
ckpt, out = sys.argv[1], sys.argv[2]
net = build_model(load_checkpoint(ckpt))
ds = load_dataset("digits")
data = {"train": (ds.x_train[:300], ds.y_train[:300]), "test": (ds.x_test[:200], ds.y_test[:200])}
landscape.surface(net, data, x="-1:1:9", y="-1:1:7", seed=3, out=out + "/api_mpi.h5", comm="mpi")
"""

SKIPPED_ARRAYS = ("point_seconds", "point_rank")  # timing and scheduling, not results
SKIPPED_ATTRS = ("runs", "created", "plan", "software", "checkpoint", "dataset")


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(root.resolve())
    return env


def _run(cmd: list[str], root: Path, cwd: Path) -> None:
    proc = subprocess.run(cmd, env=_env(root), cwd=cwd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")


def make_ckpts(out: Path) -> None:
    """Train the two tiny checkpoints every run uses (mlp; resnet8 with per-epoch snapshots)."""
    out.mkdir(parents=True, exist_ok=True)
    py = [sys.executable, "-m", "landscape", "train", "--data", "digits", "--device", "cpu", "--quiet"]
    root = Path(__file__).resolve().parents[1]
    _run([*py, "--model", "mlp", "--model-kwargs", '{"hidden": 16}', "--epochs", "2", "--out",
          "mlp.pt"], root, out)
    _run([*py, "--model", "resnet8", "--model-kwargs", '{"width": 4}', "--epochs", "2",
          "--save-every", "1", "--out", "resnet.pt"], root, out)


def make(out: Path, root: Path, ckpts: Path) -> None:
    """Every command of CLI_CASES and the API scripts, with the code under `root`."""
    out.mkdir(parents=True, exist_ok=True)
    names = {
        "mlp": ckpts / "mlp.pt", "resnet": ckpts / "resnet.pt",
        "resnet_e0": ckpts / "resnet_trajectory" / "epoch_0000.pt",
        "resnet_e1": ckpts / "resnet_trajectory" / "epoch_0001.pt",
    }
    if not names["resnet_e0"].exists():  # the snapshot folder's name, whatever it is
        snaps = sorted(p for p in ckpts.iterdir() if p.is_dir())
        names["resnet_e0"], names["resnet_e1"] = sorted(snaps[0].glob("epoch_*.pt"))[:2]
    mpiexec = str(Path(sys.executable).with_name("mpiexec"))
    for name, args, ranks in CLI_CASES:
        filled = [a.format(**{k: str(v.resolve()) for k, v in names.items()}) for a in args]
        common = [*filled, "--out", str((out / f"{name}.h5").resolve()), "--quiet", "--force"]
        if ranks == 1:
            _run([sys.executable, "-m", "landscape", "surface", *common, "--comm", "serial"], root, out)
        else:
            script = str((root / "scripts" / "surface.py").resolve())
            _run([mpiexec, "-n", str(ranks), sys.executable, script, *common], root, out)
        print(f"made {name}", flush=True)
    ckpt = str(names["mlp"].resolve())
    _run([sys.executable, "-c", API_SCRIPT, ckpt, str(out.resolve())], root, out)
    _run([mpiexec, "-n", "2", sys.executable, "-c", API_MPI_SCRIPT, ckpt, str(out.resolve())], root, out)
    print("made api_memory, api_file, api_file_mse_1d, api_mpi", flush=True)


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    if path.suffix == ".npz":
        with np.load(path) as f:
            return {k: f[k] for k in f.files if f[k].dtype != object}, {}
    import h5py

    arrays: dict[str, np.ndarray] = {}
    with h5py.File(path, "r", locking=False) as f:
        f.visititems(lambda k, v: arrays.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset) else None)
        attrs = {k: f.attrs[k] for k in f.attrs}
    decoded = {}
    for k, v in attrs.items():
        v = v.decode() if isinstance(v, bytes) else v
        try:
            decoded[k] = json.loads(v) if isinstance(v, str) and v[:1] in "[{" else v
        except json.JSONDecodeError:
            decoded[k] = v
    return arrays, decoded


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): d}


def compare_files(a: Path, b: Path) -> tuple[list[str], list[str]]:
    """(value differences, metadata differences) between two surface files."""
    arrays_a, attrs_a = _read(a)
    arrays_b, attrs_b = _read(b)
    problems = []
    names = set(arrays_a) | set(arrays_b)
    for name in sorted(n for n in names if n.split("/")[-1] not in SKIPPED_ARRAYS):
        if name not in arrays_a or name not in arrays_b:
            problems.append(f"array {name} only in {'the first' if name in arrays_a else 'the second'}")
            continue
        u, v = arrays_a[name], arrays_b[name]
        if u.shape != v.shape or u.dtype != v.dtype or not np.array_equal(u, v, equal_nan=u.dtype.kind == "f"):
            diff = np.nanmax(np.abs(u.astype(float) - v.astype(float))) if u.shape == v.shape else "shape"
            problems.append(f"array {name} differs (max abs difference {diff})")
    meta = []
    fa = {k: v for k, v in _flat(attrs_a).items() if k.split(".")[0] not in SKIPPED_ATTRS}
    fb = {k: v for k, v in _flat(attrs_b).items() if k.split(".")[0] not in SKIPPED_ATTRS}
    for key in sorted(set(fa) | set(fb)):
        if key.startswith("metrics.") and key in fa and key in fb:
            continue  # derived from the arrays (compared above)
        if fa.get(key, "<absent>") != fb.get(key, "<absent>"):
            meta.append(f"{key}: {fa.get(key, '<absent>')!r} -> {fb.get(key, '<absent>')!r}")
    return problems, meta


def compare(a: Path, b: Path) -> int:
    bad = 0
    files = sorted(p.name for p in a.iterdir() if p.suffix in (".h5", ".npz"))
    for name in files:
        if not (b / name).exists():
            print(f"{name}: MISSING in {b}")
            bad += 1
            continue
        problems, meta = compare_files(a / name, b / name)
        print(f"{name}: {'VALUES EQUAL' if not problems else 'VALUES DIFFER'}")
        for line in problems:
            print(f"    {line}")
        for line in meta:
            print(f"    metadata {line}")
        bad += bool(problems)
    print(f"{len(files) - bad} of {len(files)} files equal value for value")
    return 1 if bad else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("ckpts")
    c.add_argument("out", type=Path)
    m = sub.add_parser("make")
    m.add_argument("out", type=Path)
    m.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    m.add_argument("--ckpts", type=Path, required=True)
    k = sub.add_parser("compare")
    k.add_argument("a", type=Path)
    k.add_argument("b", type=Path)
    args = p.parse_args()
    if args.cmd == "ckpts":
        make_ckpts(args.out)
        return 0
    if args.cmd == "make":
        if args.out.exists():
            shutil.rmtree(args.out)
        make(args.out, args.root, args.ckpts)
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
