"""Curvature maps (`landscape surface --curvature`): values, storage, resume, MPI.

Each stored max_eig / min_eig is checked against the extreme eigenvalues of an exact dense
Hessian (`torch.autograd.functional.hessian`) at the weights of that grid point, rebuilt
independently from the stored directions.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import RunCli, cli_env, mpiexec_command, run_cli_here
from test_hessian import dense_hessian

from landscape.data.sources import load_dataset
from landscape.io.checkpoint import build_model, load_checkpoint
from landscape.io.storage import read_surface
from landscape.jobs.compute import SurfaceConfig, prepare_job
from landscape.jobs.curvature import TOL, CurvatureEvaluator
from landscape.jobs.train import TrainConfig, train

N = 40  # train samples the curvature is computed on
GRID = ("--x=-1:1:3", "--y=-1:1:3")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mlp with 6 hidden units (480 weights with 2+ dims), 2 epochs on digits."""
    out = tmp_path_factory.mktemp("curv") / "mlp6.pt"
    train(TrainConfig(model="mlp", model_kwargs={"hidden": 6}, data="digits", epochs=2, seed=0,
                      device="cpu", out=str(out), quiet=True))
    return out


@pytest.fixture(scope="module")
def curv_surface(ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`landscape surface --curvature` on a 3x3 grid (read-only; copy it to change it)."""
    surf = tmp_path_factory.mktemp("curv_surface") / "c.h5"
    code, _, err = run_cli_here(surf.parent, *_surface_args(ckpt, surf))
    assert code == 0, err
    return surf


def _surface_args(ckpt: Path, out: Path, *extra: str, grid: tuple[str, str] = GRID) -> list[str]:
    return ["surface", "--ckpt", str(ckpt), *grid, "--curvature", "--max-samples", str(N),
            "--out", str(out), "--quiet", *extra]


def _stored_state(surf: Path, model: torch.nn.Module, a: float, b: float) -> dict[str, torch.Tensor]:
    """centre + a x + b y, with the directions read back from the file by plain h5py."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with h5py.File(surf, "r") as f:
        for k in f["directions/x"]:
            state[k] = state[k] + a * torch.from_numpy(f["directions/x"][k][()]) + b * torch.from_numpy(
                f["directions/y"][k][()]
            )
    return state


def _check_points(surf: Path, ckpt: Path, points: list[tuple[int, int]]) -> None:
    s = read_surface(surf)
    model = build_model(load_checkpoint(ckpt))
    ds = load_dataset("digits")
    x, y = ds.x_train[:N], ds.y_train[:N]
    for i, j in points:
        h, _ = dense_hessian(model, x, y, state=_stored_state(surf, model, s.x[i], s.y[j]))
        ev = torch.linalg.eigvalsh(h)
        hi, lo = ev[-1].item(), ev[0].item()
        assert s.arrays["max_eig"][i, j] == pytest.approx(hi, rel=1e-3), (i, j)
        # Lanczos stops at residual <= TOL * max|lambda|, which bounds the error of both ends
        assert abs(s.arrays["min_eig"][i, j] - lo) <= TOL * max(abs(hi), abs(lo)), (i, j)


def test_curvature_map_matches_dense_hessian_at_sampled_points(curv_surface: Path, ckpt: Path) -> None:
    surf = curv_surface
    s = read_surface(surf)
    assert s.shape == (3, 3) and s.computed.all()
    assert {"max_eig", "min_eig"} <= set(s.surfaces())
    hi, lo = s.arrays["max_eig"], s.arrays["min_eig"]
    assert hi.shape == lo.shape == s.arrays["train_loss"].shape
    assert np.isfinite(hi).all() and np.isfinite(lo).all() and (hi > lo).all()
    _check_points(surf, ckpt, [(1, 1), (0, 2), (2, 0)])
    m = s.attrs["metrics"]
    assert m["top_eigenvalue"] == hi[1, 1]
    assert m["flat_curvature_fraction"] is not None and 0 <= m["flat_curvature_fraction"] <= 1


def test_curvature_map_resumes_like_the_losses(
    run_cli: RunCli, ckpt: Path, curv_surface: Path, tmp_path: Path
) -> None:
    surf = tmp_path / "r.h5"
    shutil.copyfile(curv_surface, surf)
    full = read_surface(surf)
    # what a killed run leaves: some points done, the others not flagged (their values NaN)
    redo = [(0, 1), (2, 2), (1, 0)]
    with h5py.File(surf, "r+") as f:
        for i, j in redo:
            f["computed"][i, j] = 0
            for name in ("max_eig", "min_eig", "train_loss", "test_loss"):
                f[name][i, j] = np.nan
    part = read_surface(surf)
    assert np.isnan(part.arrays["max_eig"][0, 1]) and part.done == 6
    code, out, err = run_cli(*_surface_args(ckpt, surf)[:-1])  # without --quiet
    assert code == 0, err
    assert "3 points" in out  # only the pending points were computed
    again = read_surface(surf)
    assert again.computed.all()
    for name in ("max_eig", "min_eig", "train_loss"):
        np.testing.assert_allclose(again.arrays[name], full.arrays[name], rtol=1e-9, atol=0)
    kept = again.computed & ~np.isin(np.arange(9).reshape(3, 3), [i * 3 + j for i, j in redo])
    np.testing.assert_array_equal(again.arrays["point_seconds"][kept], full.arrays["point_seconds"][kept])


def test_curvature_evaluator_with_batchnorm_and_moving_statistics(tmp_path: Path) -> None:
    """cnn_small (BatchNorm, eval mode) with 'states' directions: BN running stats move too."""
    out = tmp_path / "cnn.pt"
    train(TrainConfig(model="cnn_small", model_kwargs={"width": 2}, data="digits", epochs=1,
                      seed=0, device="cpu", out=str(out), quiet=True))
    job = prepare_job(SurfaceConfig(ckpt=str(out), x="-1:1:3", y="-1:1:3", dir_type="states",
                                    norm="filter", ignore="none", max_samples=24, splits=("train",),
                                    device="cpu", curvature=True, quiet=True))
    ev = CurvatureEvaluator(job)
    coords = np.array([[0.0, 0.0], [0.5, -1.0]])
    got = ev(coords)
    x, y = job.splits["train"]
    from landscape.core.directions import point_state

    for (a, b), hi, lo in zip(coords, got["max_eig"], got["min_eig"]):
        state = point_state(job.model.state_dict(), job.directions, a, b)
        if b != 0:
            assert not torch.equal(state["bn1.running_var"], job.model.state_dict()["bn1.running_var"])
        e = torch.linalg.eigvalsh(dense_hessian(job.model, x, y, state=state)[0])
        assert hi == pytest.approx(e[-1].item(), rel=1e-3)
        assert abs(lo - e[0].item()) <= TOL * e.abs().max().item()
    assert ev.stats["points"] == 2


@pytest.mark.mpi
def test_curvature_under_mpi_matches_serial(run_cli: RunCli, ckpt: Path, tmp_path: Path) -> None:
    mpiexec = mpiexec_command()
    # one point per chunk, so that both ranks get points of this small grid
    grid, one = ("--x=-1:1:5", "--y=-1:1:5"), ("--points-per-pass", "1")
    serial = tmp_path / "serial.h5"
    assert run_cli(*_surface_args(ckpt, serial, "--comm", "serial", *one, grid=grid))[0] == 0
    par = tmp_path / "mpi.h5"
    script = Path(__file__).resolve().parents[1] / "scripts" / "surface.py"
    args = _surface_args(ckpt, par, "--comm", "mpi", *one, grid=grid)[1:]
    cmd = [mpiexec, "-n", "2", sys.executable, str(script), *args]
    proc = subprocess.run(cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = read_surface(serial), read_surface(par)
    assert b.computed.all()
    assert set(np.unique(b.arrays["point_rank"])) == {0, 1}  # both ranks computed points
    assert np.isfinite(b.arrays["max_eig"]).all() and np.isfinite(b.arrays["min_eig"]).all()
    for name in ("max_eig", "min_eig", "train_loss"):
        np.testing.assert_allclose(b.arrays[name], a.arrays[name], rtol=1e-5, atol=1e-7)
