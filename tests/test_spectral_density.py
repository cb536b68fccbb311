"""The Hessian's spectral density (landscape.engine.spectral_density, SLQ) against the exact spectrum of
a full Hessian formed by torch.autograd.functional.hessian, and against PyHessian's density()."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import RunCli
from torch import nn

from landscape.core.spectrum import SpectralDensity
from landscape.engine.hessian import HessianOperator
from landscape.engine.spectral_density import (
    DensityConfig,
    rademacher_probes,
    slq,
    spectral_density,
)
from landscape.errors import LandscapeError

PROBES, STEPS = 30, 40


@pytest.fixture(scope="module")
def tiny() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """An MLP 8-16-4 (212 parameters) on 64 points of 4 Gaussian blobs, a few SGD steps in."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (64,), generator=g)
    x = torch.randn(64, 8, generator=g) + 2.0 * torch.nn.functional.one_hot(y, 8).float()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(20):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model, x, y


def _exact_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The full Hessian [dim, dim] of the mean cross-entropy, float64, by autograd (not our HVPs)."""
    from torch.func import functional_call

    net = copy.deepcopy(model).double()
    names = [k for k, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for _, p in net.named_parameters()])

    def loss(theta: torch.Tensor) -> torch.Tensor:
        parts, i = {}, 0
        for k, s in zip(names, shapes):
            n = math.prod(s)
            parts[k] = theta[i : i + n].reshape(s)
            i += n
        return nn.functional.cross_entropy(functional_call(net, parts, (x.double(),)), y)

    return torch.autograd.functional.hessian(loss, flat)


@pytest.fixture(scope="module")
def exact(tiny: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> tuple[HessianOperator, torch.Tensor, np.ndarray]:
    model, x, y = tiny
    op = HessianOperator(model, x, y, ignore="none", dtype=torch.float64)
    h = _exact_hessian(model, x, y)
    np.testing.assert_allclose(op.dense().numpy(), h.numpy(), rtol=0, atol=1e-10)  # our HVPs are that H
    return op, h, np.linalg.eigvalsh(h.numpy())


def test_quadrature_is_exact_per_probe(exact: tuple[HessianOperator, torch.Tensor, np.ndarray]) -> None:
    """m Lanczos steps: Gauss quadrature, exact for u^T H^k u up to k = 2m - 1."""
    op, h, _ = exact
    probes = rademacher_probes(op.dim, 3, seed=1)
    nodes, weights = slq(op.matvec, probes, STEPS)
    for z, t, w in zip(probes, nodes, weights):
        u = z / z.norm()
        assert w.sum() == pytest.approx(1.0, abs=1e-12) and (w >= 0).all() and len(t) == STEPS
        hk = u.clone()
        for k in range(1, 6):
            hk = h @ hk
            assert np.sum(w * t**k) == pytest.approx(float(u @ hk), rel=1e-8, abs=1e-12)


def test_density_moments_and_support_match_the_exact_spectrum(
    exact: tuple[HessianOperator, torch.Tensor, np.ndarray],
) -> None:
    op, h, lam = exact
    d = spectral_density(op.matvec, op.dim, PROBES, STEPS, seed=0)
    dim, fro2 = op.dim, float((h**2).sum())
    # the moments are Hutchinson estimates: within 4 standard errors of the exact values
    # (Var z^T A z = 2 (||A||_F^2 - sum_i A_ii^2) for Rademacher z)
    for k, a in ((1, h), (2, h @ h)):
        exact_k = float(torch.trace(a))
        se = math.sqrt(2 * (float((a**2).sum()) - float((torch.diagonal(a) ** 2).sum())) / PROBES)
        assert abs(d.moment(k) * dim - exact_k) < 4 * se + 1e-9, (k, d.moment(k) * dim, exact_k, se)
    assert d.moment(2) * dim == pytest.approx(fro2, rel=0.1)
    lo, hi = d.support
    assert lam[0] - 1e-9 <= lo and hi <= lam[-1] + 1e-9  # Ritz values lie inside the spectrum
    assert hi == pytest.approx(lam[-1], rel=1e-9)  # the extremes converge first (measured 2e-15)
    assert lo == pytest.approx(lam[0], abs=1e-9 * lam[-1])
    # the smoothed density is a probability density over the spectrum
    assert np.trapezoid(d.density, d.grid) == pytest.approx(1.0, abs=1e-3)
    assert d.sigma == pytest.approx(0.01 * (hi - lo))
    # stored and read back unchanged
    back = SpectralDensity.from_dict(d.to_dict())
    assert back.moment(2) == d.moment(2) and np.array_equal(back.density, d.density)


def test_bad_density_settings_are_one_line_errors() -> None:
    for kw, what in (({"probes": 0}, "--density-probes"), ({"steps": 0}, "--density-steps"),
                     ({"sigma": -1.0}, "--density-sigma"), ({"sigma": float("nan")}, "--density-sigma")):
        with pytest.raises(LandscapeError, match=what):
            DensityConfig(**kw)
    with pytest.raises(LandscapeError, match="damaged"):
        SpectralDensity.from_dict({"nodes": [[1.0]], "weights": [[1.0, 0.0]]})


def _pyhessian_probes(params: list[torch.Tensor], n: int) -> torch.Tensor:
    """The Rademacher vectors PyHessian 0.1's density() draws after torch.manual_seed (its code)."""
    out = []
    for _ in range(n):
        v = [torch.randint_like(p, high=2) for p in params]
        for vi in v:
            vi[vi == 0] = -1
        out.append(torch.cat([vi.reshape(-1) for vi in v]).double())
    return torch.stack(out)


def test_against_pyhessian_density(tiny: tuple[nn.Module, torch.Tensor, torch.Tensor],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Same model, data and probes: PyHessian 0.1 (PyPI) nodes and weights equal ours.

    The release calls torch.eig, removed from torch; it is given back here as the symmetric
    eigendecomposition it computed (T is symmetric). Its weights, the squared first
    components b_[0, :]**2, are right in the release; the bug fixed by its PR 23 (weights
    as the whole squared eigenvector matrix) came with the move to torch.linalg.eig after it.
    """
    pyhessian = pytest.importorskip("pyhessian")

    def eig(t: torch.Tensor, eigenvectors: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        val, vec = torch.linalg.eigh(t)
        return torch.stack([val, torch.zeros_like(val)], dim=1), vec

    monkeypatch.setattr(torch, "eig", eig, raising=False)
    model, x, y = tiny
    net = copy.deepcopy(model)
    comp = pyhessian.hessian(net, nn.CrossEntropyLoss(), data=(x, y), cuda=False)
    torch.manual_seed(7)
    their_nodes, their_weights = comp.density(iter=STEPS, n_v=3)
    torch.manual_seed(7)
    probes = _pyhessian_probes([p for p in net.parameters()], 3)
    op = HessianOperator(model, x, y, ignore="none")  # float32 products, as PyHessian
    nodes, weights = slq(op.matvec, probes, STEPS)
    scale = float(max(abs(t).max() for t in nodes))
    for t, w, tt, ww in zip(nodes, weights, their_nodes, their_weights):
        order = np.argsort(tt)
        tt, ww = np.asarray(tt)[order], np.asarray(ww)[order]
        assert abs(tt[-1] - t[-1]) < 1e-4 * scale and abs(tt[0] - t[0]) < 1e-3 * scale
        for k in (1, 2, 3):  # the quadrature's moments agree (the interior nodes cluster)
            assert np.sum(ww * tt**k) == pytest.approx(np.sum(w * t**k), rel=2e-4)  # measured 2e-5


def test_hessian_density_command_stores_plots_and_summarises(run_cli: RunCli, tiny_ckpt: Path,
                                                             tmp_path: Path) -> None:
    """The command's stored density equals the API's on the same model, data and seed."""
    from landscape.data.sources import load_dataset
    from landscape.engine.hessian import hessian_spectrum
    from landscape.io.checkpoint import build_model, load_checkpoint
    from landscape.io.storage import read_surface

    code, _, err = run_cli("surface", "--ckpt", tiny_ckpt, "--x=-1:1:3", "--y=-1:1:3",
                           "--max-samples", "50", "--out", "s.h5")
    assert code == 0, err
    code, out, err = run_cli("hessian", "--ckpt", tiny_ckpt, "--max-samples", "50", "--top-k", "1",
                             "--density", "--density-probes", "3", "--density-steps", "15", "--seed", "2",
                             "--store", "s.h5")
    assert code == 0, err
    assert "density: 3 probes x 15 Lanczos steps" in out
    stored = read_surface(tmp_path / "s.h5").attrs["hessian"]["density"]
    ckpt = load_checkpoint(tiny_ckpt)
    x, y = load_dataset(ckpt.data["name"]).split("train")
    ref = hessian_spectrum(build_model(ckpt), x[:50], y[:50], top_k=1, seed=2,
                           density=DensityConfig(3, 15)).density
    assert ref is not None
    np.testing.assert_allclose(np.concatenate(stored["nodes"]), np.concatenate(ref.nodes), rtol=1e-5, atol=1e-7)
    assert stored["probes"] == 3 and stored["steps"] == 15 and stored["sigma"] > 0
    hi = read_surface(tmp_path / "s.h5").attrs["hessian"]["eigenvalues"][0]
    assert stored["support"][1] == pytest.approx(hi, rel=1e-3)  # top node: the top eigenvalue
    code, out, err = run_cli("info", "s.h5")
    assert code == 0, err
    assert "density: 3 probes x 15 Lanczos steps, nodes" in out
    assert len(out) < 20_000  # nodes, weights and the grid stay in --json
    code, out, err = run_cli("plot", "s.h5", "--kind", "heatmap")
    assert code == 0, err
    assert "s_hessian_density.png" in out and (tmp_path / "plots" / "s_hessian_density.png").stat().st_size > 0
    from landscape.render.report import report_figures

    figs = {fig_id: fig for _, fig_id, fig in report_figures([read_surface(tmp_path / "s.h5")])}
    density = figs["s0-density"]  # the report shows the stored density, as `plot` does
    assert density["layout"]["yaxis"]["type"] == "log"
    np.testing.assert_allclose(density["data"][0]["x"], stored["grid"], rtol=1e-5)
    assert [m["x0"] for m in density["layout"]["shapes"]] == pytest.approx(stored["support"], rel=1e-5)
    code, _, err = run_cli("hessian", "--ckpt", tiny_ckpt, "--density", "--density-sigma", "0")
    assert code != 0 and "positive" in err and "Traceback" not in err


def test_plot_density_draws_log_density_and_support(exact: tuple[HessianOperator, torch.Tensor, np.ndarray]) -> None:
    from matplotlib.figure import Figure

    from landscape.render.density_plot import FLOOR, plot_density

    op, _, lam = exact
    d = spectral_density(op.matvec, op.dim, 4, 20, seed=3)
    ax = Figure().add_subplot()
    drawn = plot_density(d, ax)
    np.testing.assert_array_equal(drawn["density"].get_xdata(), d.grid)
    np.testing.assert_array_equal(drawn["density"].get_ydata(), np.maximum(d.density, FLOOR))
    assert ax.get_yscale() == "log"
    assert [ln.get_xdata()[0] for ln in drawn["support"]] == list(d.support)
    assert d.support[1] == pytest.approx(lam[-1], rel=1e-6)
