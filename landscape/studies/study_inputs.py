"""What the demo's study starts from: its data set, the paper's nets on CIFAR, given checkpoints.

On CIFAR-10/100 (`landscape demo --data cifar10 --data-root DIR`) the study is the paper's:
ResNet-56 with and without skips and DenseNet-121, 51x51 on a GPU (on a CPU the demo first
says how long that will take, measured, and that `--max-samples` shortens it). `--max-samples N`
trains and evaluates on a seeded, class-stratified subset of at most N samples per split
(`Dataset.subset`), recorded in every checkpoint so the surfaces use the same samples. A
checkpoint given with `--ckpt NET=FILE` (the paper's `model_300.t7`, a bare state dict: NET names
its architecture, as `--model` does for `landscape surface`) is imported into the study's folder
as a landscape checkpoint that records the data set, and takes the place of training NET.

Example:
    >>> study_defaults("cifar10")
    (('resnet56', 'resnet56_noshort', 'densenet121'), 51)
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..data.dataset import Dataset
from ..data.sources import load_dataset
from ..errors import LandscapeError
from ..io.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

__all__ = [
    "CIFAR_NETS", "study_defaults", "study_dataset", "import_checkpoint", "foreign_given", "parse_given",
    "cpu_estimate",
]

CIFAR_NETS = ("resnet56", "resnet56_noshort", "densenet121")  # the paper's Figure 5 / 6 nets
CIFAR_RESOLUTION = 51  # the paper's grid


def study_defaults(data: str) -> tuple[tuple[str, ...], int] | tuple[None, None]:
    """The nets and resolution of the paper's study for `data` (on a CPU too, where the demo
    says first how long it takes), or (None, None): digits keep the demo's own defaults."""
    if data not in ("cifar10", "cifar100"):
        return None, None
    return CIFAR_NETS, CIFAR_RESOLUTION


def study_dataset(
    data: str, root: str | None, max_samples: int | None, seed: int, normalization: str | None = None
) -> Dataset:
    """The data set every net of the study is trained on (stratified subset with `max_samples`)."""
    return load_dataset(data, root=root, split_seed=seed, normalization=normalization, max_samples=max_samples)


def parse_given(items: tuple[str, ...] | list[str]) -> tuple[tuple[str, str], ...]:
    """`NET=FILE` pairs (`--ckpt resnet56=model_300.t7`), each file existing."""
    pairs = []
    for item in items:
        net, sep, path = str(item).partition("=")
        if not sep or not net or not path:
            raise LandscapeError(f"--ckpt {item!r}: use NET=FILE, e.g. --ckpt resnet56=model_300.t7")
        if not Path(path).is_file():
            raise LandscapeError(f"--ckpt {item!r}: {path} is not a file")
        pairs.append((net, path))
    return tuple(pairs)


def foreign_given(given: tuple[tuple[str, str], ...]) -> bool:
    """Whether any given checkpoint records no data set (the paper's code's files)."""
    return any(not load_checkpoint(path, model=net).data for net, path in given)


def import_checkpoint(source: str, net: str, ds: Dataset, out: Path) -> Path:
    """`source` (any layout `load_checkpoint` reads) as a landscape checkpoint of `net` at `out`
    that records `ds` (its normalization and subset), so surfaces and Hessians of the study
    evaluate it on the same samples. A file recording another data set is refused."""
    shape = {"in_channels": ds.in_channels, "num_classes": ds.num_classes}
    ckpt = load_checkpoint(source, model=net)
    ckpt.model_kwargs = {**shape, **ckpt.model_kwargs}
    recorded = ckpt.data.get("name")
    if recorded is not None and recorded != ds.name:
        raise LandscapeError(f"--ckpt {net}={source} was trained on {recorded}, not {ds.name}")
    from ..io.checkpoint import build_model

    build_model(ckpt)  # the weights fit `net` (one line naming the keys if not)
    imported = Checkpoint(
        model=net, state_dict=ckpt.state_dict, model_kwargs=ckpt.model_kwargs, data=ds.meta(),
        epoch=ckpt.epoch, metrics=dict(ckpt.metrics), train={"imported_from": str(source)},
    )
    return save_checkpoint(imported, out)


def cpu_estimate(nets: tuple[str, ...], ds: Dataset, resolution: int, epochs: int, device: str) -> str:
    """How long the study will take here, from a timed forward pass of each net (one line)."""
    from ..models import create_model

    x = ds.x_train[:8]
    forward = 0.0
    for net in nets:
        model = create_model(net, in_channels=ds.in_channels, num_classes=ds.num_classes).eval()
        with torch.no_grad():
            model(x)  # warm-up
            start = time.perf_counter()
            model(x)
        forward += (time.perf_counter() - start) / len(x)
    n_train = len(ds.y_train)
    n_eval = n_train + (len(ds.y_test) if ds.y_test is not None else 0)
    seconds = forward * (resolution**2 * n_eval + 3 * epochs * n_train)  # backward ~ 2 forwards
    return (
        f"on this {device} the study will take about {seconds / 3600:.3g} hours (a forward pass of "
        f"{', '.join(nets)} takes {forward * 1e3:.3g} ms per image in all; {n_train} train images, "
        f"{resolution}x{resolution} points, at most {epochs} epochs); --max-samples N trains and "
        "evaluates on a class-stratified subset, --resolution and --epochs shorten it too"
    )
