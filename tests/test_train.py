"""Tests of training: it learns, it is reproducible, it writes snapshots and honest metrics."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_EPOCHS, TINY_MODEL, TINY_MODEL_KWARGS
from torch import nn

from landscape.data.sources import Dataset, load_dataset
from landscape.errors import LandscapeError
from landscape.io.checkpoint import build_model, load_checkpoint
from landscape.jobs.train import TrainConfig, lr_at, snapshot_dir, train
from landscape.models import create_model
from landscape.system.messages import LOGGER, to_console

MLP = TrainConfig(
    model="mlp", model_kwargs={"hidden": 32}, data="digits", epochs=3, device="cpu", quiet=True
)
RESNET = TrainConfig(
    model="resnet8", model_kwargs={"width": 4}, data="digits", epochs=2, device="cpu", quiet=True
)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def _loss_and_acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (%) of the whole split in one pass, in eval mode."""
    model.eval()
    with torch.no_grad():
        logits = model(x).double()
    return F.cross_entropy(logits, y).item(), 100.0 * (logits.argmax(1) == y).double().mean().item()


def _initial_model(config: TrainConfig, ds: Dataset) -> nn.Module:
    """The model `train` starts from: it seeds torch with `config.seed`, then builds the model."""
    torch.manual_seed(config.seed)
    kwargs = {"in_channels": ds.in_channels, "num_classes": ds.num_classes}
    return create_model(config.model, **kwargs, **config.model_kwargs)


def _assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ----------------------------------------------------------------------------- learning


def test_training_lowers_the_loss(tmp_path: Path, digits: Dataset) -> None:
    config = replace(MLP, out=str(tmp_path / "mlp.pt"))
    before_loss, before_acc = _loss_and_acc(_initial_model(config, digits), *digits.split("train"))
    train(config, dataset=digits)

    model = build_model(load_checkpoint(tmp_path / "mlp.pt"))
    after_loss, after_acc = _loss_and_acc(model, *digits.split("train"))
    assert before_loss == pytest.approx(2.30, abs=0.1)  # ~log(10): an untrained 10-way classifier
    assert after_loss < 0.75 * before_loss
    assert after_acc > before_acc + 30
    test_loss, test_acc = _loss_and_acc(model, *digits.split("test"))
    assert test_loss < 0.75 * before_loss and test_acc > 50  # it generalizes, too


def test_same_seed_gives_identical_weights_other_seed_differs(digits: Dataset) -> None:
    # resnet8 has BatchNorm and digits uses random-shift augmentation: both must be seeded
    first = train(RESNET, dataset=digits)
    second = train(RESNET, dataset=digits)
    _assert_same_state(first.state_dict, second.state_dict)
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert first.metrics[key] == second.metrics[key]

    other = train(replace(RESNET, seed=1), dataset=digits)
    assert any(
        not torch.equal(other.state_dict[k], first.state_dict[k])
        for k in first.state_dict
        if first.state_dict[k].is_floating_point()
    )


def test_on_epoch_sees_every_epoch(digits: Dataset) -> None:
    seen: list[tuple[int, dict[str, float]]] = []
    train(replace(MLP, epochs=2), dataset=digits, on_epoch=lambda e, m: seen.append((e, m)))
    assert [epoch for epoch, _ in seen] == [1, 2]
    assert all({"train_loss_running", "test_loss", "test_acc", "lr"} <= set(m) for _, m in seen)


def test_quiet_prints_nothing_and_loud_prints_each_epoch(
    digits: Dataset, capsys: pytest.CaptureFixture[str]
) -> None:
    with to_console():  # as under the `landscape` command
        train(replace(MLP, epochs=1), dataset=digits)
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err == ""

        train(replace(MLP, epochs=2, quiet=False), dataset=digits)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("epoch")]
    assert len(lines) == 2 and "1/2" in lines[0] and "2/2" in lines[1]


def test_the_library_alone_prints_nothing_and_logs_each_epoch(
    digits: Dataset, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Outside `to_console` the lines go to the `landscape` logger only: stdout stays clean."""
    with caplog.at_level("INFO", logger=LOGGER):
        train(replace(MLP, epochs=2, quiet=False), dataset=digits)
    assert capsys.readouterr().out == ""
    epochs = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.getMessage().startswith("epoch")]
    assert len(epochs) == 2 and "2/2" in epochs[1]


# ----------------------------------------------------------------------------- snapshots


def test_save_every_writes_a_trajectory(tmp_path: Path, digits: Dataset) -> None:
    out = tmp_path / "runs" / "r8.pt"
    config = replace(RESNET, epochs=3, save_every=2, out=str(out))
    final = train(config, dataset=digits)

    snaps = tmp_path / "runs" / "r8_trajectory"
    assert snapshot_dir(out) == snaps
    names = sorted(p.name for p in snaps.iterdir())
    assert names == ["epoch_0000.pt", "epoch_0002.pt", "epoch_0003.pt"]  # start, every 2, last
    for name in names:
        snap = load_checkpoint(snaps / name)
        assert snap.epoch == int(name[6:10])
        assert snap.model == "resnet8" and snap.data == digits.meta()
        build_model(snap)  # every snapshot is a complete checkpoint
    _assert_same_state(
        load_checkpoint(snaps / "epoch_0000.pt").state_dict,
        _initial_model(config, digits).state_dict(),
    )
    _assert_same_state(load_checkpoint(snaps / "epoch_0003.pt").state_dict, final.state_dict)
    _assert_same_state(load_checkpoint(out).state_dict, final.state_dict)
    assert load_checkpoint(snaps / "epoch_0002.pt").metrics["test_acc"] >= 0


def test_save_every_needs_out(digits: Dataset) -> None:
    with pytest.raises(LandscapeError, match="--out"):
        train(replace(MLP, save_every=1), dataset=digits)


# ----------------------------------------------------------------------------- schedule


@pytest.mark.parametrize(
    ("epoch", "factor"),
    [
        (0.0, 0.02),  # warm-up starts at 2% of the peak, not at zero
        (0.25, 0.25),
        (0.5, 0.5),
        (1.0, 1.0),
        (149.99, 1.0),
        (150.0, 0.1),  # 50% of 300 epochs
        (224.99, 0.1),
        (225.0, 0.01),  # 75%
        (274.99, 0.01),
        (275.0, 0.001),  # 91.7%
        (299.99, 0.001),
    ],
)
def test_lr_schedule(epoch: float, factor: float) -> None:
    config = TrainConfig(epochs=300, lr=0.2, warmup_epochs=1.0)
    assert lr_at(config, epoch) == pytest.approx(0.2 * factor)


def test_lr_schedule_scales_with_the_number_of_epochs() -> None:
    config = TrainConfig(epochs=12, lr=0.1, warmup_epochs=0)
    assert [lr_at(config, e) for e in (0, 5.9, 6, 8.9, 9, 10.9, 11)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001, 0.0001]
    )


def test_training_uses_the_schedule(digits: Dataset) -> None:
    lrs: list[float] = []
    config = replace(MLP, epochs=4, lr=0.05)
    train(config, dataset=digits, on_epoch=lambda e, m: lrs.append(m["lr"]))
    # the rate in force at the end of each epoch: x0.1 at epochs 2 (50%), 3 (75%), 3.67 (91.7%)
    assert lrs == pytest.approx([0.05, 0.05, 0.005, 0.00005])


# ----------------------------------------------------------------------------- the checkpoint


def test_checkpoint_records_data_and_honest_metrics(tiny_ckpt: Path) -> None:
    ckpt = load_checkpoint(tiny_ckpt)
    ds = load_dataset("digits", split_seed=0)
    assert ckpt.model == TINY_MODEL and ckpt.epoch == TINY_EPOCHS
    assert ckpt.model_kwargs == {"in_channels": 1, "num_classes": 10, **TINY_MODEL_KWARGS}
    assert ckpt.data == ds.meta()
    assert ckpt.data["normalization"] == {"mean": [0.3053], "std": [0.376], "scale": 16.0}
    assert {"train_loss", "train_acc", "test_loss", "test_acc"} <= set(ckpt.metrics)

    model = build_model(ckpt)
    for split in ("train", "test"):
        loss, acc = _loss_and_acc(model, *ds.split(split))
        assert ckpt.metrics[f"{split}_loss"] == pytest.approx(loss, rel=1e-5)
        assert ckpt.metrics[f"{split}_acc"] == pytest.approx(acc, abs=1e-9)


def test_training_on_synthetic_data_records_how_to_rebuild_it(tmp_path: Path) -> None:
    out = str(tmp_path / "s.pt")
    config = TrainConfig(model="mlp", data="synthetic", epochs=1, device="cpu", quiet=True, out=out)
    train(config)
    ckpt = load_checkpoint(tmp_path / "s.pt")
    assert ckpt.data["name"] == "synthetic"
    assert (ckpt.data["n_train"], ckpt.data["n_test"]) == (256, 128)
    assert ckpt.model_kwargs["in_channels"] == 3


@pytest.mark.parametrize(
    ("change", "option"),
    [
        ({"epochs": 0}, "--epochs"),
        ({"batch_size": 0}, "--batch-size"),
        ({"lr": -1.0}, "--lr"),
        ({"lr": 0.0}, "--lr"),
        ({"lr": float("nan")}, "--lr"),
        ({"lr": float("inf")}, "--lr"),
        ({"weight_decay": -1e-4}, "--wd"),
        ({"save_every": -1}, "--save-every"),
        ({"augment": "mixup"}, "--augment"),
        ({"optimizer": "rmsprop"}, "--optimizer"),
    ],
)
def test_bad_config_is_refused(change: dict[str, object], option: str) -> None:
    with pytest.raises(LandscapeError) as excinfo:
        TrainConfig(**change)  # type: ignore[arg-type]
    assert option in str(excinfo.value)


def test_adam_starts_where_sgd_starts_and_is_recorded(tmp_path: Path, digits: Dataset) -> None:
    """--optimizer adam: the same epoch-0 snapshot as SGD (same seed), other weights after, the
    optimizer in the training record; an SGD record has no optimizer key (older checkpoints match)."""
    sgd = train(replace(MLP, epochs=1, save_every=1, out=str(tmp_path / "sgd.pt")), digits)
    adam = train(replace(MLP, epochs=1, save_every=1, lr=1e-2, warmup_epochs=0.0, optimizer="adam", out=str(tmp_path / "adam.pt")), digits)
    start_sgd = load_checkpoint(snapshot_dir(tmp_path / "sgd.pt") / "epoch_0000.pt").state_dict
    start_adam = load_checkpoint(snapshot_dir(tmp_path / "adam.pt") / "epoch_0000.pt").state_dict
    _assert_same_state(start_sgd, start_adam)
    assert any(not torch.equal(sgd.state_dict[k], adam.state_dict[k]) for k in sgd.state_dict)
    assert load_checkpoint(tmp_path / "adam.pt").train["optimizer"] == "adam"
    assert "optimizer" not in load_checkpoint(tmp_path / "sgd.pt").train
    assert adam.metrics["train_loss"] < 2.0  # it learned (ln 10 = 2.30 at chance)
