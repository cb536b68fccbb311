"""End-to-end surfaces: `landscape surface` runs checked against plain PyTorch, resume, kill, bad input."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import (
    assert_compiled_or_rejected,
    cli_env,
    digits_splits,
    landscape_command,
    plain_evaluate,
    plain_reestimate_bn,
    run_cli_here,
)

from landscape.core.directions import direction_keys, random_directions
from landscape.data.sources import load_dataset
from landscape.io.checkpoint import load_checkpoint
from landscape.io.storage import read_directions, read_surface
from landscape.jobs.compute import SurfaceConfig, compute_surface
from landscape.jobs.info import describe
from landscape.jobs.train import snapshot_dir
from landscape.models import create_model

ARRAYS = ("train_loss", "train_acc", "test_loss", "test_acc")


def _cli(*args: str, cwd: Path, timeout: float = 120) -> tuple[int, str, str]:
    proc = subprocess.run([landscape_command(), *map(str, args)], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def _main(*args: str, cwd: Path) -> tuple[int, str, str]:
    """`landscape ARGS...` in this process: the same parser and error handling, no start-up cost.

    An exception that escapes `main` (what would print a traceback) fails the test.
    """
    return run_cli_here(cwd, *args)


def _compute(ckpt: Path, out: Path, **kwargs) -> Path:
    """The library call behind `landscape surface` (in this process: no start-up cost)."""
    return compute_surface(SurfaceConfig(ckpt=str(ckpt), out=str(out), quiet=True, **kwargs))


def _state_at(center: dict, x: dict, y: dict | None, a: float, b: float) -> dict:
    """center + a * x + b * y on the direction's keys, written out independently of the library."""
    state = {k: v.clone() for k, v in center.items()}
    for k in x:
        state[k] = center[k] + a * x[k].to(center[k].dtype)
        if y is not None:
            state[k] = state[k] + b * y[k].to(center[k].dtype)
    return state


def _assert_plain_pytorch(path: Path, ckpt: Path, max_samples: int | None, points=None, rtol=1e-5) -> None:
    """Stored values equal a plain-PyTorch evaluation of the stored directions at (x[i], y[j])."""
    s = read_surface(path)
    c = load_checkpoint(ckpt)
    x, y, _ = read_directions(path)
    splits = digits_splits(max_samples)
    splits = {k: v for k, v in splits.items() if f"{k}_loss" in s.arrays}
    assert s.computed.all()
    for idx in points if points is not None else np.ndindex(*s.shape):
        a = float(s.x[idx[0]])
        b = float(s.y[idx[1]]) if s.y is not None else 0.0
        ref = plain_evaluate(c.model, c.model_kwargs, _state_at(c.state_dict, x, y, a, b), splits)
        for name, want in ref.items():
            got = float(s.arrays[name][idx])
            if np.isnan(want):  # e.g. a negative running variance far out on a `states` line
                assert np.isnan(got), (idx, (a, b), name, got)
                continue
            assert got == pytest.approx(want, rel=rtol, abs=1e-12), (idx, (a, b), name, got, want)


def _one_line_error(code: int, err: str) -> str:
    assert code != 0
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("landscape surface: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def mlp_2d(tmp_path_factory: pytest.TempPathFactory, tiny_ckpt: Path) -> tuple[Path, str, str]:
    """A complete non-square surface written by the command: (path, stdout, stderr)."""
    cwd = tmp_path_factory.mktemp("mlp_2d")
    code, out, err = _main("surface", "--ckpt", tiny_ckpt, "--x=-1:1:5", "--y=0:0.5:3",
                          "--max-samples", "200", "--out", "mlp_2d.h5", cwd=cwd)
    assert code == 0, err
    return cwd / "mlp_2d.h5", out, err


@pytest.fixture(scope="module")
def resnet_states(tmp_path_factory: pytest.TempPathFactory, tiny_resnet_ckpt: Path) -> Path:
    """A `states` surface of resnet8 (BN statistics move along the directions)."""
    out = tmp_path_factory.mktemp("resnet_states") / "states.h5"
    return _compute(tiny_resnet_ckpt, out, x="-0.5:0.5:3", y="-0.4:0.4:2", dir_type="states",
                    ignore="none", seed=4, max_samples=150)


def _copy(src: Path, dst_dir: Path) -> Path:
    dst = dst_dir / src.name
    shutil.copy2(src, dst)
    return dst


# ----------------------------------------------------------------------------- values


def test_non_square_2d_run_matches_plain_pytorch(mlp_2d: tuple[Path, str, str], tiny_ckpt: Path) -> None:
    path, out, err = mlp_2d
    s = read_surface(path)
    assert s.shape == (5, 3)
    np.testing.assert_array_equal(s.x, np.linspace(-1, 1, 5))
    np.testing.assert_array_equal(s.y, np.linspace(0, 0.5, 3))
    _assert_plain_pytorch(path, tiny_ckpt, 200)
    # the stored directions are the seeded, filter-normalized ones
    c = load_checkpoint(tiny_ckpt)
    net = create_model(c.model, **c.model_kwargs)
    net.load_state_dict(c.state_dict)
    d = random_directions(net, seed=0)
    x, y, _ = read_directions(path)
    for k in d.x:
        assert torch.equal(x[k], d.x[k]) and torch.equal(y[k], d.y[k])
    a = s.attrs
    assert a["format"] == "landscape-surface" and a["version"] == 1
    assert a["model"] == "mlp" and a["checkpoint_sha256"] and a["n_train"] == 200 and a["n_test"] == 200
    assert (a["dir_kind"], a["dir_type"], a["norm"], a["ignore"], a["seed"]) == (
        "random", "weights", "filter", "biasbn", 0)
    assert a["bn"] == "eval" and a["precision"] == "fp32" and a["plan"]["plan_strategy"] in ("vmap", "sequential")
    assert len(a["runs"]) == 1 and a["runs"][0]["points"] == 15 and a["runs"][0]["seconds"] > 0
    assert a["metrics"]["center_train_loss"] == pytest.approx(float(s.arrays["train_loss"][2, 0]))
    # progress on stderr, a final line with the time and the rate on stdout
    assert "15/15" in err
    assert "mlp_2d.h5: 15 points in" in out and "points/s" in out


def test_info_prints_metadata_and_points_done(mlp_2d: tuple[Path, str, str]) -> None:
    path = mlp_2d[0]
    code, out, err = _main("info", path.name, cwd=path.parent)
    assert code == 0, err
    assert "points done: 15/15 (100.0%)" in out
    assert "grid: 5x3 (2D)" in out and "model: mlp" in out and "norm: filter" in out
    assert "runs:" in out and "15 points in" in out


def test_1d_curve_on_one_split(tiny_ckpt: Path, tmp_path: Path) -> None:
    path = _compute(tiny_ckpt, tmp_path / "line.h5", x="-1:1:7", splits=("test",), max_samples=150)
    s = read_surface(path)
    assert s.y is None and s.shape == (7,) and set(s.surfaces()) == {"test_loss", "test_acc"}
    with h5py.File(path, "r") as f:
        assert "ycoordinates" not in f and "y" not in f["directions"]
    _assert_plain_pytorch(path, tiny_ckpt, 150)


def test_states_surface_moves_bn_statistics(resnet_states: Path, tiny_resnet_ckpt: Path) -> None:
    x, y, meta = read_directions(resnet_states)
    assert meta["dir_type"] == "states"
    assert "bn1.running_mean" in x and "layer2.0.shortcut.1.running_var" in x
    assert not any(k.endswith("num_batches_tracked") for k in x)
    center = load_checkpoint(tiny_resnet_ckpt).state_dict
    # ignore=none: the direction of a 1-D entry is the entry itself
    assert torch.equal(x["bn1.running_var"], center["bn1.running_var"])
    _assert_plain_pytorch(resnet_states, tiny_resnet_ckpt, 150)


def test_interpolation_line_reaches_the_second_checkpoint(tiny_resnet_ckpt: Path, tmp_path: Path) -> None:
    first = snapshot_dir(tiny_resnet_ckpt) / "epoch_0000.pt"
    path = _compute(tiny_resnet_ckpt, tmp_path / "line.h5", ckpt2=str(first), x="-0.5:1.5:5",
                    dir_type="states", max_samples=150)
    s = read_surface(path)
    assert s.attrs["dir_kind"] == "interpolate"
    x, _, _ = read_directions(path)
    c1, c2 = load_checkpoint(tiny_resnet_ckpt), load_checkpoint(first)
    for k in direction_keys(create_model(c1.model, **c1.model_kwargs), "states"):
        torch.testing.assert_close(x[k], c2.state_dict[k] - c1.state_dict[k], rtol=0, atol=1e-7)
    _assert_plain_pytorch(path, tiny_resnet_ckpt, 150)
    # at 0 and 1 the line passes through the two checkpoints themselves, BN statistics included
    splits = digits_splits(150)
    for i, c in ((1, c1), (3, c2)):
        own = plain_evaluate(c.model, c.model_kwargs, c.state_dict, splits)
        assert s.arrays["train_loss"][i] == pytest.approx(own["train_loss"], rel=1e-5)


def test_interpolation_plane_through_three_checkpoints(tiny_resnet_ckpt: Path, tmp_path: Path) -> None:
    snaps = snapshot_dir(tiny_resnet_ckpt)
    c2, c3 = snaps / "epoch_0000.pt", snaps / "epoch_0001.pt"
    path = _compute(tiny_resnet_ckpt, tmp_path / "plane.h5", ckpt2=str(c2), ckpt3=str(c3),
                    x="0:1:2", y="-0.5:1:4", dir_type="states", max_samples=120)
    s = read_surface(path)
    assert s.attrs["dir_kind"] == "plane" and s.shape == (2, 4)
    _assert_plain_pytorch(path, tiny_resnet_ckpt, 120)
    splits = digits_splits(120)
    for idx, c in (((1, 1), c2), ((0, 3), c3)):
        ck = load_checkpoint(c)
        own = plain_evaluate(ck.model, ck.model_kwargs, ck.state_dict, splits)
        assert s.arrays["test_loss"][idx] == pytest.approx(own["test_loss"], rel=1e-5)


def test_pca_surface_of_a_training_trajectory(tiny_traj_ckpt: Path, tmp_path: Path) -> None:
    snaps = sorted(snapshot_dir(tiny_traj_ckpt).glob("epoch_*.pt"))
    assert len(snaps) == 4
    path = _compute(tiny_traj_ckpt, tmp_path / "pca.h5", pca=tuple(map(str, snaps)),
                    x="-1:1:3", y="-1:1:3", max_samples=150)
    s = read_surface(path)
    meta = s.attrs["directions"]
    assert s.attrs["dir_kind"] == "pca"
    ratio = meta["explained_variance_ratio"]
    assert len(ratio) == 2 and ratio[0] >= ratio[1] > 0 and sum(ratio) <= 1 + 1e-9
    x, y, _ = read_directions(path)
    u = torch.cat([x[k].double().flatten() for k in x])
    v = torch.cat([y[k].double().flatten() for k in x])
    assert float(u.norm()) == pytest.approx(1, abs=1e-5) and float(v.norm()) == pytest.approx(1, abs=1e-5)
    assert abs(float(u @ v)) < 1e-5
    # the trajectory: projected coordinates and the actual loss of every snapshot
    t = s.trajectory
    assert t is not None and {"x", "y", "epochs", "loss"} <= set(t)
    assert list(t["epochs"]) == [0, 1, 2, 3]
    final = load_checkpoint(tiny_traj_ckpt).state_dict
    splits = digits_splits(150)
    for i, p in enumerate(snaps):
        snap = load_checkpoint(p)
        delta = torch.cat([(snap.state_dict[k] - final[k]).double().flatten() for k in x])
        assert t["x"][i] == pytest.approx(float(delta @ u), abs=1e-5)
        assert t["y"][i] == pytest.approx(float(delta @ v), abs=1e-5)
        own = plain_evaluate(snap.model, snap.model_kwargs, snap.state_dict, {"train": splits["train"]})
        assert t["loss"][i] == pytest.approx(own["train_loss"], rel=1e-5)
    _assert_plain_pytorch(path, tiny_traj_ckpt, 150)


def test_points_per_pass_and_batch_size_do_not_change_the_file(tiny_ckpt: Path, tiny_resnet_ckpt: Path,
                                                               tmp_path: Path) -> None:
    runs = {
        tiny_ckpt: [dict(strategy="sequential"), dict(strategy="vmap", points_per_pass=1),
                    dict(strategy="vmap", points_per_pass=3, batch_size=7),
                    dict(strategy="vmap", points_per_pass=7, batch_size=512), dict(batch_size=64)],
        tiny_resnet_ckpt: [dict(batch_size=7), dict(batch_size=512),
                           dict(strategy="vmap", points_per_pass=3, batch_size=64)],
    }
    for ckpt, variants in runs.items():
        files = []
        for n, kw in enumerate(variants):
            files.append(_compute(ckpt, tmp_path / f"{ckpt.stem}_{n}.h5", x="-1:1:4", y="-1:1:3",
                                  max_samples=101, **kw))
            plan = read_surface(files[-1]).attrs["plan"]
            for key in ("strategy", "points_per_pass", "batch_size"):
                if key in kw:
                    assert plan[f"plan_{key}"] == kw[key]
        _assert_plain_pytorch(files[0], ckpt, 101)
        first = read_surface(files[0])
        for f in files[1:]:
            other = read_surface(f)
            for name in ARRAYS:
                np.testing.assert_allclose(other.arrays[name], first.arrays[name], rtol=2e-6)


def test_compile_on_stores_plain_pytorch_values_and_records_it(tiny_resnet_ckpt: Path, tmp_path: Path) -> None:
    path = _compute(tiny_resnet_ckpt, tmp_path / "compiled.h5", x="-1:1:3", y="-1:1:2", max_samples=101,
                    compile="on")
    plan = read_surface(path).attrs["plan"]
    assert_compiled_or_rejected(plan["plan_compile"], plan["plan_reason"], "torch.compile (asked for)")
    _assert_plain_pytorch(path, tiny_resnet_ckpt, 101)
    off = _compute(tiny_resnet_ckpt, tmp_path / "eager.h5", x="-1:1:3", y="-1:1:2", max_samples=101,
                   compile="off")
    assert read_surface(off).attrs["plan"]["plan_compile"] is False


def test_bn_recompute_equals_an_independent_reestimation(tiny_resnet_ckpt: Path, tmp_path: Path) -> None:
    path = _compute(tiny_resnet_ckpt, tmp_path / "bn.h5", x="-1:1:3", bn="recompute", batch_size=64,
                    max_samples=200)
    s = read_surface(path)
    assert s.attrs["bn"] == "recompute"
    c = load_checkpoint(tiny_resnet_ckpt)
    x, _, _ = read_directions(path)
    bn_x = load_dataset("digits").x_train[:200]  # the training samples evaluated, in batches of 64
    splits = digits_splits(200)
    for i in (0, 2):
        at = _state_at(c.state_dict, x, None, float(s.x[i]), 0.0)
        state = plain_reestimate_bn(c.model, c.model_kwargs, at, bn_x, 64)
        ref = plain_evaluate(c.model, c.model_kwargs, state, splits)
        for name, want in ref.items():
            assert float(s.arrays[name][i]) == pytest.approx(want, rel=1e-5), (i, name)


def test_bf16_records_its_error_against_fp32(tiny_ckpt: Path, tmp_path: Path) -> None:
    path = _compute(tiny_ckpt, tmp_path / "bf16.h5", x="-1:1:3", precision="bf16", max_samples=100)
    s = read_surface(path)
    assert s.attrs["precision"] == "bf16"
    assert 0 <= s.attrs["precision_max_rel_error"] < 0.05


def test_diverged_points_are_stored_and_do_not_stop_the_run(tiny_ckpt: Path, tmp_path: Path) -> None:
    path = _compute(tiny_ckpt, tmp_path / "far.h5", x="-1e20:1e20:5", max_samples=100)
    s = read_surface(path)
    assert s.computed.all()
    loss = s.arrays["train_loss"]
    assert not np.isfinite(loss[[0, 1, 3, 4]]).any()  # far out: inf or NaN, kept as computed
    assert np.isfinite(loss[2])
    _assert_plain_pytorch(path, tiny_ckpt, 100, points=[(2,)])
    _compute(tiny_ckpt, path, x="-1e20:1e20:5", max_samples=100)  # nothing is missing: nothing to do
    again = read_surface(path)
    assert len(again.attrs["runs"]) == 1
    for name in ARRAYS:
        np.testing.assert_array_equal(again.arrays[name], s.arrays[name])


def test_rerun_of_a_complete_file_changes_nothing(tiny_ckpt: Path, tmp_path: Path) -> None:
    """Nothing to compute: no run is recorded, and the plan and bf16 error of the file stay."""
    path = _compute(tiny_ckpt, tmp_path / "done.h5", x="-1:1:3", precision="bf16", max_samples=100)
    before = path.read_bytes()
    code, out, err = _main("surface", "--ckpt", tiny_ckpt, "--x=-1:1:3", "--precision", "bf16",
                           "--max-samples", "100", "--batch-size", "7", "--out", path.name, cwd=tmp_path)
    assert code == 0, err
    assert "0 points" in out and "nothing to do" in out
    assert path.read_bytes() == before


def test_a_line_through_two_checkpoints_refuses_a_y_axis(tiny_ckpt: Path, tiny_traj_ckpt: Path,
                                                         tmp_path: Path) -> None:
    """--ckpt2 gives one direction: a --y axis would silently repeat the line along y."""
    first = snapshot_dir(tiny_traj_ckpt) / "epoch_0000.pt"
    code, _, err = _main("surface", "--ckpt", tiny_ckpt, "--ckpt2", first, "--x=0:1:3", "--y=0:1:3",
                         "--out", "line.h5", cwd=tmp_path)
    line = _one_line_error(code, err)
    assert "--ckpt3" in line and "--y" in line
    assert not (tmp_path / "line.h5").exists()


def test_resume_with_dirs_given_by_another_path_to_the_same_file(mlp_2d: tuple[Path, str, str],
                                                                  tiny_ckpt: Path, tmp_path: Path) -> None:
    dirs = _copy(mlp_2d[0], tmp_path)
    args = ["--ckpt", tiny_ckpt, "--x=-1:1:3", "--y=-1:1:3", "--max-samples", "100", "--out", "re.h5"]
    code, _, err = _main("surface", *args, "--dirs", dirs.name, cwd=tmp_path)
    assert code == 0, err
    code, out, err = _main("surface", *args, "--dirs", str(dirs.resolve()), cwd=tmp_path)
    assert code == 0, err
    assert "0 points" in out


# ----------------------------------------------------------------------------- direction files


def test_paper_direction_file_is_accepted_by_dirs(tiny_ckpt: Path, tmp_path: Path) -> None:
    c = load_checkpoint(tiny_ckpt)
    net = create_model(c.model, **c.model_kwargs)
    net.load_state_dict(c.state_dict)
    g = torch.Generator().manual_seed(42)
    dirs = {axis: [torch.randn(p.shape, generator=g) * 0.1 for p in net.parameters()] for axis in "xy"}
    paper = tmp_path / "model.t7_weights_xignore=biasbn_xnorm=filter.h5"
    with h5py.File(paper, "w") as f:
        for axis in "xy":
            group = f.create_group(f"{axis}direction")
            for i, t in enumerate(dirs[axis]):
                group[str(i)] = t.numpy()
    path = _compute(tiny_ckpt, tmp_path / "from_paper.h5", dirs=str(paper), x="-1:1:3", y="0:1:2",
                    max_samples=100)
    x, y, _ = read_directions(path)
    for (name, _), tx, ty in zip(net.named_parameters(), dirs["x"], dirs["y"]):
        assert torch.equal(x[name], tx) and torch.equal(y[name], ty)
    _assert_plain_pytorch(path, tiny_ckpt, 100)


def test_dirs_reuses_the_directions_of_another_surface(mlp_2d: tuple[Path, str, str], tiny_ckpt: Path,
                                                       tmp_path: Path) -> None:
    path = _compute(tiny_ckpt, tmp_path / "reuse.h5", dirs=str(mlp_2d[0]), x="-2:2:3", y="-2:2:3",
                    max_samples=200)
    x, y, _ = read_directions(path)
    x0, y0, _ = read_directions(mlp_2d[0])
    for k in x0:
        assert torch.equal(x[k], x0[k]) and torch.equal(y[k], y0[k])
    # the point both grids share, the centre, has the same value
    first, second = read_surface(mlp_2d[0]), read_surface(path)
    assert second.arrays["train_loss"][1, 1] == pytest.approx(first.arrays["train_loss"][2, 0], rel=1e-6)


# ----------------------------------------------------------------------------- resume, kill


def _resnet_args(out: str) -> list[str]:
    return ["--x=-1:1:13", "--y=-1:1:13", "--max-samples", "250", "--out", out]


def test_killed_run_resumes_to_the_uninterrupted_result(tiny_resnet_ckpt: Path, tmp_path: Path) -> None:
    total = 13 * 13
    # the uninterrupted reference, with the thread count of the command (OMP_NUM_THREADS=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref_path = _compute(tiny_resnet_ckpt, tmp_path / "ref.h5", x="-1:1:13", y="-1:1:13", max_samples=250)
    finally:
        torch.set_num_threads(threads)
    ref = read_surface(ref_path)

    out = tmp_path / "killed.h5"
    cmd = [landscape_command(), "surface", "--ckpt", str(tiny_resnet_ckpt), *_resnet_args(out.name)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen, reads = 0, 0
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists():
                s = read_surface(out)  # another process reads the file during the run
                reads += 1
                seen = s.done
                if 0 < seen < total:
                    time.sleep(0.2)  # land the kill inside the next chunk
                    break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed; enlarge the grid"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert reads > 0 and 0 < seen < total

    killed = read_surface(out)  # opens after SIGKILL
    assert seen <= killed.done < total
    assert killed.attrs["runs"] == []  # the killed run never finished
    for name in ARRAYS:
        np.testing.assert_allclose(killed.arrays[name][killed.computed], ref.arrays[name][killed.computed],
                                   rtol=1e-6)
        assert np.isnan(killed.arrays[name][~killed.computed]).all()
    partial = describe(out)
    assert f"points done: {killed.done}/{total}" in partial

    code, stdout, err = _main("surface", "--ckpt", tiny_resnet_ckpt, *_resnet_args(out.name), cwd=tmp_path)
    assert code == 0, err
    assert f"{total - killed.done} points in" in stdout
    resumed = read_surface(out)
    assert resumed.computed.all()
    assert [r["points"] for r in resumed.attrs["runs"]] == [total - killed.done]
    for name in ARRAYS:
        np.testing.assert_allclose(resumed.arrays[name], ref.arrays[name], rtol=1e-6)
    # the points kept from the killed run were not recomputed
    assert (resumed.arrays["point_seconds"][killed.computed] == killed.arrays["point_seconds"][killed.computed]).all()


# ----------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("args", "setting"),
    [
        (["--x=-1:1:5", "--y=0:0.5:3", "--max-samples", "200", "--norm", "layer"], "directions.norm"),
        (["--x=-1:1:5", "--y=0:0.5:3", "--max-samples", "200", "--seed", "1"], "directions.seed"),
        (["--x=-1:1:7", "--y=0:0.5:3", "--max-samples", "200"], "grid.x"),
        (["--x=-1:1:5", "--y=0:0.5:3", "--max-samples", "100"], "data.n_"),
    ],
    ids=["norm", "seed", "grid", "samples"],
)
def test_other_settings_on_an_existing_file_are_refused(mlp_2d: tuple[Path, str, str], tiny_ckpt: Path,
                                                        tmp_path: Path, args: list[str], setting: str) -> None:
    path = _copy(mlp_2d[0], tmp_path)
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    code, _, err = _main("surface", "--ckpt", tiny_ckpt, *args, "--out", path.name, cwd=tmp_path)
    line = _one_line_error(code, err)
    assert setting in line and "--force" in line
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_force_starts_afresh(mlp_2d: tuple[Path, str, str], tiny_ckpt: Path, tmp_path: Path) -> None:
    path = _copy(mlp_2d[0], tmp_path)
    old = read_surface(path)
    code, out, err = _main("surface", "--ckpt", tiny_ckpt, "--x=-1:1:5", "--y=0:0.5:3", "--max-samples", "200",
                           "--norm", "layer", "--force", "--quiet", "--out", path.name, cwd=tmp_path)
    assert code == 0, err
    assert err == "" and out == ""  # --quiet: no progress bar, no final line
    new = read_surface(path)
    assert new.attrs["norm"] == "layer" and len(new.attrs["runs"]) == 1 and new.computed.all()
    assert not np.allclose(new.arrays["train_loss"], old.arrays["train_loss"])
    _assert_plain_pytorch(path, tiny_ckpt, 200, points=[(0, 2), (4, 1)])


# ----------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("empty_data_root")


BAD_INPUTS = [
    (["--x=1:-1:0"], "--x='1:-1:0'"),
    (["--x=a:b:c"], "must be numbers"),
    (["--x=-1:1"], "is not MIN:MAX:NUM"),
    (["--x=-1:1:5", "--y=1:-1:5"], "--y="),
    (["--ckpt", "missing.pt"], "missing.pt does not exist"),
    (["--data", "cifar10"], "needs --data-root"),
    (["--data", "cifar10", "--data-root", "{cifar_root}"], "is missing data_batch_1"),
    (["--model", "resnet8_noshort", "--ckpt", "{resnet}"], "does not fit model"),
    (["--dirs", "{states}", "--y=-1:1:3"], "does not match the model"),
    (["--ckpt2", "{resnet}"], "--ckpt2 lacks"),
    (["--out", "/dev/full/x.h5"], "folder /dev/full is not writable"),
]


@pytest.mark.parametrize(("args", "fragment"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_gives_one_clear_line(args: list[str], fragment: str, tiny_ckpt: Path, tiny_resnet_ckpt: Path,
                                        resnet_states: Path, cifar_root: Path, tmp_path: Path) -> None:
    args = [a.format(cifar_root=cifar_root, resnet=tiny_resnet_ckpt, states=resnet_states) for a in args]
    if "--ckpt" not in args:
        args = ["--ckpt", str(tiny_ckpt), *args]
    if "--out" not in args:
        args += ["--out", "bad.h5"]
    code, out, err = _main("surface", *args, cwd=tmp_path)
    line = _one_line_error(code, err)
    assert fragment in line, line
    assert not (tmp_path / "bad.h5").exists()


def test_bad_input_from_the_installed_command(mlp_2d: tuple[Path, str, str], tiny_ckpt: Path,
                                              tiny_resnet_ckpt: Path, tmp_path: Path) -> None:
    """The console script itself: one line on stderr, no traceback, a non-zero exit."""
    path = _copy(mlp_2d[0], tmp_path)
    before = path.read_bytes()
    cases = [
        (["--ckpt", tiny_ckpt, "--x=1:-1:0", "--out", "bad.h5"], "--x='1:-1:0'"),
        (["--ckpt", tiny_resnet_ckpt, "--model", "resnet8_noshort", "--out", "bad.h5"], "does not fit model"),
        (["--ckpt", tiny_ckpt, "--x=-1:1:5", "--y=0:0.5:3", "--max-samples", "200", "--norm", "layer",
          "--out", path.name], "directions.norm: file has 'filter', this run asks 'layer'"),
    ]
    for args, fragment in cases:
        code, _, err = _cli("surface", *args, cwd=tmp_path)
        assert fragment in _one_line_error(code, err)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def _mount_tmpfs(where: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("simulating a full disk needs root (to mount a small tmpfs)")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to simulate a full disk: {proc.stderr.strip()}")


def _fill(directory: Path) -> None:
    """Write a file until the file system is full."""
    with open(directory / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC


def test_full_disk_gives_one_line_and_never_damages_a_file(mlp_2d: tuple[Path, str, str], tiny_ckpt: Path,
                                                           tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    _mount_tmpfs(disk, "256k")
    try:
        partial = _copy(mlp_2d[0], disk)
        with h5py.File(partial, "r+") as f:  # a file whose last rows are still to compute
            computed = f["computed"][()]
            computed[3:] = 0
            f["computed"][...] = computed
        kept = read_surface(partial)
        _fill(disk)
        base = ["surface", "--ckpt", tiny_ckpt, "--x=-1:1:5", "--y=0:0.5:3", "--max-samples", "200", "--quiet"]
        code, _, err = _main(*base, "--out", "new.h5", cwd=disk)
        line = _one_line_error(code, err)
        assert "no space left on device" in line
        code, _, err = _main(*base, "--out", partial.name, cwd=disk)
        line = _one_line_error(code, err)
        assert "no space left on device" in line
        after = read_surface(partial)  # still opens, keeps every computed point
        assert after.computed[kept.computed].all()
        for name in ARRAYS:
            np.testing.assert_array_equal(after.arrays[name][kept.computed], kept.arrays[name][kept.computed])
        assert sorted(p.name for p in disk.iterdir()) == ["filler", partial.name]
    finally:
        subprocess.run(["umount", str(disk)], check=False)
