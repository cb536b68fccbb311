"""Options that would silently do nothing, or fail late, are refused up front in one line:
`--data-test` where it has no effect, PCA of snapshots that do not vary, a negative split seed,
a `--loss` with the wrong signature (and no empty surface file left behind); `--dir-type
states` that moves nothing more than `weights` is warned about."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from landscape.cli import main
from landscape.core.directions import pca_directions
from landscape.errors import LandscapeError
from landscape.io.checkpoint import build_model, load_checkpoint
from landscape.jobs.compute import SurfaceConfig, config_warnings
from landscape.jobs.train import snapshot_dir


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line(rc: int, err: str, fragment: str) -> None:
    assert rc == 2 and err.count("\n") == 1 and fragment in err, err


@pytest.fixture
def user_data(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "train.npz"
    np.savez(path, x=rng.normal(size=(20, 1, 8, 8)).astype(np.float32), y=rng.integers(0, 10, 20))
    return path


def test_data_test_without_effect_is_refused(
    tiny_ckpt: Path, user_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s.h5"
    base = ["surface", "--ckpt", str(tiny_ckpt), "--x=-1:1:2", "--quiet", "--out", str(out)]
    for extra, fragment in (
        (["--data-test", str(user_data)], "no effect with the checkpoint's own data set"),
        (["--data", "digits", "--data-test", str(user_data)], "no effect with --data digits"),
        (["--data", str(user_data), "--data-test", str(user_data), "--splits", "train"],
         "no effect with --splits train"),
    ):
        _one_line(*_run(base + extra, capsys)[::2], fragment)
        assert not out.exists()
    rc, _, err = _run(["hessian", "--ckpt", str(tiny_ckpt), "--data", str(user_data),
                       "--data-test", str(user_data)], capsys)
    _one_line(rc, err, "no effect with --split train")


def test_pca_of_snapshots_that_do_not_vary_is_refused(tiny_traj_ckpt: Path) -> None:
    model = build_model(load_checkpoint(tiny_traj_ckpt))
    same = [model.state_dict()] * 3
    with pytest.raises(LandscapeError, match="do not vary at all: zero variance"):
        pca_directions(model, same, components=1)
    first, second = sorted(snapshot_dir(tiny_traj_ckpt).glob("epoch_*.pt"))[:2]
    two = [load_checkpoint(first).state_dict, load_checkpoint(second).state_dict]
    # two snapshots span a line: a 1D curve along it is fine, a plane's y would be arbitrary
    d = pca_directions(model, two, components=1)
    assert d.extra["explained_variance_ratio"][0] == pytest.approx(1.0)
    with pytest.raises(LandscapeError, match="second component"):
        pca_directions(model, two, components=2)


def test_negative_split_seed_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.pt"
    rc, _, err = _run(["train", "--model", "mlp", "--epochs", "1", "--split-seed", "-1", "--quiet",
                       "--out", str(out)], capsys)
    _one_line(rc, err, "split seed -1")
    assert not out.exists()


def test_loss_of_the_wrong_signature_leaves_no_file(
    tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "badloss.py").write_text("def one(outputs):\n    return outputs.sum()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "s.h5"
    rc, _, err = _run(["surface", "--ckpt", str(tiny_ckpt), "--x=-1:1:2", "--quiet", "--max-samples", "8",
                       "--loss", "badloss:one", "--out", str(out)], capsys)
    _one_line(rc, err, "--loss badloss:one failed on a batch of 2 samples (TypeError")
    assert not out.exists() and not list(tmp_path.glob(".s.h5*"))


def test_states_with_biasbn_is_warned_about(
    tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert config_warnings(SurfaceConfig(ckpt="c.pt", dir_type="states"))
    assert not config_warnings(SurfaceConfig(ckpt="c.pt", dir_type="states", ignore="none"))
    assert not config_warnings(SurfaceConfig(ckpt="c.pt", ckpt2="d.pt"))  # states, ignore none
    rc, _, err = _run(["surface", "--ckpt", str(tiny_ckpt), "--x=-1:1:2", "--quiet", "--max-samples", "8",
                       "--dir-type", "states", "--out", str(tmp_path / "s.h5")], capsys)
    assert rc == 0 and err.count("\n") == 1 and "moves nothing more than --dir-type weights" in err
