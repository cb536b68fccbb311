"""The paper's other files beside ours: its direction file in `info`, its surface in `compare`,
and the first time estimate of a run."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import landscape
from landscape.errors import LandscapeError
from landscape.io.storage import read_surface
from landscape.jobs.info import describe
from landscape.system.messages import to_console


def _paper_direction_file(path: Path, model: nn.Module, two_d: bool = True) -> Path:
    """xdirection/0..N-1 (and ydirection), one dataset per state tensor, as the paper's code writes."""
    with h5py.File(path, "w") as f:
        for g in ("xdirection", "ydirection") if two_d else ("xdirection",):
            group = f.create_group(g)
            for i, t in enumerate(model.parameters()):
                group.create_dataset(str(i), data=torch.randn_like(t).numpy())
    return path


def test_info_describes_the_papers_direction_file(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    text = describe(_paper_direction_file(tmp_path / "model_300.t7_weights.h5", net))
    assert "kind: direction file (the paper's layout" in text
    assert "directions: x and y (2D)" in text
    assert "tensors per direction: 4" in text and "floats per direction: 23" in text


def test_info_still_refuses_an_hdf5_file_that_is_neither(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("weights", data=np.zeros(3))
    with pytest.raises(LandscapeError, match="is not a surface file"):
        describe(tmp_path / "other.h5")


def _paper_surface(path: Path, values: np.ndarray, x: np.ndarray, y: np.ndarray) -> Path:
    with h5py.File(path, "w") as f:
        f["dir_file"] = "model_300.t7_weights.h5"
        f["xcoordinates"], f["ycoordinates"] = x, y
        f["train_loss"] = values.T.ravel().reshape(len(x), len(y))  # y-major, as the paper stores
        f["train_acc"] = np.full((len(x), len(y)), 50.0)
    return path


def test_compare_takes_a_paper_surface_beside_ours_without_allow_mismatch(tmp_path: Path) -> None:
    from landscape.render.comparison import plot_comparison

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    ours = landscape.surface(net, (x, y), x="-1:1:3", y="-1:1:3", out=tmp_path / "ours.h5")
    paper = read_surface(_paper_surface(tmp_path / "paper.h5", ours.arrays["train_loss"], ours.x, ours.y))
    assert paper.source == "paper"
    comp = plot_comparison([read_surface(tmp_path / "ours.h5"), paper], "train_loss")
    assert comp.mismatch is None and len(comp.contours) == 2
    # a different grid is still a real mismatch
    other = read_surface(_paper_surface(tmp_path / "p5.h5", np.ones((5, 5)), np.linspace(-1, 1, 5), np.linspace(-1, 1, 5)))
    with pytest.raises(LandscapeError, match="grids differ"):
        plot_comparison([read_surface(tmp_path / "ours.h5"), other], "train_loss")


def test_the_time_estimate_uses_a_chunk_past_the_warm_up(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The first chunk pays the warm-up: 100 s/point there, 1 s/point after. The estimate comes
    after the second chunk, at its speed: 996 points left at 1 s each is about 17 min."""
    from landscape.jobs.runner import FileSink

    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    landscape.surface(net, (torch.randn(8, 4), torch.randint(0, 3, (8,))), x="-1:1:5", out=tmp_path / "s.h5")
    sink = FileSink(tmp_path / "s.h5", pending=1000, quiet=False)
    values = {"train_loss": np.ones(2), "train_acc": np.ones(2)}
    with to_console():
        sink.write(np.array([0, 1]), values, seconds=200.0, rank=0)
        assert capsys.readouterr().out == ""
        sink.write(np.array([2, 3]), values, seconds=2.0, rank=0)
    line = capsys.readouterr().out
    assert line.startswith("estimate: about 16.6 minutes for 996 points at 1 points/s"), line
