"""A TorchScript file is a model with its own code: it runs only when the user says to trust it.

The archive here writes a marker file from its scripted `forward()` (`torch.save` is callable
from TorchScript), the way a planted file could do anything.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import landscape
from landscape.errors import LandscapeError
from landscape.io.checkpoint import load_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


class _Planted(nn.Module):
    """A digits classifier whose forward writes `marker` (a side effect any code could have)."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.save(torch.zeros(1), self.marker)
        return self.fc(x.flatten(1))


def _planted(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "marker"
    torch.jit.script(_Planted(str(marker))).save(str(tmp_path / "planted.pt"))
    return tmp_path / "planted.pt", marker


def test_the_planted_forward_really_writes_its_marker(tmp_path: Path) -> None:
    path, marker = _planted(tmp_path)
    torch.jit.load(str(path))(torch.zeros(1, 1, 8, 8))
    assert marker.exists()


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-m", "landscape", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("command", [
    ("surface", "--x=-1:1:3", "--out", "s.h5"),
    ("hessian", "--top-k", "1"),
])
def test_torchscript_ckpt_is_refused_without_the_flag_and_runs_with_it(tmp_path: Path, command: tuple) -> None:
    path, marker = _planted(tmp_path)
    common = ("--ckpt", path.name, "--data", "digits", "--max-samples", "16")
    run = _cli(*command[:1], *common, *command[1:], cwd=tmp_path)
    assert run.returncode != 0 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "--trust-torchscript" in run.stderr
    assert not marker.exists() and not (tmp_path / "s.h5").exists()
    run = _cli(*command[:1], *common, *command[1:], "--trust-torchscript", cwd=tmp_path)
    assert "--trust-torchscript" not in run.stderr
    if command[0] == "surface":  # (hessian's autograd does not run on a TorchScript module yet)
        assert run.returncode == 0, run.stderr
        assert marker.exists()


def test_the_api_needs_trust_torchscript(tmp_path: Path) -> None:
    path, marker = _planted(tmp_path)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    with pytest.raises(LandscapeError, match="trust_torchscript=True"):
        landscape.surface(str(path), (x, y), x="-1:1:3")
    with pytest.raises(LandscapeError, match="trust_torchscript=True"):
        load_checkpoint(path)
    assert not marker.exists()
    s = landscape.surface(str(path), (x, y), x="-1:1:3", trust_torchscript=True)
    assert s.attrs["model_source"] == "torchscript" and marker.exists()
