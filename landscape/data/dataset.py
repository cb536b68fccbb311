"""The data set value: train and test splits as preloaded tensors, and how they were normalized.

`landscape.data.sources` loads the built-in sets and `landscape.data.userdata` a user's arrays and factories;
both return this type.

Example:
    >>> ds = Dataset("toy", torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), None, None, 10)
    >>> ds.splits, ds.meta()["n_train"]
    (('train',), 4)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ..errors import LandscapeError

__all__ = ["Dataset", "Normalization", "stratified_indices", "num_samples"]


@dataclass(frozen=True)
class Normalization:
    """Per-channel affine normalization: x <- (x / scale - mean) / std."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float = 1.0  # raw value that maps to 1.0 (16 for digits, 255 for CIFAR)
    name: str = "landscape"  # landscape (ours), paper (the paper's code's CIFAR-10), custom

    def apply(self, x: np.ndarray) -> torch.Tensor:
        """Normalize raw images [N, C, H, W] into a float32 tensor."""
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) / self.scale
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        return (t - mean) / std



@dataclass
class Dataset:
    """Train and test splits as preloaded tensors plus the metadata that defines them."""

    name: str
    x_train: torch.Tensor  # [N, C, H, W] float32, normalized (or any tensor for user data)
    y_train: torch.Tensor  # [N] int64 class labels (or regression targets)
    x_test: torch.Tensor | None
    y_test: torch.Tensor | None
    num_classes: int
    normalization: Normalization | None = None
    split_seed: int = 0
    root: str | None = None
    augment: str = "none"  # training-time augmentation that suits the data: none|shift|crop-flip
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1]) if self.x_train.dim() == 4 else 1

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[-1])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (x, y) of split `train` or `test`."""
        if name == "train":
            return self.x_train, self.y_train
        if name == "test" and self.x_test is not None and self.y_test is not None:
            return self.x_test, self.y_test
        raise LandscapeError(
            f"dataset '{self.name}' has no '{name}' split; available: {', '.join(self.splits)}"
        )

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", "test") if self.x_test is not None else ("train",)

    def meta(self) -> dict[str, Any]:
        """Plain metadata (no tensors) for checkpoints and surface files."""
        meta: dict[str, Any] = {
            "name": self.name,
            "split_seed": self.split_seed,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "n_train": int(self.x_train.shape[0]),
            "n_test": int(self.x_test.shape[0]) if self.x_test is not None else 0,
        }
        if self.normalization is not None:
            meta["normalization"] = {
                "mean": list(self.normalization.mean),
                "std": list(self.normalization.std),
                "scale": self.normalization.scale,
            }
            if self.normalization.name != "landscape":  # files of the default stay as they were
                meta["normalization"]["preset"] = self.normalization.name
        if self.root is not None:
            meta["root"] = self.root
        meta.update(self.extra)
        return meta

    def subset(self, max_samples: int, seed: int = 0) -> Dataset:
        """At most `max_samples` samples of each split, a seeded class-stratified choice
        (`stratified_indices`), in their original order; recorded in `meta()`."""
        x_test, y_test = self.x_test, self.y_test
        if x_test is not None and y_test is not None:
            keep = stratified_indices(y_test, max_samples, seed)
            x_test, y_test = x_test[keep], y_test[keep]
        keep = stratified_indices(self.y_train, max_samples, seed)
        extra = {**self.extra, "max_samples": int(max_samples), "subset_seed": int(seed)}
        return replace(self, x_train=self.x_train[keep], y_train=self.y_train[keep], x_test=x_test,
                       y_test=y_test, extra=extra)


def stratified_indices(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Indices of `n` samples (all, if there are fewer) keeping each class's share.

    Class c of count k_c gets floor(n k_c / N) samples, and the classes with the largest
    remainders one more each until there are n (ties: the lower class); within a class the
    samples are a seeded random choice. Sorted, so the subset keeps the file's order.

    Example:
        >>> stratified_indices(torch.tensor([0, 0, 0, 1, 1, 1]), 4).tolist()  # doctest: +SKIP
        [0, 2, 3, 5]
    """
    y = np.asarray(labels)
    if n >= len(y):
        return torch.arange(len(y))
    classes, counts = np.unique(y, return_counts=True)
    exact = n * counts / len(y)
    take = np.floor(exact).astype(np.int64)
    order = sorted(range(len(classes)), key=lambda i: (-(exact[i] - take[i]), i))
    for i in order[: n - int(take.sum())]:
        take[i] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take)]
    return torch.from_numpy(np.sort(np.concatenate(chosen)))


def num_samples(inputs: Any) -> int:
    """Samples in a split's inputs: a tensor, or a dict / tuple of tensors (their first entry)."""
    if isinstance(inputs, Mapping):
        return num_samples(next(iter(inputs.values())))
    if isinstance(inputs, (tuple, list)):
        return num_samples(inputs[0])
    return len(inputs)
