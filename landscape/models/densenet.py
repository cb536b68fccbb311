"""DenseNet-BC for CIFAR (Huang et al. 2017): bottleneck dense layers and compressing transitions.

The stem is a single stride-1 3x3 conv with ``2 * growth`` channels (no max-pool), as for
32x32 images. Module names (``conv1``, ``dense1``, ``trans1``, ``bn``, ``linear``) and the
order of concatenation (new features first) follow the code of Li et al. (2018), so its
DenseNet-121 checkpoints load with ``load_state_dict``.

Example:
    >>> import torch
    >>> net = densenet_bc40()
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from landscape.errors import LandscapeError
from landscape.models._initialization import init_conv_bn
from landscape.models._registry import register_model

__all__ = ["DenseLayer", "DenseNet", "Transition"]


class DenseLayer(nn.Module):
    """BN-ReLU-conv1x1(``bottleneck * growth``)-BN-ReLU-conv3x3(``growth``), then concatenate.

    Maps ``[B, C, H, W]`` to ``[B, growth + C, H, W]``.
    """

    def __init__(self, in_channels: int, growth: int, bottleneck: int = 4) -> None:
        super().__init__()
        inner = bottleneck * growth
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, inner, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, growth, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([out, x], dim=1)


class Transition(nn.Module):
    """BN-ReLU-conv1x1 to ``out_channels``, then 2x2 average pooling.

    ``ceil_mode`` keeps odd and 1x1 feature maps alive (1x1 stays 1x1) for small inputs.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.pool = nn.AvgPool2d(2, ceil_mode=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.conv(F.relu(self.bn(x))))


class DenseNet(nn.Module):
    """DenseNet-BC: stem, dense blocks of ``blocks[i]`` layers separated by transitions, head.

    Each transition keeps ``floor(compression * channels)`` channels.
    """

    def __init__(
        self,
        blocks: Sequence[int],
        growth: int,
        compression: float = 0.5,
        in_channels: int = 3,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        if not blocks or min(blocks) < 1:
            raise LandscapeError(f"DenseNet needs one or more blocks of >= 1 layer, got {blocks}")
        if not 0.0 < compression <= 1.0:
            raise LandscapeError(f"DenseNet compression must be in (0, 1], got {compression}")
        channels = 2 * growth
        self.conv1 = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        self._stages: list[str] = []
        for index, layers in enumerate(blocks, start=1):
            dense = [DenseLayer(channels + i * growth, growth) for i in range(layers)]
            self._add_stage(f"dense{index}", nn.Sequential(*dense))
            channels += layers * growth
            if index < len(blocks):
                reduced = int(channels * compression)
                self._add_stage(f"trans{index}", Transition(channels, reduced))
                channels = reduced
        self.bn = nn.BatchNorm2d(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(channels, num_classes)
        init_conv_bn(self)

    def _add_stage(self, name: str, module: nn.Module) -> None:
        self.add_module(name, module)
        self._stages.append(name)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(x)
        for name in self._stages:
            out = self.get_submodule(name)(out)
        out = self.pool(F.relu(self.bn(out)))
        return self.linear(out.flatten(1))


@register_model
def densenet121(in_channels: int = 3, num_classes: int = 10) -> DenseNet:
    """DenseNet-121 for CIFAR: blocks (6, 12, 24, 16), growth 32 (7.0M parameters)."""
    return DenseNet((6, 12, 24, 16), growth=32, in_channels=in_channels, num_classes=num_classes)


@register_model
def densenet_bc40(in_channels: int = 3, num_classes: int = 10) -> DenseNet:
    """DenseNet-BC with depth 40, growth 12: three blocks of (40 - 4) // 6 = 6 layers."""
    return DenseNet((6, 6, 6), growth=12, in_channels=in_channels, num_classes=num_classes)
