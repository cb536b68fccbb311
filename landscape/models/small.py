"""Tiny real models for fast tests and for measuring the per-point overhead of an evaluation.

Example:
    >>> import torch
    >>> net = mlp(in_channels=1, image_size=8, hidden=32)
    >>> net(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from landscape.models._registry import register_model

__all__ = ["MLP", "SmallCNN"]


class MLP(nn.Module):
    """Flatten, then Linear-ReLU-Linear-ReLU-Linear.

    Images of another size than ``image_size`` are first average-pooled to
    ``image_size`` x ``image_size`` so the first layer always sees
    ``in_channels * image_size**2`` features; at ``image_size`` the pool is the identity.
    """

    def __init__(
        self, in_channels: int = 3, num_classes: int = 10, image_size: int = 8, hidden: int = 64
    ) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(image_size)
        self.fc1 = nn.Linear(in_channels * image_size * image_size, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.pool(x).flatten(1)  # [B, C * image_size**2]
        out = F.relu(self.fc2(F.relu(self.fc1(out))))
        return self.fc3(out)


class SmallCNN(nn.Module):
    """conv3x3-BN-ReLU, stride-2 conv3x3-BN-ReLU, global average pool, Linear."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(2 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.linear(self.pool(out).flatten(1))


@register_model
def mlp(in_channels: int = 3, num_classes: int = 10, image_size: int = 8, hidden: int = 64) -> MLP:
    """Three-layer perceptron on ``image_size`` x ``image_size`` images."""
    return MLP(in_channels, num_classes, image_size, hidden)


@register_model
def cnn_small(in_channels: int = 3, num_classes: int = 10, width: int = 16) -> SmallCNN:
    """Two conv layers (``width`` then ``2 * width`` channels) and a linear head."""
    return SmallCNN(in_channels, num_classes, width)
