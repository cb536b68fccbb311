"""VGG-9 as used by Li et al. (2018): 7 conv3x3-BN-ReLU layers, then two fully connected layers.

The layout and module names (``features``, ``fc``, ``classifier``, biased convolutions) follow
the paper's code, so its VGG-9 checkpoints load with ``load_state_dict``. An adaptive average
pool before the fully connected part fixes the flattened size (``256 * 4 * 4 = 4096``) for
any input of at least 8x8 pixels; at 32x32 it is the identity.

Example:
    >>> import torch
    >>> net = vgg9()
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from landscape.errors import LandscapeError
from landscape.models._initialization import init_conv_bn
from landscape.models._registry import register_model

__all__ = ["VGG"]

# Channel plan: an int is a conv3x3-BN-ReLU with that many channels, "M" a 2x2 max-pool.
_VGG9_PLAN: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M")


def _make_features(plan: Sequence[int | str], in_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = in_channels
    for item in plan:
        if item == "M":
            # ceil_mode keeps odd and 1x1 maps alive, so 8x8 inputs pass three pools (8->4->2->1).
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        elif isinstance(item, int) and item > 0:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.BatchNorm2d(item), nn.ReLU()]
            channels = item
        else:
            raise LandscapeError(f"VGG plan entries must be channel counts or 'M', got {item!r}")
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """Convolutional ``features`` from a channel plan, then Linear-BN-ReLU and a classifier.

    The feature map is average-pooled to ``pooled_size`` x ``pooled_size`` before flattening.
    """

    def __init__(
        self,
        plan: Sequence[int | str],
        in_channels: int = 3,
        num_classes: int = 10,
        hidden: int = 256,
        pooled_size: int = 4,
    ) -> None:
        super().__init__()
        convs = [item for item in plan if item != "M"]
        if not convs:
            raise LandscapeError(f"VGG plan needs at least one conv layer, got {list(plan)}")
        self.features = _make_features(plan, in_channels)
        self.pool = nn.AdaptiveAvgPool2d(pooled_size)
        flat = int(convs[-1]) * pooled_size * pooled_size
        self.fc = nn.Sequential(nn.Linear(flat, hidden), nn.BatchNorm1d(hidden), nn.ReLU())
        self.classifier = nn.Linear(hidden, num_classes)
        init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        out = self.pool(self.features(x)).flatten(1)  # [B, 4096] for VGG-9
        return self.classifier(self.fc(out))


@register_model
def vgg9(in_channels: int = 3, num_classes: int = 10) -> VGG:
    """VGG-9: plan (64, 64, M, 128, 128, M, 256, 256, 256, M), then 4096 -> 256 -> classes."""
    return VGG(_VGG9_PLAN, in_channels=in_channels, num_classes=num_classes)
