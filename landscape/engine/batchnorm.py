"""BatchNorm folding (for fast exact CPU evaluation) and re-estimation (`--bn recompute`).

`fold_batchnorm` merges each eval-mode BatchNorm into the convolution before it (a traced copy
of the model); `refresh_folded` writes the folded weights for any point's state. With
`--bn recompute` the running statistics are re-estimated at every point on the training data.

Example:
    >>> folded = fold_batchnorm(net)          # None if nothing to fold
    >>> refresh_folded(folded, state)         # weights for `state`, in place
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .inputs import call_model

__all__ = ["Folded", "fold_batchnorm", "refresh_folded", "recompute_batchnorm", "reestimate_batchnorm"]


@dataclass
class Folded:
    module: nn.Module
    pairs: list[tuple[str, str]]  # (conv name, bn name)
    plain: list[str]  # state keys copied unchanged
    eps: dict[str, float] = field(default_factory=dict)  # per BatchNorm name


def fold_batchnorm(model: nn.Module) -> Folded | None:
    """A copy of `model` with each eval-mode BatchNorm merged into the conv before it.

    Returns None when the model cannot be traced by torch.fx or has no conv->BN pair. The
    folded weights are recomputed from a state dict by `refresh_folded` at every point.
    """
    try:
        gm = torch.fx.symbolic_trace(copy.deepcopy(model))
    except Exception:
        return None
    modules = dict(gm.named_modules())
    pairs: list[tuple[str, str]] = []
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        src = node.args[0]
        if (
            isinstance(src, torch.fx.Node)
            and src.op == "call_module"
            and isinstance(modules.get(src.target), nn.Conv2d)
            and len(src.users) == 1
            and modules[node.target].track_running_stats
            and modules[node.target].affine
        ):
            pairs.append((src.target, node.target))
            node.replace_all_uses_with(src)
            gm.graph.erase_node(node)
    if not pairs:
        return None
    for conv_name, _ in pairs:
        conv = modules[conv_name]
        new = nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
            conv.padding, conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
        )
        parent_name, _, leaf = conv_name.rpartition(".")
        setattr(gm.get_submodule(parent_name) if parent_name else gm, leaf, new)
    gm.recompile()
    gm.delete_all_unused_submodules()
    folded_keys = {f"{c}.{p}" for c, _ in pairs for p in ("weight", "bias")}
    plain = [k for k in gm.state_dict() if k not in folded_keys]
    eps = {name: m.eps for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    return Folded(gm.eval(), pairs, plain, eps)


@torch.no_grad()
def refresh_folded(folded: Folded, state: Mapping[str, torch.Tensor]) -> None:
    """Write the folded weights for the model state `state` into the folded module."""
    own = folded.module.state_dict()
    for k in folded.plain:
        own[k].copy_(state[k])
    for conv_name, bn_name in folded.pairs:
        scale = state[f"{bn_name}.weight"] / torch.sqrt(state[f"{bn_name}.running_var"] + _eps(folded, bn_name))
        w = state[f"{conv_name}.weight"]
        own[f"{conv_name}.weight"].copy_(w * scale.view(-1, *([1] * (w.dim() - 1))))
        bias = state.get(f"{conv_name}.bias")
        shift = -state[f"{bn_name}.running_mean"] if bias is None else bias - state[f"{bn_name}.running_mean"]
        own[f"{conv_name}.bias"].copy_(shift * scale + state[f"{bn_name}.bias"])


def _eps(folded: Folded, bn_name: str) -> float:
    return folded.eps.get(bn_name, 1e-5)


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int) -> None:
    """Re-estimate BatchNorm running statistics over `x` (cumulative average), then eval mode."""
    reestimate_batchnorm(model, (x[i : i + batch_size] for i in range(0, len(x), batch_size)))


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, batches: Iterable[Any]) -> None:
    """Reset the BatchNorm running statistics, run `model` in train mode on each batch of
    inputs (momentum None: a cumulative average over all batches), then eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for inputs in batches:
        call_model(model, inputs)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()
