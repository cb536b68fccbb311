"""The data set value: train and test splits as preloaded tensors, and how they were normalized.

`landscape.data` loads the built-in sets and `landscape.userdata` a user's arrays and factories;
both return this type.

Example:
    >>> ds = Dataset("toy", torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), None, None, 10)
    >>> ds.splits, ds.meta()["n_train"]
    (('train',), 4)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .errors import LandscapeError

__all__ = ["Dataset", "Normalization"]


@dataclass(frozen=True)
class Normalization:
    """Per-channel affine normalization: x <- (x / scale - mean) / std."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float = 1.0  # raw value that maps to 1.0 (16 for digits, 255 for CIFAR)

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
        if self.root is not None:
            meta["root"] = self.root
        meta.update(self.extra)
        return meta
