"""Weight initialization shared by the model families (ResNet, DenseNet, VGG)."""

from __future__ import annotations

from torch import nn

__all__ = ["init_conv_bn"]


def init_conv_bn(net: nn.Module) -> None:
    """He (fan-out) initialization for conv weights, zero conv biases, BatchNorm at identity."""
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
