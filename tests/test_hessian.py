"""Hessian eigenvalues, trace and eigenvector directions against an exact dense Hessian.

The reference is `torch.autograd.functional.hessian` of the mean loss over all the samples in
one pass, in float64, on tiny real models (an MLP with a few hundred weights, and a small conv
net with BatchNorm in eval mode), diagonalized with `torch.linalg.eigh`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import RunCli
from torch import nn
from torch.func import functional_call

from landscape.data.sources import load_dataset
from landscape.engine.hessian import (
    HessianOperator,
    exact_trace,
    hessian_spectrum,
    hutchinson_trace,
    lanczos,
)
from landscape.engine.hessian_directions import hessian_directions
from landscape.errors import LandscapeError
from landscape.io.checkpoint import build_model, load_checkpoint
from landscape.io.storage import read_surface
from landscape.jobs.compute import SurfaceConfig, compute_surface
from landscape.jobs.hessian_job import HessianConfig
from landscape.jobs.train import TrainConfig, train

N = 48  # samples
XY = tuple[torch.Tensor, torch.Tensor]
Case = tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


# ----------------------------------------------------------------------------- references


def dense_hessian(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    keys: list[str] | None = None,
    state: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, list[str]]:
    """Exact Hessian [D, D] (float64) of the mean cross-entropy over (x, y) in one pass, eval mode.

    `keys` default to the parameters with 2+ dims; `state` (default: the model's) gives the
    weights. Flat order: keys in model order, each tensor flattened.
    """
    m = copy.deepcopy(model).double().eval()
    src = state if state is not None else m.state_dict()
    st = {k: (v.detach().double() if v.is_floating_point() else v) for k, v in src.items()}
    keys = keys or [k for k, p in m.named_parameters() if p.dim() >= 2]
    rest = {k: v for k, v in st.items() if k not in keys}
    flat0 = torch.cat([st[k].reshape(-1) for k in keys])

    def mean_loss(flat: torch.Tensor) -> torch.Tensor:
        params, i = {}, 0
        for k in keys:
            n = st[k].numel()
            params[k] = flat[i : i + n].view(st[k].shape)
            i += n
        return F.cross_entropy(functional_call(m, (params, rest), (x.double(),)), y)

    return torch.autograd.functional.hessian(mean_loss, flat0), keys


def _train(model: str, kwargs: dict, epochs: int, out: Path) -> Path:
    train(TrainConfig(model=model, model_kwargs=kwargs, data="digits", epochs=epochs, seed=0,
                      device="cpu", out=str(out), quiet=True))
    return out


@pytest.fixture(scope="module")
def digits_xy() -> XY:
    ds = load_dataset("digits")
    return ds.x_train[:N], ds.y_train[:N]


@pytest.fixture(scope="module")
def mlp_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mlp with 4 hidden units (312 weights with 2+ dims), 2 epochs on digits."""
    return _train("mlp", {"hidden": 4}, 2, tmp_path_factory.mktemp("mlp") / "mlp.pt")


@pytest.fixture(scope="module")
def cnn_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cnn_small of width 2 (130 weights with 2+ dims, two BatchNorms), 1 epoch on digits."""
    return _train("cnn_small", {"width": 2}, 1, tmp_path_factory.mktemp("cnn") / "cnn.pt")


@pytest.fixture(scope="module", params=["mlp", "cnn_bn"])
def case(request: pytest.FixtureRequest, mlp_ckpt: Path, cnn_ckpt: Path, digits_xy: XY) -> Case:
    """(model, x, y, dense Hessian over weights with 2+ dims, its eigenvalues ascending)."""
    path = mlp_ckpt if request.param == "mlp" else cnn_ckpt
    model = build_model(load_checkpoint(path))
    x, y = digits_xy
    h, _ = dense_hessian(model, x, y)
    return model, x, y, h, torch.linalg.eigvalsh(h)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


# ----------------------------------------------------------------------------- products


def test_hvp_equals_dense_hessian_times_vector(case: Case) -> None:
    model, x, y, h, _ = case
    op = HessianOperator(model, x, y, batch_size=7, dtype=torch.float64)
    assert op.dim == h.shape[0]
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        v = torch.randn(op.dim, generator=g, dtype=torch.float64)
        ref = h @ v
        assert (op.matvec(v) - ref).norm() <= 1e-10 * ref.norm()
    assert op.hvps == 3


def test_hvp_averaged_over_batches_equals_the_full_batch_hvp(case: Case) -> None:
    model, x, y, _, _ = case
    v = torch.randn(HessianOperator(model, x, y).dim, generator=torch.Generator().manual_seed(0))
    full = HessianOperator(model, x, y, batch_size=N).matvec(v)
    for bs in (5, 16, 47):
        batched = HessianOperator(model, x, y, batch_size=bs).matvec(v)
        assert (batched - full).norm() <= 1e-5 * full.norm(), bs


def test_bn_stays_in_eval_mode(cnn_ckpt: Path, digits_xy: XY) -> None:
    model = build_model(load_checkpoint(cnn_ckpt))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    op = HessianOperator(model, *digits_xy)
    op.matvec(torch.ones(op.dim, dtype=torch.float64))
    assert not op.model.training
    for k, v in op.model.state_dict().items():  # running statistics untouched
        assert torch.equal(v.cpu(), before[k]), k


# ----------------------------------------------------------------------------- eigenvalues


def test_top_k_and_smallest_eigenvalues_match_the_dense_hessian(case: Case) -> None:
    model, x, y, h, ev = case
    r = hessian_spectrum(model, x, y, top_k=5, smallest=True, tol=1e-6, max_iter=300,
                         dtype=torch.float64, vectors=True)
    top = ev.flip(0)[:5]
    for got, want, res in zip(r.eigenvalues, top.tolist(), r.residuals):
        assert _rel(got, want) < 1e-3
        assert abs(got - want) <= res + 1e-12  # the residual bounds the error
    assert _rel(r.min_eigenvalue, ev[0].item()) < 1e-3
    assert r.converged and r.iterations <= 300
    assert all(1 <= i <= r.iterations for i in r.eigen_iterations)
    # the Ritz vectors are eigenvectors of the dense Hessian, with the reported residuals
    for lam, v, res in zip(r.eigenvalues, r.vectors, r.residuals):
        dense_res = (h @ v - lam * v).norm().item()
        assert dense_res / abs(lam) < 1e-3
        assert dense_res == pytest.approx(res, rel=1e-3, abs=1e-12)
        assert v.norm().item() == pytest.approx(1.0, abs=1e-12)


def test_float32_default_matches_the_dense_hessian(case: Case) -> None:
    model, x, y, _, ev = case
    r = hessian_spectrum(model, x, y, top_k=3, smallest=True, tol=1e-4)
    assert r.converged
    for got, want in zip(r.eigenvalues, ev.flip(0)[:3].tolist()):
        assert _rel(got, want) < 1e-3
    assert _rel(r.min_eigenvalue, ev[0].item()) < 1e-3
    assert r.n_params == len(ev) and r.n_samples == N


def test_all_parameters_with_ignore_none(mlp_ckpt: Path, digits_xy: XY) -> None:
    model = build_model(load_checkpoint(mlp_ckpt))
    keys = [k for k, _ in model.named_parameters()]
    h, _ = dense_hessian(model, *digits_xy, keys=keys)
    ev = torch.linalg.eigvalsh(h)
    r = hessian_spectrum(model, *digits_xy, top_k=2, smallest=True, ignore="none", tol=1e-6,
                         max_iter=400, dtype=torch.float64)
    assert r.n_params == sum(p.numel() for p in model.parameters())
    assert _rel(r.eigenvalues[0], ev[-1].item()) < 1e-3
    assert _rel(r.min_eigenvalue, ev[0].item()) < 1e-3


def test_lanczos_finds_repeated_and_negative_eigenvalues() -> None:
    """A known spectrum with a double top eigenvalue: Lanczos must restart to find the copy."""
    g = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(60, 60, generator=g, dtype=torch.float64))
    spectrum = torch.cat([torch.tensor([5.0, 5.0, 3.0, -2.0], dtype=torch.float64),
                          torch.linspace(-1, 1, 56, dtype=torch.float64)])
    a = q @ torch.diag(spectrum) @ q.T
    r = lanczos(lambda v: a @ v, 60, top_k=3, smallest=True, tol=1e-8, max_iter=60, vectors=True)
    assert r.values == pytest.approx([5.0, 5.0, 3.0], abs=1e-7)
    assert r.min_value == pytest.approx(-2.0, abs=1e-7)
    assert abs(float(r.vectors[0] @ r.vectors[1])) < 1e-6  # two independent eigenvectors of 5


def test_lanczos_reports_when_it_did_not_converge(case: Case) -> None:
    model, x, y, _, _ = case
    op = HessianOperator(model, x, y)
    r = lanczos(op.matvec, op.dim, top_k=5, smallest=True, tol=1e-9, max_iter=6)
    assert not r.converged and r.iterations == 6
    assert r.converged_at[-1] == 6  # the last pair never met the tolerance


def test_deterministic_given_a_seed(case: Case) -> None:
    model, x, y, _, _ = case
    a = hessian_spectrum(model, x, y, top_k=2, trace=True, trace_samples=20, trace_tol=None, seed=4)
    b = hessian_spectrum(model, x, y, top_k=2, trace=True, trace_samples=20, trace_tol=None, seed=4)
    c = hessian_spectrum(model, x, y, top_k=2, trace=True, trace_samples=20, trace_tol=None, seed=5)
    assert a.eigenvalues == b.eigenvalues and a.iterations == b.iterations
    assert a.trace.value == b.trace.value and a.trace.stderr == b.trace.stderr
    assert c.trace.value != a.trace.value


# ----------------------------------------------------------------------------- trace


def test_exact_trace_equals_the_dense_trace(case: Case) -> None:
    model, x, y, h, _ = case
    op = HessianOperator(model, x, y, dtype=torch.float64)
    t = exact_trace(op.matvec, op.dim)
    assert _rel(t.value, h.trace().item()) < 1e-9 and t.samples == op.dim and t.method == "exact"


def test_hutchinson_trace_within_its_reported_error(case: Case) -> None:
    model, x, y, h, _ = case
    op = HessianOperator(model, x, y)
    n = 400
    t = hutchinson_trace(op.matvec, op.dim, max_samples=n, rel_tol=None, seed=0)
    exact = h.trace().item()
    assert t.samples == n and t.method == "hutchinson"
    assert abs(t.value - exact) <= 4 * t.stderr
    # Var(z^T H z) = 2 sum_{i != j} H_ij^2 for Rademacher z: the reported error is that one's
    theory = np.sqrt(2 * ((h**2).sum() - (h.diagonal() ** 2).sum()).item() / n)
    assert 0.75 < t.stderr / theory < 1.25


def test_hutchinson_stops_at_its_tolerance(case: Case) -> None:
    model, x, y, _, _ = case
    op = HessianOperator(model, x, y)
    t = hutchinson_trace(op.matvec, op.dim, max_samples=2000, rel_tol=0.2, min_samples=10)
    assert 10 <= t.samples < 2000 and t.stderr <= 0.2 * abs(t.value)


# ----------------------------------------------------------------------------- directions


def _flat(d: dict[str, torch.Tensor], keys: list[str]) -> torch.Tensor:
    return torch.cat([d[k].double().reshape(-1) for k in keys])


def test_hessian_directions_are_orthonormal_eigenvectors(case: Case) -> None:
    model, x, y, _, _ = case
    keys = [k for k, _ in model.named_parameters()]
    h, _ = dense_hessian(model, x, y, keys=keys)
    ev = torch.linalg.eigvalsh(h)
    d = hessian_directions(model, {"train": (x, y)}, two_d=True, tol=1e-5, max_iter=300)
    assert d.kind == "hessian" and d.keys() == keys
    vx, vy = _flat(d.x, keys), _flat(d.y, keys)
    assert vx.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert vy.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert abs(float(vx @ vy)) < 1e-4
    for v, lam, want in zip((vx, vy), d.extra["eigenvalues"], ev.flip(0)[:2].tolist()):
        assert _rel(lam, want) < 1e-3
        assert (h @ v - lam * v).norm().item() / abs(lam) < 1e-3


def test_hessian_directions_filter_normalized_and_states(cnn_ckpt: Path, digits_xy: XY) -> None:
    model = build_model(load_checkpoint(cnn_ckpt))
    plain = hessian_directions(model, {"train": digits_xy}, ignore="biasbn", two_d=False)
    d = hessian_directions(model, {"train": digits_xy}, ignore="biasbn", norm="filter",
                           dir_type="states", two_d=False)
    assert d.y is None and d.norm == "filter"
    state = model.state_dict()
    for k, t in d.x.items():
        w = state[k]
        if k.endswith(("running_mean", "running_var")) or w.dim() < 2:
            assert torch.count_nonzero(t) == 0, k  # not covered: BN buffers, biases, BN affine
            continue
        rows, prow, wrows = t.reshape(len(t), -1), plain.x[k].reshape(len(t), -1), w.reshape(len(w), -1)
        assert torch.allclose(rows.norm(dim=1), wrows.norm(dim=1), rtol=1e-4)  # filter norms
        cos = F.cosine_similarity(rows, prow, dim=1)  # each filter along the eigenvector's
        assert torch.allclose(cos, torch.ones_like(cos), atol=1e-5)


# ----------------------------------------------------------------------------- the command


def _independent(ckpt: Path) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model = build_model(load_checkpoint(ckpt))
    ds = load_dataset("digits")
    return model, ds.x_train[:N], ds.y_train[:N]


def test_cli_json_matches_the_dense_hessian(run_cli: RunCli, cnn_ckpt: Path) -> None:
    code, out, err = run_cli("hessian", "--ckpt", cnn_ckpt, "--max-samples", N, "--top-k", 3,
                             "--min", "--trace", "--exact-trace", "--dtype", "float64",
                             "--tol", "1e-6", "--iters", "130", "--json", "--batch-size", "10")
    assert code == 0, err
    r = json.loads(out)
    model, x, y = _independent(cnn_ckpt)
    h, _ = dense_hessian(model, x, y)
    ev = torch.linalg.eigvalsh(h)
    assert r["eigenvalues"] == pytest.approx(ev.flip(0)[:3].tolist(), rel=1e-3)
    assert r["min_eigenvalue"] == pytest.approx(ev[0].item(), rel=1e-3)
    assert r["trace"] == pytest.approx(h.trace().item(), rel=1e-6) and r["trace_stderr"] == 0
    assert r["n_params"] == h.shape[0] and r["n_samples"] == N and r["params"] == "2d"
    assert len(r["residuals"]) == 3 and len(r["eigen_iterations"]) == 3 and r["converged"]
    assert r["mean_loss"] == pytest.approx(F.cross_entropy(model(x), y).item(), rel=1e-5)


def test_cli_table_and_store_into_a_surface(run_cli: RunCli, mlp_ckpt: Path, tmp_path: Path) -> None:
    surf = tmp_path / "s.h5"
    code, _, err = run_cli("surface", "--ckpt", mlp_ckpt, "--x=-0.5:0.5:3", "--max-samples", N,
                           "--out", surf, "--quiet")
    assert code == 0, err
    code, out, err = run_cli("hessian", "--ckpt", mlp_ckpt, "--max-samples", N, "--top-k", 2,
                             "--min", "--trace", "--trace-samples", 30, "--store", surf)
    assert code == 0, err
    lines = out.splitlines()
    assert any(line.split()[:1] == ["1"] for line in lines)  # one row per eigenvalue
    assert any(line.split()[:1] == ["min"] for line in lines)
    assert any(line.startswith("trace = ") and "+-" in line for line in lines)
    s = read_surface(surf)
    hess = s.attrs["hessian"]
    model, x, y = _independent(mlp_ckpt)
    ev = torch.linalg.eigvalsh(dense_hessian(model, x, y)[0])
    assert hess["eigenvalues"][0] == pytest.approx(ev[-1].item(), rel=1e-3)
    assert f"{hess['eigenvalues'][0]:.6g}" in out
    assert s.attrs["metrics"]["top_eigenvalue"] == hess["eigenvalues"][0]
    assert s.attrs["metrics"]["center_train_loss"] == pytest.approx(hess["mean_loss"], rel=1e-5)
    code, out, _ = run_cli("info", surf)
    assert code == 0 and "top_eigenvalue" in out


def test_cli_errors_are_one_line(run_cli: RunCli, mlp_ckpt: Path, cnn_ckpt: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.h5"
    code, out, err = run_cli("hessian", "--ckpt", mlp_ckpt, "--store", missing)
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    # a surface of another checkpoint
    surf = tmp_path / "cnn.h5"
    compute_surface(SurfaceConfig(ckpt=str(cnn_ckpt), x="0:0:1", max_samples=8, out=str(surf),
                                  device="cpu", comm="serial", quiet=True))
    code, _, err = run_cli("hessian", "--ckpt", mlp_ckpt, "--max-samples", 8, "--top-k", 1,
                           "--store", surf)
    assert code == 2 and "another checkpoint" in err and len(err.strip().splitlines()) == 1
    assert "hessian" not in read_surface(surf).attrs


def test_library_errors() -> None:
    with pytest.raises(LandscapeError, match="--top-k must be at least 1"):
        HessianConfig(ckpt="x.pt", top_k=0)
    HessianConfig(ckpt="x.pt", top_k=0, smallest=True)  # only the smallest: fine
    with pytest.raises(LandscapeError, match="top-k"):
        lanczos(lambda v: v, 10, top_k=0)
    with pytest.raises(LandscapeError, match="asked for 4 eigenvalues"):
        lanczos(lambda v: v, 3, top_k=4)
    with pytest.raises(LandscapeError, match="Hutchinson"):
        exact_trace(lambda v: v, 10**6)


def test_surface_with_hessian_directions(run_cli: RunCli, mlp_ckpt: Path, tmp_path: Path) -> None:
    surf = tmp_path / "h.h5"
    code, _, err = run_cli("surface", "--ckpt", mlp_ckpt, "--x=-1:1:3", "--y=-1:1:3", "--dirs",
                           "hessian", "--max-samples", N, "--splits", "train", "--out", surf, "--quiet")
    assert code == 0, err
    s = read_surface(surf)
    assert s.attrs["dir_kind"] == "hessian" and s.computed.all()
    model, x, y = _independent(mlp_ckpt)
    keys = [k for k, _ in model.named_parameters()]
    h, _ = dense_hessian(model, x, y, keys=keys)  # default --ignore none: every parameter
    ev = torch.linalg.eigvalsh(h)
    with h5py.File(surf, "r") as f:
        vx = torch.cat([torch.from_numpy(f["directions/x"][k][()]).double().reshape(-1) for k in keys])
        vy = torch.cat([torch.from_numpy(f["directions/y"][k][()]).double().reshape(-1) for k in keys])
    lams = s.attrs["directions"]["eigenvalues"]
    assert lams == pytest.approx(ev.flip(0)[:2].tolist(), rel=1e-3)
    assert vx.norm().item() == pytest.approx(1, abs=1e-5) and abs(float(vx @ vy)) < 1e-4
    for v, lam in zip((vx, vy), lams):
        assert (h @ v - lam * v).norm().item() / abs(lam) < 1e-3
    # resuming recomputes the directions but matches the file's settings
    code, out, err = run_cli("surface", "--ckpt", mlp_ckpt, "--x=-1:1:3", "--y=-1:1:3", "--dirs",
                             "hessian", "--max-samples", N, "--splits", "train", "--out", surf)
    assert code == 0, err
    assert "0 points" in out
