"""The command line with a user's metric (`--metric`), and a run that fails before its first
point: it leaves no empty surface file behind."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import landscape

HOOKS = """
    def hits(out, y):
        return (out.argmax(-1) == y).sum()"""


@pytest.fixture
def hooks(tmp_path: Path) -> Path:
    (tmp_path / "userhooks.py").write_text(textwrap.dedent(HOOKS))
    return tmp_path


@pytest.mark.parametrize("metric, arrays", [("none", {"train_loss"}), ("accuracy", {"train_loss", "train_acc"}),
                                            ("userhooks:hits", {"train_loss", "train_acc"})])
def test_metric_option(tiny_ckpt: Path, hooks: Path, run_cli: Any, metric: str, arrays: set) -> None:
    code, _, err = run_cli("surface", "--ckpt", tiny_ckpt, "--splits", "train", "--max-samples", "64",
                           "--x=-1:1:3", "--metric", metric, "--out", hooks / "m.h5", "--quiet")
    assert code == 0, err
    s = landscape.read_surface(hooks / "m.h5")
    assert set(s.surfaces()) == arrays
    if metric != "none":
        assert 0.0 <= float(np.nanmin(s.arrays["train_acc"])) <= 100.0


def test_bad_metric_is_one_line(tiny_ckpt: Path, run_cli: Any) -> None:
    code, _, err = run_cli("surface", "--ckpt", tiny_ckpt, "--x=-1:1:3", "--metric", "f1", "--out", "m.h5")
    assert code != 0 and "metric 'f1'" in err and "Traceback" not in err


def test_a_run_failing_before_its_first_point_leaves_no_file(tmp_path: Path) -> None:
    """(The CLI turns the error into one line: landscape.cli; here the file is the point.)"""
    import torch

    calls = {"n": 0}

    def fails_later(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] > 2:  # the checks before the file pass, the run fails
            raise RuntimeError("boom at point one")
        return torch.nn.functional.cross_entropy(out, y, reduction="none")

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3))
    X, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    with pytest.raises(RuntimeError, match="boom at point one"):
        landscape.surface(net, (X, y), x="-1:1:3", loss=fails_later, out=tmp_path / "f.h5", trial="off")
    assert calls["n"] > 2  # it failed inside the run, after the file was made
    assert not list(tmp_path.iterdir())  # no surface, lock or temporary file left
