"""Several training runs on one PCA plane (`surface --pca RUN_A... --pca RUN_B...`): the plane is
fitted to all runs together, every run's path is stored and drawn with a legend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_MODEL, TINY_MODEL_KWARGS, digits_splits, plain_evaluate

from landscape.errors import LandscapeError
from landscape.io.checkpoint import load_checkpoint
from landscape.io.storage import read_directions, read_surface
from landscape.jobs.compute import SurfaceConfig, compute_surface
from landscape.jobs.train import TrainConfig, snapshot_dir, train
from landscape.render.report import report_figures


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], list[Path]]:
    """SGD and Adam from the same start (seed 0), 3 epochs each, a snapshot per epoch."""
    root = tmp_path_factory.mktemp("two_runs")
    base = TrainConfig(model=TINY_MODEL, model_kwargs=dict(TINY_MODEL_KWARGS), data="digits", epochs=3,
                       device="cpu", quiet=True, save_every=1)
    train(TrainConfig(**{**base.__dict__, "out": str(root / "sgd.pt")}))
    train(TrainConfig(**{**base.__dict__, "out": str(root / "adam.pt"), "optimizer": "adam", "lr": 0.01}))
    sgd = sorted(snapshot_dir(root / "sgd.pt").glob("epoch_*.pt"))
    adam = sorted(snapshot_dir(root / "adam.pt").glob("epoch_*.pt"))
    return root / "sgd.pt", sgd, adam


def _numpy_plane(final: dict, snaps: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Independent reference: deltas (1-D tensors zeroed, --ignore biasbn), pooled PCA by numpy."""
    keys = list(final)  # the mlp has no buffers: state-dict keys are its parameters, in order

    def flat(state: dict) -> np.ndarray:
        return np.concatenate([np.zeros(state[k].numel()) if state[k].dim() <= 1
                               else state[k].double().numpy().ravel() for k in keys])

    f = flat(final)
    m = np.stack([flat(load_checkpoint(p).state_dict) - f for p in snaps])
    _, sing, vt = np.linalg.svd(m - m.mean(0), full_matrices=False)
    var = sing**2
    return m, vt[:2], var[:2] / var.sum(), keys


def test_two_runs_projected_on_one_pooled_plane(two_runs, tmp_path: Path) -> None:  # noqa: ANN001
    ckpt, sgd, adam = two_runs
    out = compute_surface(SurfaceConfig(
        ckpt=str(ckpt), out=str(tmp_path / "two.h5"), x="-1:1:3", y="-1:1:3", max_samples=150, quiet=True,
        pca=tuple(map(str, sgd + adam)), pca_runs=(len(sgd), len(adam)),
    ))
    s = read_surface(out)
    meta = s.attrs["directions"]
    assert meta["runs"] == ["sgd", "adam"]
    t = s.trajectory
    assert t is not None and list(t["run"]) == [0] * len(sgd) + [1] * len(adam)
    m, comps, ratio, keys = _numpy_plane(load_checkpoint(ckpt).state_dict, sgd + adam)
    x, y, _ = read_directions(out)
    u = np.concatenate([x[k].double().numpy().ravel() for k in keys])
    v = np.concatenate([y[k].double().numpy().ravel() for k in keys])
    for stored, ref in ((u, comps[0]), (v, comps[1])):  # a component's sign is arbitrary
        assert abs(float(stored @ ref)) == pytest.approx(1.0, abs=1e-5)
    sign = np.sign([float(u @ comps[0]), float(v @ comps[1])])
    coords = (m @ comps.T) * sign  # [n, 2], numpy's projection of every snapshot of both runs
    np.testing.assert_allclose(t["x"], coords[:, 0], atol=1e-5)
    np.testing.assert_allclose(t["y"], coords[:, 1], atol=1e-5)
    np.testing.assert_allclose(meta["explained_variance_ratio"], ratio, rtol=1e-6)
    # per run: the share of the run's own variance (about its own mean) along each component
    for r, rows in enumerate((m[: len(sgd)], m[len(sgd):])):
        c = rows - rows.mean(0)
        np.testing.assert_allclose(meta["run_explained_variance_ratio"][r],
                                   ((c @ comps.T) ** 2).sum(0) / (c**2).sum(), rtol=1e-6)
    # the stored loss along each path is the snapshot's own (plain PyTorch), not the plane's
    splits = digits_splits(150)
    for i, p in enumerate(sgd + adam):
        snap = load_checkpoint(p)
        own = plain_evaluate(snap.model, snap.model_kwargs, snap.state_dict, {"train": splits["train"]})
        assert t["loss"][i] == pytest.approx(own["train_loss"], rel=1e-5)
    # the two runs start from the same weights, so their paths start at the same point
    assert (t["x"][0], t["y"][0]) == pytest.approx((t["x"][len(sgd)], t["y"][len(sgd)]), abs=1e-6)
    # drawn: one line per run with a legend naming it, and two named plotly traces
    from matplotlib.figure import Figure

    from landscape.render.plotting import plot_contour

    ax = Figure().add_subplot()
    plot_contour(s, "train_loss", ax, trajectory=True)
    legend = [txt.get_text() for txt in ax.get_legend().get_texts()]
    assert len(legend) == 2 and legend[0].startswith("sgd: ") and legend[1].startswith("adam: ")
    contour = next(f for _, fid, f in report_figures([s]) if fid.endswith("-contour"))
    paths = [tr for tr in contour["data"] if tr["type"] == "scatter" and "minim" not in tr["name"]]
    assert [tr["name"].split(":")[0] for tr in paths] == ["sgd", "adam"]
    assert contour["layout"]["showlegend"] is True and len(paths[1]["x"]) == len(adam)


def test_a_run_of_one_snapshot_is_refused(two_runs, tmp_path: Path) -> None:  # noqa: ANN001
    ckpt, sgd, adam = two_runs
    with pytest.raises(LandscapeError, match="has 1 snapshot; a path needs at least 2 per run"):
        compute_surface(SurfaceConfig(
            ckpt=str(ckpt), out=str(tmp_path / "bad.h5"), x="-1:1:3", y="-1:1:3", max_samples=50,
            quiet=True, pca=tuple(map(str, [*sgd, adam[-1]])), pca_runs=(len(sgd), 1),
        ))
    assert not (tmp_path / "bad.h5").exists()


def test_pca_option_repeated_per_run_from_the_command_line(run_cli, two_runs, tmp_path: Path) -> None:  # noqa: ANN001
    ckpt, sgd, adam = two_runs
    out = tmp_path / "cli.h5"
    code, _, err = run_cli("surface", "--ckpt", ckpt, "--pca", *sgd, "--pca", *adam, "--x=-1:1:3",
                           "--y=-1:1:3", "--max-samples", "60", "--quiet", "--out", out)
    assert code == 0, err
    assert read_surface(out).attrs["directions"]["runs"] == ["sgd", "adam"]
    code, _, err = run_cli("plot", out, "--kind", "contour", "--surf", "train_loss", "--trajectory",
                           "--out", tmp_path / "p")
    assert code == 0, err
    assert (tmp_path / "p" / "cli_train_loss_contour.png").stat().st_size > 10_000
