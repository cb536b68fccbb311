"""CIFAR ResNets and wide ResNets (He et al. 2016), with and without skip connections.

Li et al. (2018) compare the loss surfaces of ResNet-20/56/110 and WRN-56-k with their
``_noshort`` twins. A twin has exactly the same modules and parameter names minus every
``shortcut`` branch, so a checkpoint's keys differ only by the ``.shortcut.`` entries.
Module names (``conv1``, ``bn1``, ``layer1..3``, ``shortcut``, ``linear``) follow the paper's
code, so its checkpoints load with ``load_state_dict``.

Example:
    >>> import torch
    >>> net = resnet56()
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from landscape.errors import LandscapeError
from landscape.models._initialization import init_conv_bn
from landscape.models._registry import register_model

__all__ = ["BasicBlock", "ResNet"]


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut when ``shortcut`` is true, then ReLU.

    The shortcut is the identity when the shape is unchanged and a strided 1x1 conv + BN
    projection otherwise (option B). Without a shortcut the block has no ``shortcut``
    submodule at all.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, shortcut: bool = True
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module | None = None
        if shortcut and (stride != 1 or in_channels != out_channels):
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        elif shortcut:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.relu(out)


class ResNet(nn.Module):
    """CIFAR ResNet of ``depth = 6n + 2`` layers: a 3x3 stem, three stages of n blocks, a head.

    Stage widths are ``width * widen * (1, 2, 4)`` with stride 2 at the start of stages 2
    and 3. The stem has ``width * widen`` channels, as in the paper's wide-ResNet code.
    Global average pooling lets any input of at least 8x8 pixels through.
    """

    def __init__(
        self,
        depth: int,
        in_channels: int = 3,
        num_classes: int = 10,
        width: int = 16,
        widen: int = 1,
        shortcut: bool = True,
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise LandscapeError(
                f"ResNet depth must be 6n+2 with n >= 1 (8, 20, 56, 110, ...), got {depth}"
            )
        blocks_per_stage = (depth - 2) // 6
        channels = width * widen
        self.conv1 = _conv3x3(in_channels, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        stages = []
        for index, stage_width in enumerate((channels, 2 * channels, 4 * channels)):
            blocks = []
            for block in range(blocks_per_stage):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(BasicBlock(channels, stage_width, stride, shortcut))
                channels = stage_width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(channels, num_classes)
        init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(self.pool(out).flatten(1))


@register_model
def resnet8(in_channels: int = 3, num_classes: int = 10, width: int = 16) -> ResNet:
    """ResNet-8 (one block per stage): the real architecture at toy size, for tests."""
    return ResNet(8, in_channels, num_classes, width)


@register_model
def resnet8_noshort(in_channels: int = 3, num_classes: int = 10, width: int = 16) -> ResNet:
    """ResNet-8 without skip connections."""
    return ResNet(8, in_channels, num_classes, width, shortcut=False)


@register_model
def resnet20(in_channels: int = 3, num_classes: int = 10, width: int = 16) -> ResNet:
    """ResNet-20 (0.27M parameters)."""
    return ResNet(20, in_channels, num_classes, width)


@register_model
def resnet20_noshort(in_channels: int = 3, num_classes: int = 10, width: int = 16) -> ResNet:
    """ResNet-20 without skip connections."""
    return ResNet(20, in_channels, num_classes, width, shortcut=False)


@register_model
def resnet56(in_channels: int = 3, num_classes: int = 10, width: int = 16) -> ResNet:
    """ResNet-56 (0.86M parameters)."""
    return ResNet(56, in_channels, num_classes, width)


@register_model
def resnet56_noshort(in_channels: int = 3, num_classes: int = 10, width: int = 16) -> ResNet:
    """ResNet-56 without skip connections."""
    return ResNet(56, in_channels, num_classes, width, shortcut=False)


@register_model
def resnet110(in_channels: int = 3, num_classes: int = 10, width: int = 16) -> ResNet:
    """ResNet-110 (1.7M parameters)."""
    return ResNet(110, in_channels, num_classes, width)


@register_model
def resnet110_noshort(in_channels: int = 3, num_classes: int = 10, width: int = 16) -> ResNet:
    """ResNet-110 without skip connections."""
    return ResNet(110, in_channels, num_classes, width, shortcut=False)


@register_model
def wrn56_2(in_channels: int = 3, num_classes: int = 10, width: int = 16) -> ResNet:
    """Wide ResNet-56, widen factor 2."""
    return ResNet(56, in_channels, num_classes, width, widen=2)


@register_model
def wrn56_2_noshort(in_channels: int = 3, num_classes: int = 10, width: int = 16) -> ResNet:
    """Wide ResNet-56, widen factor 2, without skip connections."""
    return ResNet(56, in_channels, num_classes, width, widen=2, shortcut=False)


@register_model
def wrn56_4(in_channels: int = 3, num_classes: int = 10, width: int = 16) -> ResNet:
    """Wide ResNet-56, widen factor 4."""
    return ResNet(56, in_channels, num_classes, width, widen=4)


@register_model
def wrn56_4_noshort(in_channels: int = 3, num_classes: int = 10, width: int = 16) -> ResNet:
    """Wide ResNet-56, widen factor 4, without skip connections."""
    return ResNet(56, in_channels, num_classes, width, widen=4, shortcut=False)


@register_model
def wrn56_8(in_channels: int = 3, num_classes: int = 10, width: int = 16) -> ResNet:
    """Wide ResNet-56, widen factor 8."""
    return ResNet(56, in_channels, num_classes, width, widen=8)


@register_model
def wrn56_8_noshort(in_channels: int = 3, num_classes: int = 10, width: int = 16) -> ResNet:
    """Wide ResNet-56, widen factor 8, without skip connections."""
    return ResNet(56, in_channels, num_classes, width, widen=8, shortcut=False)
