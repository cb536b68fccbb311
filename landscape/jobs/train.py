"""Training that writes real checkpoints (and, optionally, a trajectory of snapshots for PCA).

The recipe is the paper's (SGD with Nesterov momentum, weight decay 5e-4, learning rate x0.1
at 50%, 75% and 92% of training, as 150/225/275 of 300 epochs) plus a short linear warm-up,
which deep nets need to start training at lr 0.1 (He et al. warmed ResNet-110 up the same way).

A convergence criterion (`target_loss`) stops training once the train loss, measured on the
whole train split in eval mode after each epoch, is at or below it; `epochs` is then the cap and
the learning-rate schedule still spans the cap. The checkpoint's training record says which
criterion was asked for, how many epochs were used and whether it was met.

Example:
    >>> ckpt = train(TrainConfig(model="resnet20", data="digits", epochs=20, out="ckpts/r20.pt"))
    >>> ckpt = train(TrainConfig(model="resnet56", epochs=40, target_loss=0.01))  # at most 40
    >>> ckpt.train["epochs_used"] <= 40 and isinstance(ckpt.train["criterion_met"], bool)
    True
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.sources import Dataset, load_dataset
from ..errors import LandscapeError
from ..io.checkpoint import Checkpoint, save_checkpoint
from ..io.outputs import check_output
from ..system.cpu import guard_onednn, standard_layout
from ..system.device import resolve_device
from ..system.messages import say
from ..system.progress import Progress
from ..system.seeds import check_seed

__all__ = [
    "TrainConfig", "train", "evaluate_model", "lr_at", "snapshot_dir", "training_record", "same_recipe",
    "OUTCOME_KEYS",
]

MILESTONES = (0.5, 0.75, 275 / 300)
OPTIMIZERS = ("sgd", "adam")
OUTCOME_KEYS = ("epochs_used", "criterion_met")  # what a run did, beside the recipe it was given


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run."""

    model: str = "resnet20"
    data: str = "digits"
    out: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    data_root: str | None = None
    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9  # SGD's Nesterov momentum (Adam keeps its default betas)
    optimizer: str = "sgd"  # sgd (the paper's) or adam
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    augment: str = "auto"  # auto (the dataset's own), none, shift, crop-flip
    seed: int = 0
    split_seed: int = 0
    save_every: int = 0  # keep a snapshot every K epochs (and at epoch 0) for PCA directions
    target_loss: float | None = None  # stop once the eval-mode train loss is <= this (epochs: the cap)
    device: str = "auto"
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise LandscapeError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise LandscapeError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise LandscapeError(f"--lr must be a positive number, got {self.lr}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise LandscapeError(f"--wd must be a finite number >= 0, got {self.weight_decay}")
        if not 0 <= self.momentum < 1:  # torch's SGD refuses a negative one with a traceback
            raise LandscapeError(f"--momentum must be from 0 to below 1, got {self.momentum}")
        if not (self.warmup_epochs >= 0 and math.isfinite(self.warmup_epochs)):
            raise LandscapeError(f"--warmup must be a finite number of epochs >= 0, got {self.warmup_epochs}")
        check_seed("--seed", self.seed)  # the split seed's range is landscape.data.sources's (2**32)
        if self.target_loss is not None and not (self.target_loss > 0 and math.isfinite(self.target_loss)):
            raise LandscapeError(f"--target-loss must be a positive number, got {self.target_loss}")
        if self.save_every < 0:
            raise LandscapeError(f"--save-every must be >= 0, got {self.save_every}")
        if self.optimizer not in OPTIMIZERS:
            raise LandscapeError(f"--optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.augment not in ("auto", "none", "shift", "crop-flip"):
            raise LandscapeError(
                f"--augment {self.augment!r} is not one of auto, none, shift, crop-flip"
            )


def lr_at(config: TrainConfig, epoch_float: float) -> float:
    """Learning rate at a (fractional) epoch: linear warm-up, then steps of x0.1."""
    if config.warmup_epochs > 0 and epoch_float < config.warmup_epochs:
        return config.lr * max(epoch_float / config.warmup_epochs, 0.02)
    drops = sum(epoch_float >= m * config.epochs for m in MILESTONES)
    return config.lr * (0.1**drops)


def snapshot_dir(out: str | Path) -> Path:
    """Where `--save-every` snapshots of the checkpoint `out` go: `<out stem>_trajectory/`."""
    out = Path(out)
    return out.with_name(out.stem + "_trajectory")


def _augment(x: torch.Tensor, kind: str, g: torch.Generator) -> torch.Tensor:
    """Random shifts (digits) or pad-4 crop + horizontal flip (CIFAR), on a whole batch."""
    if kind == "none":
        return x
    pad = 1 if kind == "shift" else 4
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h)).to(x.device)  # [n, h]
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w)).to(x.device)  # [n, w]
    idx_n = torch.arange(n, device=x.device).view(n, 1, 1)
    out = padded.permute(0, 2, 3, 1)[idx_n, rows.view(n, h, 1), cols.view(n, 1, w)]
    # plain NCHW strides: with one channel `.contiguous()` would keep channels-last strides, and
    # the convolutions would pick oneDNN's channels-last kernels (see landscape/system/cpu.py)
    out = standard_layout(out.permute(0, 3, 1, 2))
    if kind == "crop-flip":
        flip = (torch.rand(n, generator=g) < 0.5).to(x.device)
        out[flip] = out[flip].flip(-1)
    return out


@torch.no_grad()
def evaluate_model(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512
) -> tuple[float, float]:
    """Mean cross-entropy (over samples) and accuracy in percent, in eval mode."""
    model.eval()
    total_loss, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        out = model(x[i : i + batch_size])
        yb = y[i : i + batch_size]
        total_loss += F.cross_entropy(out, yb, reduction="sum").item()
        correct += (out.argmax(1) == yb).sum().item()
    return total_loss / len(x), 100.0 * correct / len(x)


def _checkpoint(
    config: TrainConfig, model: nn.Module, ds: Dataset, epoch: int, metrics: dict[str, float],
    outcome: dict[str, Any] | None = None,
) -> Checkpoint:
    kwargs = {"in_channels": ds.in_channels, "num_classes": ds.num_classes, **config.model_kwargs}
    return Checkpoint(
        model=config.model,
        state_dict={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        model_kwargs=kwargs,
        data=ds.meta(),
        epoch=epoch,
        metrics=metrics,
        train={**training_record(config), **(outcome or {})},
    )


def training_record(config: TrainConfig) -> dict[str, Any]:
    """The hyper-parameters that define a run (what a cached checkpoint must match).

    With a convergence criterion, `target_loss` is part of the recipe (`epochs` is then its cap).
    """
    keep = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "warmup_epochs", "augment", "seed")
    record = {k: getattr(config, k) for k in keep}
    if config.target_loss is not None:
        record["target_loss"] = config.target_loss
    if config.optimizer != "sgd":  # recorded when not the default, so older SGD records still match
        record["optimizer"] = config.optimizer
    return record


def same_recipe(stored: dict[str, Any], config: TrainConfig) -> bool:
    """Whether a checkpoint's training record was made by `config`'s recipe (and criterion).

    >>> cfg = TrainConfig(epochs=40, target_loss=0.01)
    >>> same_recipe({**training_record(cfg), "epochs_used": 23, "criterion_met": True}, cfg)
    True
    >>> same_recipe(training_record(cfg), TrainConfig(epochs=40, target_loss=0.02))
    False
    """
    return {k: v for k, v in stored.items() if k not in OUTCOME_KEYS} == training_record(config)


def _optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum (the paper's), or Adam (weight decay added to the gradient)."""
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
        momentum=config.momentum, nesterov=config.momentum > 0,
    )


def train(
    config: TrainConfig,
    dataset: Dataset | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> Checkpoint:
    """Train `config.model` on `config.data`; write the checkpoint to `config.out` if given."""
    from ..models import create_model

    if config.out:  # refuse a bad output before training, not after
        check_output(Path(config.out), "checkpoint")
    device = resolve_device(config.device)
    ds = dataset or load_dataset(config.data, root=config.data_root, split_seed=config.split_seed)
    torch.manual_seed(config.seed)
    kwargs = {"in_channels": ds.in_channels, "num_classes": ds.num_classes, **config.model_kwargs}
    model = create_model(config.model, **kwargs).to(device)
    guard_onednn(model)  # a oneDNN fault on AVX2 CPUs: see landscape/system/cpu.py
    x_train, y_train = ds.x_train.to(device), ds.y_train.to(device)
    x_test = ds.x_test.to(device) if ds.x_test is not None else None
    y_test = ds.y_test.to(device) if ds.y_test is not None else None
    augment = ds.augment if config.augment == "auto" else config.augment
    opt = _optimizer(config, model)
    g = torch.Generator().manual_seed(config.seed)
    n = len(x_train)
    steps = math.ceil(n / config.batch_size)
    snaps = snapshot_dir(config.out) if (config.save_every and config.out) else None
    if config.save_every and not config.out:
        raise LandscapeError("--save-every needs --out (snapshots go next to the checkpoint)")
    if snaps is not None:
        save_checkpoint(_checkpoint(config, model, ds, 0, {}), snaps / "epoch_0000.pt")
    metrics: dict[str, float] = {}
    met = False
    epoch = 0
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=g).to(device)
        run_loss, run_correct = 0.0, 0
        # a bar per epoch on a terminal; in a log the per-epoch line below says it all
        bar = Progress(
            steps, desc=f"epoch {epoch}/{config.epochs}", unit="batch",
            enabled=not config.quiet and sys.stderr.isatty(),
        )
        for step in range(steps):
            for group in opt.param_groups:
                group["lr"] = lr_at(config, epoch - 1 + step / steps)
            idx = perm[step * config.batch_size : (step + 1) * config.batch_size]
            xb = _augment(x_train[idx], augment, g)
            out = model(xb)
            loss = F.cross_entropy(out, y_train[idx])
            if not torch.isfinite(loss):
                raise LandscapeError(
                    f"training diverged at epoch {epoch} (loss {loss.item()}); lower --lr "
                    f"(now {config.lr}) or raise --warmup"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            run_loss += loss.item() * len(idx)
            run_correct += (out.argmax(1) == y_train[idx]).sum().item()
            bar.update(1, postfix=f"loss {run_loss / min(n, (step + 1) * config.batch_size):.4f}")
        bar.enabled = False
        metrics = {"train_loss_running": run_loss / n, "train_acc_running": 100.0 * run_correct / n}
        if x_test is not None and y_test is not None:
            metrics["test_loss"], metrics["test_acc"] = evaluate_model(model, x_test, y_test)
        metrics["lr"] = lr_at(config, epoch - 1e-9)
        if config.target_loss is not None:  # the criterion: whole train split, eval mode
            metrics["train_loss"], metrics["train_acc"] = evaluate_model(model, x_train, y_train)
            met = metrics["train_loss"] <= config.target_loss
        if not config.quiet:
            test = (
                f"  test loss {metrics['test_loss']:.4f} acc {metrics['test_acc']:.2f}%"
                if "test_loss" in metrics
                else ""
            )
            full = f"  (eval {metrics['train_loss']:.4f})" if "train_loss" in metrics else ""
            say(
                f"epoch {epoch:3d}/{config.epochs}  train loss {metrics['train_loss_running']:.4f}{full} "
                f"acc {metrics['train_acc_running']:.2f}%{test}  lr {metrics['lr']:.4g}  "
                f"{time.perf_counter() - start:.1f}s"
            )
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        if snaps is not None and (epoch % config.save_every == 0 or epoch == config.epochs):
            save_checkpoint(_checkpoint(config, model, ds, epoch, metrics), snaps / f"epoch_{epoch:04d}.pt")
        if met:
            if not config.quiet:
                say(f"criterion met: train loss {metrics['train_loss']:.4g} <= {config.target_loss:g} "
                      f"after {epoch} of at most {config.epochs} epochs")
            break
    if config.target_loss is not None and not met and not config.quiet:
        say(f"criterion not met: train loss {metrics['train_loss']:.4g} > {config.target_loss:g} "
              f"after the cap of {config.epochs} epochs")
    final: dict[str, float] = {}
    if "train_loss" in metrics:  # measured after the last epoch, on the same weights
        final["train_loss"], final["train_acc"] = metrics["train_loss"], metrics["train_acc"]
    else:
        final["train_loss"], final["train_acc"] = evaluate_model(model, x_train, y_train)
    if x_test is not None and y_test is not None:
        final["test_loss"], final["test_acc"] = evaluate_model(model, x_test, y_test)
    final["train_seconds"] = time.perf_counter() - start
    final["peak_lr"] = config.lr  # the recipe, beside what it reached (surface files keep these metrics)
    outcome: dict[str, Any] = {"epochs_used": epoch}
    if config.target_loss is not None:
        outcome["criterion_met"] = bool(met)
        final["epochs_used"], final["criterion_met"] = float(epoch), float(met)
        final["target_loss"] = config.target_loss
        final["epoch_cap"] = float(config.epochs)
    ckpt = _checkpoint(config, model, ds, epoch, final, outcome)
    if config.out:
        save_checkpoint(ckpt, config.out)
        ckpt.path = str(config.out)
    return ckpt

