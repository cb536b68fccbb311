"""Mode-connecting curves: `landscape connect` and `landscape surface --curve`.

Two ResNet-8s (width 4, BatchNorm) trained independently on digits (seeds 1 and 2) are joined
by a trained quadratic Bezier curve. Every stored value is checked against plain PyTorch for
weights built by hand from the curve file (`plain_reestimate_bn`, `plain_evaluate`).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import digits_splits, plain_evaluate, plain_reestimate_bn

from landscape.errors import LandscapeError
from landscape.io.storage import read_directions, read_surface
from landscape.jobs.curve_surface import CurveSurfaceConfig, compute_curve_surface
from landscape.jobs.curves import ConnectConfig, barrier, connect, curve_weights, load_curve

MODEL, KWARGS = "resnet8", {"width": 4}
BN_BATCH = 256  # CurveSurfaceConfig's and ConnectConfig's default
RTOL = 1e-5


def _train(out: Path, seed: int, model: str = MODEL, kwargs: dict | None = None, epochs: int = 5) -> Path:
    from landscape.jobs.train import TrainConfig, train

    train(TrainConfig(model=model, model_kwargs=dict(kwargs or KWARGS), data="digits", epochs=epochs,
                      seed=seed, device="cpu", out=str(out), quiet=True))
    return out


@pytest.fixture(scope="module")
def ends(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("curve_ends")
    return _train(folder / "a.pt", 1), _train(folder / "b.pt", 2)


@pytest.fixture(scope="module")
def curve_file(ends: tuple[Path, Path]) -> Path:
    a, b = ends
    return connect(ConnectConfig(ckpt=str(a), ckpt2=str(b), out=str(a.parent / "curve.pt"), epochs=4, quiet=True))


@pytest.fixture(scope="module")
def profile(curve_file: Path) -> Path:
    out = curve_file.parent / "profile.h5"
    return compute_curve_surface(CurveSurfaceConfig(curve=str(curve_file), x="0:1:11", out=str(out), quiet=True))


def _by_hand(curve_file: Path, t: float, line: bool = False) -> dict:
    """phi(t) (or the line's point) from the files alone: w_a's state, parameters replaced."""
    raw = torch.load(curve_file, weights_only=True)
    wa, wb = (torch.load(e["path"], weights_only=True)["state_dict"] for e in raw["ends"])
    theta = raw["bends"][0]
    state = {k: v.clone() for k, v in wa.items()}
    for k in theta:
        state[k] = (1 - t) * wa[k] + t * wb[k] if line else (1 - t) ** 2 * wa[k] + 2 * t * (1 - t) * theta[k] + t**2 * wb[k]
    return state


def _plain(state: dict) -> dict:
    """Plain PyTorch: BatchNorm re-estimated on the digits train split, then eval-mode values."""
    splits = digits_splits()
    kwargs = {"in_channels": 1, "num_classes": 10, **KWARGS}  # what `landscape train` records
    bn_state = plain_reestimate_bn(MODEL, kwargs, state, splits["train"][0], BN_BATCH)
    return plain_evaluate(MODEL, kwargs, bn_state, splits)


def test_curve_barrier_far_below_line(profile: Path, curve_file: Path) -> None:
    metrics = read_surface(profile).metrics
    for split in ("train", "test"):
        line, curve = metrics[f"line_barrier_{split}_loss"], metrics[f"curve_barrier_{split}_loss"]
        assert line > 0.3, (split, line)  # two independent minima: the line rises between them
        assert curve < 0.5 * line, (split, curve, line)
        print(f"{split} loss barrier: curve {curve:.4f}, line {line:.4f}")  # the numbers in docs/curves.md
    # the barrier measured by connect (11 points, train split) is the profile's
    b = load_curve(curve_file).barriers
    assert b["curve_barrier"] == pytest.approx(metrics["curve_barrier_train_loss"], rel=RTOL, abs=1e-7)
    assert b["line_barrier"] == pytest.approx(metrics["line_barrier_train_loss"], rel=RTOL)


@pytest.mark.parametrize("t_index", [3, 5, 8])
@pytest.mark.parametrize("line", [False, True])
def test_profile_equals_plain_pytorch(profile: Path, curve_file: Path, t_index: int, line: bool) -> None:
    s = read_surface(profile)
    t = float(s.x[t_index])
    want = _plain(_by_hand(curve_file, t, line))
    prefix = "line_" if line else ""
    for key, value in want.items():
        assert s.arrays[prefix + key][t_index] == pytest.approx(value, rel=RTOL), (key, t)


def test_ends_are_the_checkpoints_with_recomputed_bn(profile: Path, ends: tuple[Path, Path]) -> None:
    """At t = 0 and 1 curve and line are the two checkpoints' weights; their BatchNorm statistics
    are recomputed there too (as at every point), so the values are the checkpoints' own
    weights evaluated after re-estimation."""
    s = read_surface(profile)
    for index, path in ((0, ends[0]), (-1, ends[1])):
        want = _plain(torch.load(path, weights_only=True)["state_dict"])
        for key, value in want.items():
            assert s.arrays[key][index] == pytest.approx(value, rel=RTOL), key
            assert s.arrays[f"line_{key}"][index] == s.arrays[key][index], key


def test_barrier_definition() -> None:
    assert barrier([0.0, 0.5, 1.0], [1.0, 3.0, 2.0]) == (1.5, 0.5)
    assert barrier([0.0, 0.5, 1.0], [1.0, 0.5, 2.0]) == (0.0, 0.0)  # below the chord: no barrier
    with pytest.raises(LandscapeError, match="t = 0 and t = 1"):
        barrier([0.1, 1.0], [1.0, 2.0])


@pytest.fixture(scope="module")
def plane(curve_file: Path) -> Path:
    import landscape  # the notebook API: the curve file and keywords

    return landscape.compute_curve_surface(curve_file, x="0:1:3", y="0:1:2", out=str(curve_file.parent / "plane.h5"),
                                           quiet=True, splits=("train",))


def test_plane_through_ends_and_bend(profile: Path, curve_file: Path, plane: Path) -> None:
    out = plane
    s = read_surface(out)
    info = s.attrs["curve"]
    alpha = info["bend_x"]
    assert info["nodes"][0] == [0.0, 0.0] and info["nodes"][-1] == [1.0, 0.0]
    assert info["nodes"][1] == pytest.approx([alpha, 1.0], abs=1e-9)
    assert info["bend_off_plane"][0] == pytest.approx(0.0, abs=1e-6)
    # the ends of the plane are the ends of the profile
    p = read_surface(profile)
    assert s.arrays["train_loss"][0, 0] == pytest.approx(p.arrays["train_loss"][0], rel=RTOL)
    assert s.arrays["train_loss"][2, 0] == pytest.approx(p.arrays["train_loss"][-1], rel=RTOL)
    # the bend, rebuilt from the stored directions, is the curve file's bend
    dx, dy, _ = read_directions(out)
    raw = torch.load(curve_file, weights_only=True)
    wa = torch.load(raw["ends"][0]["path"], weights_only=True)["state_dict"]
    for k, theta in raw["bends"][0].items():
        torch.testing.assert_close(wa[k] + alpha * dx[k] + dy[k], theta, rtol=1e-4, atol=1e-5)
    # an interior point, by hand: w_a + x u + y v with the stored directions
    state = {k: v.clone() for k, v in wa.items()}
    for k in dx:
        state[k] = wa[k] + 0.5 * dx[k] + 1.0 * dy[k]
    want = _plain(state)
    assert s.arrays["train_loss"][1, 1] == pytest.approx(want["train_loss"], rel=RTOL)
    assert s.arrays["train_acc"][1, 1] == pytest.approx(want["train_acc"], rel=RTOL)


def test_connect_is_deterministic_and_polychain_geometry(ends: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = ends
    runs = [
        load_curve(connect(ConnectConfig(ckpt=str(a), ckpt2=str(b), out=str(tmp_path / f"c{i}.pt"), kind="polychain",
                                         epochs=1, max_samples=256, points=3, quiet=True)))
        for i in range(2)
    ]
    for bend0, bend1 in zip(runs[0].bends, runs[1].bends):
        for k in bend0:
            assert torch.equal(bend0[k], bend1[k]), k
    c = runs[0]
    assert len(c.bends) == 2 and c.kind == "polychain"
    wa, wb = c.end_params()
    for t, node in ((0.0, wa), (1 / 3, c.bends[0]), (2 / 3, c.bends[1]), (1.0, wb)):
        point = curve_weights("polychain", (wa, wb), c.bends, t)
        for k in point:
            torch.testing.assert_close(point[k], node[k], rtol=1e-6, atol=1e-6)
    moved = sum(float((c.bends[0][k] - (2 * wa[k] + wb[k]) / 3).abs().sum()) for k in wa)
    assert moved > 0  # training moved the bend off the line
    # its plane passes through the ends and the mean of the two bends
    out = compute_curve_surface(CurveSurfaceConfig(curve=str(tmp_path / "c0.pt"), x="0:1:2", y="0:1:2",
                                                   splits=("train",), max_samples=64, quiet=True,
                                                   out=str(tmp_path / "chain.h5")))
    info = read_surface(out).attrs["curve"]
    nodes = np.asarray(info["nodes"])
    assert len(nodes) == 4 and info["kind"] == "polychain"
    np.testing.assert_allclose(nodes[[0, -1]], [[0, 0], [1, 0]])
    np.testing.assert_allclose(nodes[1:3].mean(0), [info["bend_x"], 1.0], atol=1e-6)


def test_resume_and_other_settings(profile: Path, curve_file: Path) -> None:
    """A rerun of the same profile has nothing to do and keeps the values; other settings on
    the same file are refused (one line) and leave it as it was."""
    before = read_surface(profile).arrays["train_loss"].copy()
    cfg = CurveSurfaceConfig(curve=str(curve_file), x="0:1:11", out=str(profile), quiet=True)
    compute_curve_surface(cfg)
    np.testing.assert_array_equal(read_surface(profile).arrays["train_loss"], before)
    with pytest.raises(LandscapeError, match="other settings"):
        compute_curve_surface(CurveSurfaceConfig(curve=str(curve_file), x="0:1:5", out=str(profile), quiet=True))
    np.testing.assert_array_equal(read_surface(profile).arrays["train_loss"], before)


def test_curve_figures(run_cli, profile: Path, plane: Path, tmp_path: Path) -> None:  # noqa: ANN001
    from matplotlib.figure import Figure

    from landscape.render.curve_plot import plot_curve_nodes, plot_curve_profile

    s = read_surface(profile)
    drawn = plot_curve_profile(s, "train", Figure().add_subplot())
    np.testing.assert_array_equal(drawn["curve"].get_ydata(), s.arrays["train_loss"])
    np.testing.assert_array_equal(drawn["line"].get_ydata(), s.arrays["line_train_loss"])
    assert f"barrier {s.metrics['line_barrier_train_loss']:.3g}" in drawn["line"].get_label()
    p = read_surface(plane)
    marks = plot_curve_nodes(p, Figure().add_subplot())
    nodes = np.asarray(p.attrs["curve"]["nodes"])
    np.testing.assert_allclose(marks["ends"].get_offsets(), nodes[[0, -1]])
    np.testing.assert_allclose(marks["bends"].get_offsets(), nodes[1:-1])
    path = np.column_stack([marks["curve"].get_xdata(), marks["curve"].get_ydata()])
    np.testing.assert_allclose(path[[0, 50, -1]], [[0, 0], [0.25 + 0.5 * nodes[1][0], 0.5], [1, 0]], atol=1e-9)
    with pytest.raises(LandscapeError, match="not the plane of a curve"):
        plot_curve_nodes(s, Figure().add_subplot())
    from landscape.render.report import report_figures  # the report's contour marks them too

    contour = {i: f for _, i, f in report_figures([p])}["s0-contour"]
    traces = {t.get("name"): t for t in contour["data"][1:]}
    assert {"curve", "line", "ends and bend"} <= set(traces) and contour["layout"]["showlegend"]
    np.testing.assert_allclose(np.column_stack([traces["ends and bend"]["x"], traces["ends and bend"]["y"]]),
                               nodes, atol=1e-5)
    np.testing.assert_allclose([traces["curve"]["x"][50], traces["curve"]["y"][50]],
                               [0.25 + 0.5 * nodes[1][0], 0.5], atol=1e-5)
    code, out, err = run_cli("plot", profile, "--out", tmp_path)
    assert code == 0, err
    assert (tmp_path / "profile_curve.png").stat().st_size > 0


# --- one-line refusals ------------------------------------------------------------------------


def _one_line_error(result: tuple[int, str, str], *fragments: str) -> None:
    code, _, err = result
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_refusals(run_cli, ends: tuple[Path, Path], curve_file: Path, tmp_path: Path) -> None:  # noqa: ANN001
    a, b = ends
    other = _train(tmp_path / "mlp.pt", 0, model="mlp", kwargs={"hidden": 16}, epochs=1)
    _one_line_error(run_cli("connect", "--ckpt", a, "--ckpt2", other, "--quiet"), "same architecture")
    _one_line_error(run_cli("connect", "--ckpt", curve_file, "--ckpt2", b, "--quiet"), "is a curve file")
    _one_line_error(run_cli("connect", "--ckpt", a, "--ckpt2", b, "--kind", "spline"), "--kind")
    before = a.read_bytes()
    _one_line_error(run_cli("connect", "--ckpt", a, "--ckpt2", b, "--out", a, "--quiet"), "end checkpoints")
    _one_line_error(run_cli("connect", "--ckpt", a, "--ckpt2", b, "--out", other, "--quiet"), "not a curve file")
    assert a.read_bytes() == before
    _one_line_error(run_cli("surface", "--ckpt", curve_file, "--x=-1:1:3"), "is a curve file")
    _one_line_error(run_cli("surface", "--curve", a, "--x=0:1:3"), "not a curve file")
    _one_line_error(run_cli("surface", "--curve", curve_file, "--x=-1:1:3"), "t in [0, 1]")
    _one_line_error(run_cli("surface", "--curve", curve_file, "--ckpt2", b), "--ckpt2 does not apply")
    _one_line_error(run_cli("surface", "--curve", tmp_path / "none.pt"), "does not exist")
    _one_line_error(run_cli("surface"), "give --ckpt")


def test_changed_end_is_refused(run_cli, ends: tuple[Path, Path], curve_file: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """A curve is defined relative to its ends: a replaced end checkpoint is named, not used."""
    a, b = (shutil.copy(p, tmp_path / p.name) for p in ends)
    import landscape

    c = landscape.connect(a, b, out=str(tmp_path / "c.pt"), epochs=1, max_samples=64, points=2, quiet=True)
    shutil.copy(curve_file.parent / "b.pt", a)  # a now holds other weights
    _one_line_error(run_cli("surface", "--curve", c, "--x=0:1:3", "--quiet"), "has changed")


def test_cli_connect_and_profile(run_cli, ends: tuple[Path, Path], tmp_path: Path) -> None:  # noqa: ANN001
    a, b = ends
    code, out, err = run_cli("connect", "--ckpt", a, "--ckpt2", b, "--out", "c.pt", "--epochs", "1",
                             "--max-samples", "128", "--points", "3", "--quiet")
    assert code == 0, err
    assert "barrier" in out and (tmp_path / "c.pt").exists()
    raw = torch.load(tmp_path / "c.pt", weights_only=True)  # a plain dict of data
    assert raw["format"] == "landscape-curve" and raw["kind"] == "bezier" and len(raw["ends"]) == 2
    code, out, err = run_cli("surface", "--curve", "c.pt", "--x=0:1:3", "--splits", "train", "--max-samples",
                             "128", "--out", "p.h5", "--quiet")
    assert code == 0, err
    assert "train loss barrier: curve" in out
    s = read_surface(tmp_path / "p.h5")
    assert s.computed.all() and np.isfinite(s.arrays["line_train_loss"]).all()


@pytest.mark.parametrize(("change", "fragment"), [
    (lambda d: d.update(version=99), "version 99"),
    (lambda d: d.update(kind="spline"), "not a curve landscape writes"),
    (lambda d: d.update(bends=[]), "not a curve landscape writes"),
    (lambda d: d.update(model="os:system"), "os:system"),
    (lambda d: d.update(ends="a.pt"), "'ends'"),
    (lambda d: d["ends"][0].update(path="/nonexistent/a.pt"), "is missing"),
    (lambda d: d["bends"][0].update({next(iter(d["bends"][0])): torch.zeros(3)}), "does not fit"),
    (lambda d: d["bends"][0].pop(next(iter(d["bends"][0]))), "do not cover"),
])
def test_damaged_curve_file_is_refused_in_one_line(change, fragment: str, curve_file: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """Files are data: a hand-made or damaged curve file is named, never used or executed."""
    raw = torch.load(curve_file, weights_only=True)
    change(raw)
    bad = tmp_path / "bad.pt"
    torch.save(raw, bad)
    with pytest.raises(LandscapeError, match=re.escape(fragment)):
        compute_curve_surface(bad, x="0:1:2", out=str(tmp_path / "s.h5"), quiet=True)
    assert not (tmp_path / "s.h5").exists()
