"""`landscape demo --data cifar10` on a tiny CIFAR-layout folder: the paper's study on CIFAR, a
stratified subset, and the paper's own checkpoint in place of training one net."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from landscape.data.dataset import stratified_indices
from landscape.data.sources import load_dataset, write_cifar_like
from landscape.io.checkpoint import load_checkpoint
from landscape.models import create_model
from landscape.studies.demo import DemoConfig, study_config
from landscape.studies.study_inputs import CIFAR_NETS

pytestmark = pytest.mark.slow


def test_cifar_defaults_are_the_papers_study(tmp_path: Path) -> None:
    cfg = study_config(DemoConfig(data="cifar10", data_root=str(tmp_path)))
    assert cfg.nets == CIFAR_NETS == ("resnet56", "resnet56_noshort", "densenet121")
    assert cfg.resolution == 51
    assert study_config(DemoConfig()).resolution == 27  # digits keep theirs


def test_quick_cifar_demo_with_the_papers_checkpoint(tmp_path: Path) -> None:
    """Two resnet8s on 30 of 60 CIFAR images (stratified): resnet8 from a paper-style file
    (legacy pickle, cuda:0, no counters, DataParallel), resnet8_noshort trained here. The
    imported net's centre is plain PyTorch's loss of the file's weights on the stratified subset
    normalized with the paper's constants; the trained one records the same subset."""
    from conftest import run_cli_in
    from test_foreign_checkpoints import _prefixed, old_torch_state, save_as

    write_cifar_like(tmp_path / "cifar", "cifar10", n_per_file=12)  # 60 train, 12 test
    torch.manual_seed(0)
    source = create_model("resnet8").eval()
    save_as({"acc": 90.0, "epoch": 300, "state_dict": _prefixed(old_torch_state(source), "module.")},
            tmp_path / "model_300.t7", legacy=True, location="cuda:0")
    code, out, err = run_cli_in(
        tmp_path, "demo", "--quick", "--study", "skips", "--data", "cifar10", "--data-root", "cifar",
        "--nets", "resnet8_noshort", "--ckpt", "resnet8=model_300.t7", "--max-samples", "30",
        "--hessian-samples", "16", timeout=900,
    )
    assert code == 0, err[-3000:]
    assert "the study will take about" in out and "--max-samples" in out  # the CPU estimate
    assert "using model_300.t7 for resnet8" in out

    full = load_dataset("cifar10", root=tmp_path / "cifar", normalization="paper")
    keep = stratified_indices(full.y_train, 30, seed=0)
    x, y = full.x_train[keep], full.y_train[keep]
    counts = np.bincount(y.numpy(), minlength=10)
    share = np.bincount(full.y_train.numpy(), minlength=10) * 30 / 60
    assert counts.sum() == 30 and np.all(np.abs(counts - share) < 1)  # each class's share
    with torch.no_grad():
        want = nn.functional.cross_entropy(source(x), y).item()
    with h5py.File(tmp_path / "surfaces/demo-quick/resnet8.h5", "r") as f:
        loss = f["train_loss"][()]
    assert loss.shape == (5, 5)
    assert abs(loss[2, 2] - want) <= 1e-5 * abs(want)

    trained = load_checkpoint(tmp_path / "ckpts/demo-quick/resnet8_noshort.pt")
    assert trained.data["max_samples"] == 30 and trained.data["n_train"] == 30
    assert trained.data["normalization"]["preset"] == "paper"  # one normalization for the study
    imported = load_checkpoint(tmp_path / "ckpts/demo-quick/resnet8.pt")
    assert imported.train["imported_from"] == "model_300.t7" and imported.epoch == 300
