"""Evaluation planning: strategy, points per pass, batch size and layout for a device and model.

`plan_evaluation` decides once, before any point is evaluated, and returns a frozen `EvalPlan`
that the evaluators only apply (and that the surface file records):

- `sequential` (a CPU with convolutions): one point per pass, BatchNorm folded, channels-last,
  batches sized so the largest activation fits the CPU cache;
- `vmap` (any GPU; a CPU with dense layers only): several points share one pass; only for a
  model that returns one tensor (a `ModelOutput` or a tuple, which may hold a cache object, is
  planned sequentially: `returns_tensor`).

`candidate_plans` lists the rule's plan first, then a few alternatives where the engine has a
real choice; `landscape.engine.trial` times them on the first real points of a run and keeps the
fastest.

Example:
    >>> plan = plan_evaluation(net, torch.device("cpu"), n_points=441, sample=x[:1])
    >>> plan.strategy, plan.points_per_pass
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

from ..errors import LandscapeError

__all__ = [
    "EvalPlan",
    "PRECISIONS",
    "BN_MODES",
    "COMPILE_MODES",
    "CPU_CACHE_BYTES",
    "has_conv",
    "has_bn",
    "returns_tensor",
    "plan_evaluation",
    "candidate_plans",
    "lcm_points_per_pass",
]

PRECISIONS = ("fp32", "tf32", "bf16")
BN_MODES = ("eval", "recompute")


@dataclass(frozen=True)
class EvalPlan:
    """How the engine evaluates grid points on one device (recorded in the surface file)."""

    strategy: str = "sequential"  # sequential | vmap
    points_per_pass: int = 1
    batch_size: int = 256
    channels_last: bool = False
    fold_bn: bool = False
    compile: bool = False
    auto_compile: bool = True  # compile later if the first point shows a long run ahead (CPU convs)
    precision: str = "fp32"
    device: str = "cpu"
    reason: str = ""
    expected_points: int = 1  # points this plan was made for (the compile decision uses it)
    # the trial that chose this plan (landscape.engine.trial): {"candidates": [...], "chosen": ...} or
    # {"skipped": why}; None when no trial was considered (a plan made by hand)
    trial: dict[str, Any] | None = None

    def meta(self) -> dict[str, Any]:
        return {f"plan_{k}": v for k, v in asdict(self).items() if not (k == "trial" and v is None)}

    def describe(self) -> str:
        """A short name: 'sequential, batch 64, channels-last' or 'vmap, 32 points/pass, batch 128'."""
        parts = [self.strategy]
        if self.strategy == "vmap":
            parts.append(f"{self.points_per_pass} points/pass")
        parts.append(f"batch {self.batch_size}")
        if self.channels_last:
            parts.append("channels-last")
        if self.precision != "fp32":
            parts.append(self.precision)
        return ", ".join(parts)


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


def has_bn(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def returns_tensor(model: nn.Module, sample: torch.Tensor | None) -> bool:
    """Whether the model returns one tensor for `sample[:1]` (True without a sample, or when
    the probe fails: the evaluators then say what is wrong)."""
    if sample is None or isinstance(model, torch.jit.ScriptModule):
        return True
    modes = [(m, m.training) for m in model.modules()]
    try:
        with torch.no_grad():
            return isinstance(model.eval()(sample[:1]), torch.Tensor)
    except Exception:
        return True
    finally:
        for m, training in modes:
            m.training = training


COMPILE_MODES = ("auto", "on", "off")
CPU_CACHE_BYTES = 4 << 20  # measured here: batches whose largest activation is ~4 MB run fastest


def _max_activation_bytes(model: nn.Module, sample: torch.Tensor) -> int:
    """Bytes of the largest module output for one sample (a probe forward pass)."""
    sizes: list[int] = []

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            sizes.append(out.numel() * out.element_size())

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model.eval()(sample[:1])
    except Exception:  # an unusual model: fall back to a plain batch size
        return 0
    finally:
        for h in handles:
            h.remove()
    return max(sizes, default=0)


def _cache_batch_size(model: nn.Module, sample: torch.Tensor, element_bytes: int = 4) -> int:
    """CPU convolutions: the power of two batch whose largest activation fits ~4 MB (16..1024).

    Measured on 2 cores: resnet20 at 32x32 runs 1.7x faster at batch 64 than at 256, and
    densenet_bc40 3.5x faster at batch 16-32; at 8x8 inputs batch 1024 is best.
    """
    per_sample = _max_activation_bytes(model, sample) * element_bytes // 4
    if per_sample <= 0:
        return 256
    batch = max(1, CPU_CACHE_BYTES // per_sample)
    return int(min(1024, max(16, 1 << (batch.bit_length() - 1))))


def plan_evaluation(
    model: nn.Module,
    device: torch.device,
    n_points: int,
    precision: str = "fp32",
    bn_mode: str = "eval",
    strategy: str | None = None,
    points_per_pass: int | None = None,
    batch_size: int | None = None,
    sample: torch.Tensor | None = None,
    compile: str = "auto",
) -> EvalPlan:
    """Choose strategy, points per pass, batch size and layout for this device and model.

    `compile`: "auto" (compile CPU convolution nets when the run is long enough), "on", "off".
    """
    if compile not in COMPILE_MODES:
        raise LandscapeError(f"--compile {compile!r} is not one of {', '.join(COMPILE_MODES)}")
    if precision not in PRECISIONS:
        raise LandscapeError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if bn_mode not in BN_MODES:
        raise LandscapeError(f"--bn {bn_mode!r} is not one of {', '.join(BN_MODES)}")
    conv, bn = has_conv(model), has_bn(model)
    scripted = isinstance(model, torch.jit.ScriptModule)
    plain = strategy is not None or returns_tensor(model, sample)
    if scripted and (strategy == "vmap" or bn_mode == "recompute"):
        raise LandscapeError(
            "a TorchScript model is evaluated with --strategy sequential and --bn eval only "
            "(torch.func cannot call it, and its BatchNorm layers are opaque)"
        )
    if strategy is None:
        if scripted:
            strategy, reason = "sequential", "TorchScript: weights updated in place"
        elif bn_mode == "recompute":
            strategy, reason = "sequential", "BatchNorm statistics are re-estimated per point"
        elif not plain:
            strategy, reason = "sequential", "the model returns more than one tensor (a ModelOutput or tuple)"
        elif device.type == "cuda":
            strategy, reason = "vmap", "a GPU is filled by batching grid points"
        elif conv:
            strategy, reason = "sequential", "on a CPU, batched points make convolutions grouped (slower)"
        else:
            strategy, reason = "vmap", "dense layers batch well on a CPU; amortizes per-point overhead"
    else:
        reason = "chosen by the user"
    if strategy not in ("sequential", "vmap"):
        raise LandscapeError(f"strategy {strategy!r} is not one of sequential, vmap")
    if strategy == "vmap" and bn_mode == "recompute":
        raise LandscapeError("--bn recompute needs the sequential strategy")
    if points_per_pass is None:
        if strategy == "sequential":
            points_per_pass = 1
        elif device.type == "cuda":
            points_per_pass = _cuda_points_per_pass(model, device, sample)
        else:
            points_per_pass = 32
    points_per_pass = max(1, min(points_per_pass, n_points)) if strategy == "vmap" else 1
    if batch_size is None:
        if strategy == "sequential" and device.type == "cpu" and conv and sample is not None:
            batch_size = _cache_batch_size(model, sample, 2 if precision == "bf16" else 4)
        elif strategy == "sequential":
            batch_size = 256 if conv else 4096
        else:
            batch_size = max(32, (4096 if not conv else 1024) // points_per_pass)
    channels_last = conv and sample is not None and sample.dim() == 4
    return EvalPlan(
        strategy=strategy,
        points_per_pass=int(points_per_pass),
        batch_size=int(batch_size),
        channels_last=bool(channels_last),
        fold_bn=bool(strategy == "sequential" and bn and conv),
        compile=compile == "on",
        auto_compile=compile == "auto",
        precision=precision,
        device=str(device),
        reason=reason,
        expected_points=int(n_points),
    )


def _cuda_points_per_pass(model: nn.Module, device: torch.device, sample: torch.Tensor | None) -> int:
    """GPU only: as many points per pass as half the free memory holds for a 256-sample batch."""
    if sample is None:
        return 8
    probe = copy.deepcopy(model).to(device).eval()
    xb = sample[:256].to(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    with torch.no_grad():
        probe(xb)
    per_point = max(torch.cuda.max_memory_allocated(device) - before, 1)
    free, _ = torch.cuda.mem_get_info(device)
    return int(max(1, min(64, 0.5 * free // per_point)))



MAX_CANDIDATES = 4


def candidate_plans(
    model: nn.Module,
    device: torch.device,
    n_points: int,
    precision: str = "fp32",
    bn_mode: str = "eval",
    sample: torch.Tensor | None = None,
    strategy: str | None = None,
    points_per_pass: int | None = None,
    batch_size: int | None = None,
    compile: str = "auto",
) -> list[EvalPlan]:
    """The plans worth timing for this model and device: the rule's plan (`plan_evaluation`)
    first, then up to three alternatives where the engine has a real choice.

    - a CPU with convolutions: sequential in NCHW, sequential with 4x the batch, vmap with 4
      points per pass;
    - a GPU: vmap with a quarter of the memory-sized points per pass, sequential with a large
      batch (channels-last for convolutions);
    - dense layers on a CPU: vmap with 8 and 128 points per pass, sequential.

    `--strategy` forces the plan (one candidate); a given `points_per_pass`, `batch_size` or
    `compile="on"` stays fixed in every candidate. TorchScript models, `--bn recompute` and
    models returning more than one tensor have one candidate (only the sequential strategy runs them).

    Example:
        >>> [p.describe() for p in candidate_plans(net, torch.device("cpu"), 441, sample=x[:1])]
    """
    rule = plan_evaluation(
        model, device, n_points, precision, bn_mode, strategy, points_per_pass, batch_size, sample, compile
    )
    if strategy is not None or bn_mode == "recompute" or isinstance(model, torch.jit.ScriptModule):
        return [rule]
    if not returns_tensor(model, sample):
        return [rule]
    conv = has_conv(model)
    variants: list[tuple[str, int | None, int | None, bool | None]] = []  # strategy, ppp, batch, NHWC
    if device.type == "cuda":
        quarter = _divisor_near(rule.points_per_pass, rule.points_per_pass // 4)
        variants += [("vmap", quarter, None, None), ("sequential", None, 1024 if conv else 4096, None)]
    elif conv:
        if rule.strategy == "sequential":
            if rule.channels_last:
                variants.append(("sequential", None, rule.batch_size, False))
            variants.append(("sequential", None, min(4 * rule.batch_size, 4096), None))
        variants.append(("vmap", 4, None, None))
    else:
        variants += [("vmap", 8, None, None), ("vmap", 128, None, None), ("sequential", None, None, None)]
    plans = [rule]
    seen = {_key(rule)}
    for kind, ppp, batch, nhwc in variants:
        if compile == "on" and kind != "sequential":
            continue  # compiling needs the sequential strategy
        plan = plan_evaluation(
            model, device, n_points, precision, bn_mode, kind,
            points_per_pass if points_per_pass is not None else ppp,
            batch_size if batch_size is not None else batch, sample, compile,
        )
        if nhwc is not None:
            plan = replace(plan, channels_last=plan.channels_last and nhwc)
        plan = replace(plan, reason="a trial candidate")
        if _key(plan) not in seen and len(plans) < MAX_CANDIDATES:
            seen.add(_key(plan))
            plans.append(plan)
    return plans


def _key(plan: EvalPlan) -> tuple[Any, ...]:
    return plan.strategy, plan.points_per_pass, plan.batch_size, plan.channels_last


def _divisor_near(n: int, want: int) -> int:
    """The largest divisor of `n` at most `want` (at least 1), so that passes of `n` points
    split into whole passes of it.

    Example:
        >>> _divisor_near(64, 16), _divisor_near(63, 15)
        (16, 9)
    """
    return max(d for d in range(1, max(want, 1) + 1) if n % d == 0)


def lcm_points_per_pass(plans: list[EvalPlan]) -> int:
    """The smallest count of points that is whole passes for every plan."""
    return math.lcm(*(p.points_per_pass for p in plans))
