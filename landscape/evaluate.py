"""Loss and accuracy at many grid points at once, exactly, on any device.

The data are moved to the device once and the directions live there too; per grid point only
the results cross back. Two strategies, chosen per device and model by `plan_evaluation`:

- `sequential` (a CPU with convolutions): one point per pass, BatchNorm folded into the
  preceding convolutions, channels-last layout, large batches. Batching points would turn
  convolutions into grouped convolutions, which are slower on a CPU.
- `vmap` (any GPU; a CPU with dense layers only): several points share one pass through
  `torch.func.vmap` over stacked weights; this fills a GPU, and amortizes per-point overhead
  for small models.

Sums over samples are accumulated in float64, so the stored mean loss equals a plain PyTorch
evaluation of the same weights within fp32 rounding, whatever the batching.

Example:
    >>> ev = PointEvaluator(model, directions, {"test": (x, y)})
    >>> ev(np.array([[0.0, 0.0], [0.5, -0.5]]))["test_loss"]
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .directions import Directions, point_weights
from .errors import LandscapeError

__all__ = [
    "EvalPlan",
    "PRECISIONS",
    "BN_MODES",
    "plan_evaluation",
    "PointEvaluator",
    "fold_batchnorm",
    "resolve_loss",
    "accuracy_count",
    "recompute_batchnorm",
    "LoaderEvaluator",
    "TensorBatches",
    "is_batched_split",
    "call_model",
    "check_fits",
    "check_tensor_fits",
    "check_loss",
    "result_names",
    "state_at",
]

PRECISIONS = ("fp32", "tf32", "bf16")
BN_MODES = ("eval", "recompute")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MetricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Splits = Mapping[str, tuple[torch.Tensor, torch.Tensor]]


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

    def meta(self) -> dict[str, Any]:
        return {f"plan_{k}": v for k, v in asdict(self).items()}


def _has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


def _has_bn(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


COMPILE_WORTH_SECONDS = 300.0  # compile a CPU conv net when more eager work than this is ahead
COMPILE_MODES = ("auto", "on", "off")
COMPILE_RTOL = {"fp32": 2e-6, "tf32": 1e-3, "bf16": 1e-2}  # compiled vs eager agreement required
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
    conv, bn = _has_conv(model), _has_bn(model)
    scripted = isinstance(model, torch.jit.ScriptModule)
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


# ---------------------------------------------------------------------------------------------
# losses and metrics


def accuracy_count(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Number of samples whose arg-max class equals the target."""
    return (outputs.argmax(-1) == targets).sum()


def resolve_loss(loss: str | LossFn | None) -> tuple[str, LossFn]:
    """Name and per-sample function for `cross_entropy`, `mse`, a callable or an import path."""
    if loss is None or loss == "cross_entropy":
        return "cross_entropy", lambda out, y: F.cross_entropy(out.float(), y, reduction="none")
    if loss == "mse":
        return "mse", _mse
    if callable(loss):
        return getattr(loss, "__name__", type(loss).__name__), loss
    if isinstance(loss, str) and ":" in loss:
        from .hooks import import_object

        fn = import_object(loss, "loss")
        return loss, fn
    raise LandscapeError(
        f"unknown loss {loss!r}; use cross_entropy, mse, a callable, or package.module:fn"
    )


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error (targets of the output's shape, or class labels one-hot)."""
    out = out.float()
    if y.dtype in (torch.int64, torch.int32) and out.dim() == 2 and y.dim() == 1:
        y = F.one_hot(y, out.shape[1]).float()
    y = y.float().reshape(out.shape)
    return (out - y).pow(2).reshape(out.shape[0], -1).mean(1)


def _sum_loss(loss_fn: LossFn, name: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum of per-sample losses over a batch, in float64 (a mean loss is weighted back up)."""
    value = loss_fn(out, y)
    if not isinstance(value, torch.Tensor):
        raise LandscapeError(f"loss {name} returned {type(value).__name__}, expected a tensor")
    n = out.shape[0] if isinstance(out, torch.Tensor) else len(y)
    if value.dim() == 0:
        return value.double() * n
    if value.dim() == 1 and value.shape[0] == n:
        return value.double().sum()
    raise LandscapeError(
        f"loss {name} returned shape {tuple(value.shape)}; expected a scalar mean or one value "
        f"per sample ([{n}])"
    )


# ---------------------------------------------------------------------------------------------
# BatchNorm folding and re-estimation


@dataclass
class _Folded:
    module: nn.Module
    pairs: list[tuple[str, str]]  # (conv name, bn name)
    plain: list[str]  # state keys copied unchanged


def fold_batchnorm(model: nn.Module) -> _Folded | None:
    """A copy of `model` with each eval-mode BatchNorm merged into the conv before it.

    Returns None when the model cannot be traced by torch.fx or has no conv->BN pair. The
    folded weights are recomputed from a state dict by `_refresh_folded` at every point.
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
    return _Folded(gm.eval(), pairs, plain)


@torch.no_grad()
def _refresh_folded(folded: _Folded, state: Mapping[str, torch.Tensor]) -> None:
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


def _eps(folded: _Folded, bn_name: str) -> float:
    return folded.__dict__.setdefault("_eps", {}).get(bn_name, 1e-5)


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int) -> None:
    """Re-estimate BatchNorm running statistics over `x` (cumulative average), then eval mode."""
    _reestimate_batchnorm(model, (x[i : i + batch_size] for i in range(0, len(x), batch_size)))


@torch.no_grad()
def _reestimate_batchnorm(model: nn.Module, batches: Iterable[Any]) -> None:
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


# ---------------------------------------------------------------------------------------------
# the evaluator


@contextlib.contextmanager
def _precision(precision: str, device: torch.device) -> Iterator[None]:
    """fp32 (strict), tf32 (CUDA matmul/conv in TF32) or bf16 (autocast); restores settings."""
    if precision == "tf32" and device.type == "cuda":
        with _cuda_tf32(True):
            yield
    elif precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    elif device.type == "cuda":
        with _cuda_tf32(False):
            yield
    else:
        yield


@contextlib.contextmanager
def _cuda_tf32(allowed: bool) -> Iterator[None]:
    """CUDA matmuls and convolutions in TF32 (or not) inside the block; the settings are restored."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def result_names(splits: Iterable[str], with_metric: bool) -> list[str]:
    """The result arrays of these splits, in order: `{split}_loss` (and `{split}_acc`)."""
    names = []
    for split in splits:
        names.append(f"{split}_loss")
        if with_metric:
            names.append(f"{split}_acc")
    return names


def state_at(center: Mapping[str, torch.Tensor], directions: Directions, c: np.ndarray) -> dict[str, torch.Tensor]:
    """The state at one row `c` of grid coordinates ([ndim]; b = 0 on a line): `center` with
    the covered tensors moved by `point_weights`; the others are `center`'s own, not copies."""
    a = float(c[0])
    b = float(c[1]) if len(c) > 1 and directions.y is not None else 0.0
    return {**center, **point_weights(center, directions, a, b)}


def _copy_into(model: nn.Module, tensors: Mapping[str, torch.Tensor], keys: Iterable[str]) -> None:
    """Copy `tensors[k]` into the model's own state tensor `k`, for each of `keys` (in place)."""
    own = model.state_dict()
    for k in keys:
        own[k].copy_(tensors[k])


def _copy_model(model: nn.Module) -> nn.Module:
    # under no_grad: a deep copy of a TorchScript module otherwise has non-leaf parameters
    with torch.no_grad():
        return copy.deepcopy(model)


Sums = Mapping[str, tuple[torch.Tensor, torch.Tensor, int]]  # split -> (loss sum, correct, n)


class _GridEvaluator:
    """What `PointEvaluator` and `LoaderEvaluator` share: a model copy on the device, the
    directions, loss and metric, result names, timing stats, and means from float64 sums.

    A subclass sets `device` and calls `_setup` in `__init__`, sets `splits`, and evaluates
    one point in `_eval_point` (or overrides `_evaluate` for several at once).
    """

    device: torch.device
    splits: Mapping[str, Any]

    def _setup(
        self, model: nn.Module, directions: Directions, loss: str | LossFn | None, metric: str | MetricFn | None
    ) -> None:
        self.loss_name, self.loss_fn = resolve_loss(loss)
        self.metric_fn = accuracy_count if metric == "accuracy" else metric
        if isinstance(self.metric_fn, str):
            raise LandscapeError(f"unknown metric {metric!r}; use 'accuracy', a callable, or None")
        self.model = _copy_model(model).to(self.device).eval()
        self.dirs = directions.to(self.device)
        self.keys = self.dirs.keys()
        self.stats: dict[str, float] = {"points": 0, "seconds": 0.0}

    @property
    def metric_names(self) -> list[str]:
        return result_names(self.splits, self.metric_fn is not None)

    def __call__(self, coords: np.ndarray) -> dict[str, np.ndarray]:
        coords = np.ascontiguousarray(np.atleast_2d(np.asarray(coords, dtype=np.float64)))
        start = time.perf_counter()
        out = self._evaluate(coords)
        self.stats["points"] += len(coords)
        self.stats["seconds"] += time.perf_counter() - start
        return out

    def _evaluate(self, coords: np.ndarray) -> dict[str, np.ndarray]:
        rows = [self._eval_point(c) for c in coords]
        return {k: np.array([r[k] for r in rows], dtype=np.float64) for k in rows[0]}

    def _eval_point(self, c: np.ndarray) -> dict[str, Any]:
        raise NotImplementedError

    def _finish(self, sums: Sums) -> dict[str, Any]:
        """Mean loss (and accuracy in percent) per split from float64 sums over n samples."""
        out: dict[str, Any] = {}
        for split, (loss_sum, correct, n) in sums.items():
            out[f"{split}_loss"] = (loss_sum.cpu().numpy() / n).astype(np.float64)
            if self.metric_fn is not None:
                out[f"{split}_acc"] = 100.0 * correct.cpu().numpy().astype(np.float64) / n
        return out


class PointEvaluator(_GridEvaluator):
    """Evaluates mean loss (and accuracy) on fixed data at grid coordinates.

    `splits` maps a split name to (inputs, targets) tensors, moved to the device once.
    Calling the evaluator with coordinates [k, ndim] returns `{split}_loss` (and `{split}_acc`
    in percent) arrays of length k.
    """

    def __init__(
        self,
        model: nn.Module,
        directions: Directions,
        splits: Splits,
        plan: EvalPlan | None = None,
        loss: str | LossFn | None = "cross_entropy",
        metric: str | MetricFn | None = "accuracy",
        bn_mode: str = "eval",
        bn_data: torch.Tensor | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.device = torch.device(device) if plan is None else torch.device(plan.device)
        first = next(iter(splits.values()))[0]
        self.plan = plan or plan_evaluation(model, self.device, 1, bn_mode=bn_mode, sample=first)
        self.bn_mode = bn_mode
        self._setup(model, directions, loss, metric)
        self.center = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        fmt = torch.channels_last if self.plan.channels_last else torch.contiguous_format
        dtype = torch.bfloat16 if self.plan.precision == "bf16" and self.plan.strategy == "sequential" else None
        self.splits = {
            name: (self._to_device(x, fmt, dtype), y.to(self.device)) for name, (x, y) in splits.items()
        }
        self.bn_data = self._to_device(bn_data, fmt, None) if bn_data is not None else None
        if bn_mode == "recompute" and self.bn_data is None:
            raise LandscapeError("--bn recompute needs training data to re-estimate statistics")
        self.folded = fold_batchnorm(self.model) if self.plan.fold_bn else None
        if self.plan.fold_bn and self.folded is None:
            self.plan = replace(self.plan, fold_bn=False, reason=self.plan.reason + "; model not traceable, BN not folded")
        if self.folded is not None:
            self.folded.__dict__["_eps"] = {
                name: m.eps for name, m in self.model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            }
        self.runner = self.folded.module if self.folded is not None else self.model
        if self.plan.channels_last:
            self.runner.to(memory_format=torch.channels_last)
        self.cast = dtype is not None  # the whole model runs in bf16: no autocast needed
        if self.cast:
            self.runner.to(dtype)
        self.compile_mode = self._compile_mode()
        self.plan = replace(self.plan, compile=False)  # True once a compiled model is in use

    def _compile_mode(self) -> str | None:
        """'on' (asked for), 'auto' (a CPU conv net: compile if the run is long enough) or None."""
        sequential = self.plan.strategy == "sequential" and not isinstance(self.model, torch.jit.ScriptModule)
        if self.plan.compile:
            if sequential:
                return "on"
            self.plan = replace(self.plan, reason=self.plan.reason + "; no compile (needs the sequential strategy)")
            return None
        worth_asking = self.device.type == "cpu" and _has_conv(self.model) and self.bn_mode == "eval"
        return "auto" if self.plan.auto_compile and sequential and worth_asking else None

    def _to_device(self, x: torch.Tensor, fmt: torch.memory_format, dtype: torch.dtype | None) -> torch.Tensor:
        x = x.to(self.device)
        if dtype is not None and x.is_floating_point():
            x = x.to(dtype)
        if x.dim() == 4:
            x = x.contiguous(memory_format=fmt)
        return x

    def _evaluate(self, coords: np.ndarray) -> dict[str, np.ndarray]:
        if self.plan.strategy == "vmap":
            sums = [self._eval_vmap(coords[i : i + self.plan.points_per_pass])
                    for i in range(0, len(coords), self.plan.points_per_pass)]
            return {k: np.concatenate([s[k] for s in sums]) for k in sums[0]}
        if self.compile_mode is None or len(coords) == 0:
            return super()._evaluate(coords)
        t0 = time.perf_counter()  # the first point runs eager: its time decides, its values check
        first = super()._evaluate(coords[:1])
        self._try_compiling(coords[:1], first, time.perf_counter() - t0)
        if len(coords) == 1:
            return first
        rest = super()._evaluate(coords[1:])
        return {k: np.concatenate([first[k], rest[k]]) for k in first}

    def _try_compiling(self, coords: np.ndarray, eager: dict[str, np.ndarray], seconds_per_point: float) -> None:
        """torch.compile the runner when asked or worth it (eager work ahead over COMPILE_WORTH_SECONDS;
        measured: compiling resnet20 costs 6-40 s on 2 cores and saves 7-22% per point), and keep
        it only if it reproduces the eager values at `coords`."""
        mode, self.compile_mode = self.compile_mode, None
        ahead = (self.plan.expected_points - self.stats["points"] - len(coords)) * seconds_per_point
        if mode == "auto" and ahead <= COMPILE_WORTH_SECONDS:
            return
        why = "asked for" if mode == "on" else f"{ahead:.0f} s of eager work ahead"
        eager_runner = self.runner
        try:
            self.runner = torch.compile(eager_runner, dynamic=False)
            compiled = super()._evaluate(coords)
        except LandscapeError:
            raise
        except Exception as e:  # e.g. no C++ compiler for inductor
            failure = f"failed ({type(e).__name__})"
        else:
            rtol = COMPILE_RTOL[self.plan.precision]
            agree = all(np.allclose(compiled[k], eager[k], rtol=rtol, atol=0.0, equal_nan=True) for k in eager)
            failure = "" if agree else "differs from eager"
        if failure:
            self.runner = eager_runner
            self.plan = replace(self.plan, reason=self.plan.reason + f"; torch.compile {failure}, eager")
        else:
            self.plan = replace(self.plan, compile=True, reason=self.plan.reason + f"; torch.compile ({why})")

    # -- sequential ----------------------------------------------------------------------------

    @torch.no_grad()
    def _eval_point(self, c: np.ndarray) -> dict[str, float]:
        state = state_at(self.center, self.dirs, c)
        if self.bn_mode == "recompute":
            _copy_into(self.model, state, self.keys)
            recompute_batchnorm(self.model, self.bn_data, self.plan.batch_size)
            state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            _copy_into(self.model, self.center, self.center)  # restore the centre for the next point
        if self.folded is not None:
            _refresh_folded(self.folded, state)
        elif self.runner is self.model:
            own = self.model.state_dict()
            for k, v in state.items():
                if own[k].data_ptr() != v.data_ptr():
                    own[k].copy_(v)
        sums = {}
        with _precision("fp32" if self.cast else self.plan.precision, self.device):
            for split, (x, y) in self.splits.items():
                loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
                correct = torch.zeros((), dtype=torch.int64, device=self.device)
                for i in range(0, len(x), self.plan.batch_size):
                    out = self.runner(x[i : i + self.plan.batch_size])
                    yb = y[i : i + self.plan.batch_size]
                    loss_sum += _sum_loss(self.loss_fn, self.loss_name, out, yb)
                    if self.metric_fn is not None:
                        correct += self.metric_fn(out, yb)
                sums[split] = (loss_sum, correct, len(x))
        if self.folded is None and self.runner is self.model and self.bn_mode != "recompute":
            _copy_into(self.model, self.center, self.keys)
        return self._finish(sums)

    # -- vmap ----------------------------------------------------------------------------------

    @torch.no_grad()
    def _eval_vmap(self, coords: np.ndarray) -> dict[str, np.ndarray]:
        from torch.func import functional_call, vmap

        k = len(coords)
        a = torch.tensor(coords[:, 0], dtype=torch.float32, device=self.device)
        b = torch.tensor(coords[:, 1] if coords.shape[1] > 1 else np.zeros(k), dtype=torch.float32, device=self.device)
        stacked = {}
        for key in self.keys:
            c = self.center[key]
            shape = (k,) + (1,) * c.dim()
            v = c.unsqueeze(0) + a.view(shape) * self.dirs.x[key].unsqueeze(0)
            if self.dirs.y is not None:
                v = v + b.view(shape) * self.dirs.y[key].unsqueeze(0)
            stacked[key] = v
        shared = {key: v for key, v in self.center.items() if key not in stacked}

        def forward(params: dict[str, torch.Tensor], xb: torch.Tensor) -> torch.Tensor:
            return functional_call(self.model, (params, shared), (xb,))

        batched = vmap(forward, in_dims=(0, None))
        sums = {}
        with _precision(self.plan.precision, self.device):
            for split, (x, y) in self.splits.items():
                loss_sum = torch.zeros(k, dtype=torch.float64, device=self.device)
                correct = torch.zeros(k, dtype=torch.int64, device=self.device)
                for i in range(0, len(x), self.plan.batch_size):
                    xb, yb = x[i : i + self.plan.batch_size], y[i : i + self.plan.batch_size]
                    out = batched(stacked, xb)  # [k, B, ...]
                    if self.loss_name == "cross_entropy":
                        per = F.cross_entropy(
                            out.float().flatten(0, 1), yb.repeat(k), reduction="none"
                        ).view(k, -1)
                        loss_sum += per.double().sum(1)
                    else:
                        loss_sum += torch.stack(
                            [_sum_loss(self.loss_fn, self.loss_name, out[j], yb) for j in range(k)]
                        )
                    if self.metric_fn is not None:
                        correct += torch.stack([self.metric_fn(out[j], yb) for j in range(k)]).to(torch.int64)
                sums[split] = (loss_sum, correct, len(x))
        return self._finish(sums)


# ---------------------------------------------------------------------------------------------
# data in batches: DataLoaders and structured inputs (dicts or tuples of tensors)
#
# A user's net may take a dict (`model(**inputs)`), a tuple (`model(*inputs)`) or a tensor, and
# its data may come as a DataLoader used as given. `LoaderEvaluator` evaluates such splits one
# grid point at a time: the weights of one model copy are updated in place (which also serves
# TorchScript modules, which `functional_call` cannot run), then every batch is run once.


def is_batched_split(split: Any) -> bool:
    """Whether a split needs `LoaderEvaluator`: a DataLoader, or inputs that are not one tensor."""
    if isinstance(split, torch.utils.data.DataLoader):
        return True
    return isinstance(split, (tuple, list)) and len(split) == 2 and not isinstance(split[0], torch.Tensor)


def call_model(model: Callable[..., Any], inputs: Any) -> Any:
    """`model(**inputs)` for a dict, `model(*inputs)` for a tuple or list, else `model(inputs)`."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def move_to(obj: Any, device: torch.device) -> Any:
    """Tensors inside dicts, tuples and lists moved to `device` (other values unchanged)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: move_to(v, device) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(move_to(v, device) for v in obj)
    if isinstance(obj, list):
        return [move_to(v, device) for v in obj]
    return obj


def describe_inputs(inputs: Any) -> str:
    """Shapes and dtypes of a batch's inputs, e.g. `{'tokens': [4, 7] int64, 'mask': [4, 7] float32}`."""
    if isinstance(inputs, torch.Tensor):
        return f"{list(inputs.shape)} {str(inputs.dtype).replace('torch.', '')}"
    if isinstance(inputs, Mapping):
        return "{" + ", ".join(f"{k!r}: {describe_inputs(v)}" for k, v in inputs.items()) + "}"
    if isinstance(inputs, (tuple, list)):
        return "(" + ", ".join(describe_inputs(v) for v in inputs) + ")"
    return type(inputs).__name__


def _slice(inputs: Any, i: int, j: int) -> Any:
    if isinstance(inputs, Mapping):
        return {k: _slice(v, i, j) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return tuple(_slice(v, i, j) for v in inputs)
    return inputs[i:j]


def _num_samples(inputs: Any) -> int:
    if isinstance(inputs, Mapping):
        return _num_samples(next(iter(inputs.values())))
    if isinstance(inputs, (tuple, list)):
        return _num_samples(inputs[0])
    return len(inputs)


class TensorBatches:
    """Batches of (inputs, targets) cut from in-memory inputs: a tensor, or a dict/tuple of them."""

    def __init__(self, inputs: Any, targets: torch.Tensor, batch_size: int) -> None:
        self.inputs, self.targets, self.batch_size = inputs, targets, int(batch_size)
        self.n = _num_samples(inputs)
        if self.n != len(targets):
            raise LandscapeError(f"inputs have {self.n} samples but targets have {len(targets)}")

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Any, torch.Tensor]]:
        for i in range(0, self.n, self.batch_size):
            yield _slice(self.inputs, i, i + self.batch_size), self.targets[i : i + self.batch_size]


def _unpack_batch(batch: Any, split: str) -> tuple[Any, Any]:
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    got = f"a dict with keys {sorted(batch)}" if isinstance(batch, Mapping) else type(batch).__name__
    raise LandscapeError(
        f"split {split!r}: each DataLoader batch must be (inputs, targets), got {got}; "
        "return (inputs, target) from the Dataset's __getitem__ or use a collate_fn"
    )


def check_fits(model: nn.Module, inputs: Any, what: str) -> None:
    """Run `model` on a batch; raise one line naming the model, the data and the input shapes."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        with torch.no_grad():
            call_model(model.eval(), inputs)  # eval: no dropout, no BatchNorm statistics update
    except Exception as error:
        raise LandscapeError(
            f"{_does_not_fit(what, model, inputs, error)}; the model is called as {_call_form(inputs)}"
        ) from None
    finally:
        for m, training in modes:
            m.training = training


def _does_not_fit(what: str, model: nn.Module, inputs: Any, error: Exception) -> str:
    """`<what> does not fit model <name>: inputs <shapes> (<error type>: <message, one line>)`."""
    text = " ".join(str(error).split())[:200]
    return (
        f"{what} does not fit model {_model_name(model)}: inputs {describe_inputs(inputs)} "
        f"({type(error).__name__}: {text})"
    )


def check_tensor_fits(model: nn.Module, x: torch.Tensor, model_name: str) -> None:
    """Fail early, in one line, when data like `x` do not fit the model (a pass on 2 samples)."""
    x = x[:2]
    try:
        with torch.no_grad():
            model.eval()(x)
    except Exception as e:
        raise LandscapeError(
            f"data of shape {tuple(x.shape[1:])} do not fit model {model_name} "
            f"({str(e).strip().splitlines()[0][:160]}); check --data"
        ) from None


def check_loss(model: nn.Module, loss: Any, x: torch.Tensor, y: torch.Tensor) -> None:
    """Fail early, in one line, when the loss cannot score this model's outputs (2 samples).

    Run before a surface file is created, so a loss with the wrong signature leaves no file.
    """
    name, fn = resolve_loss(loss)
    with torch.no_grad():
        out = model.eval()(x[:2])
        try:
            _sum_loss(fn, name, out, y[:2])
        except LandscapeError:
            raise
        except Exception as e:
            raise LandscapeError(
                f"--loss {name} failed on a batch of 2 samples ({type(e).__name__}: "
                f"{str(e).strip().splitlines()[0][:160] if str(e).strip() else 'no message'}); it must "
                "be fn(outputs, targets) returning per-sample losses or their mean"
            ) from None


def _call_form(inputs: Any) -> str:
    if isinstance(inputs, Mapping):
        return "model(**inputs) for dict inputs"
    if isinstance(inputs, (tuple, list)):
        return "model(*inputs) for tuple inputs"
    return "model(inputs)"


def _model_name(model: nn.Module) -> str:
    return getattr(model, "original_name", None) or type(model).__name__


class LoaderEvaluator(_GridEvaluator):
    """Mean loss (and metric) at grid points for splits given as DataLoaders or structured inputs.

    `splits` maps a split name to a DataLoader (iterated as given; batches are
    (inputs, targets)) or to (inputs, targets) where inputs are a tensor or a dict/tuple of
    tensors (cut into batches of `batch_size`). Same interface and float64 sample-weighted sums
    as `PointEvaluator`. `bn_data` (for `bn_mode="recompute"`) is a DataLoader or such a pair.

    Example:
        >>> ev = LoaderEvaluator(net, directions, {"train": loader}, loss="mse", metric=None)
        >>> ev(np.array([[0.0, 0.0]]))["train_loss"]
    """

    def __init__(
        self,
        model: nn.Module,
        directions: Directions,
        splits: Mapping[str, Any],
        loss: str | LossFn | None = "cross_entropy",
        metric: str | MetricFn | None = "accuracy",
        bn_mode: str = "eval",
        bn_data: Any = None,
        device: torch.device | str = "cpu",
        precision: str = "fp32",
        batch_size: int | None = None,
    ) -> None:
        if bn_mode not in BN_MODES:
            raise LandscapeError(f"--bn {bn_mode!r} is not one of {', '.join(BN_MODES)}")
        if precision not in PRECISIONS:
            raise LandscapeError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        self.device = torch.device(device)
        self.bn_mode = bn_mode
        self._setup(model, directions, loss, metric)
        if bn_mode == "recompute" and isinstance(model, torch.jit.ScriptModule):
            raise LandscapeError("--bn recompute does not support TorchScript models; use --bn eval")
        own = self.model.state_dict()
        missing = [k for k in self.keys if k not in own]
        if missing:
            raise LandscapeError(
                f"the directions do not match model {_model_name(model)}: it has no tensor {missing[0]!r}"
            )
        self.center = {k: own[k].detach().clone() for k in self.keys}
        size = batch_size or 256
        self.splits = {name: self._batches(split, size) for name, split in splits.items()}
        self.bn_data = self._batches(bn_data, size) if bn_data is not None else None
        if bn_mode == "recompute" and self.bn_data is None:
            raise LandscapeError("--bn recompute needs training data to re-estimate statistics")
        loaders = [s for s in splits.values() if isinstance(s, torch.utils.data.DataLoader)]
        shown = loaders[0].batch_size if loaders and loaders[0].batch_size else size
        self.plan = EvalPlan(
            strategy="sequential", points_per_pass=1, batch_size=int(shown), precision=precision,
            device=str(self.device), reason="data in batches (a DataLoader or dict/tuple inputs); "
            "weights updated in place",
        )

    def _batches(self, split: Any, batch_size: int) -> Any:
        if isinstance(split, torch.utils.data.DataLoader):
            return split
        if isinstance(split, TensorBatches):
            return split
        inputs, targets = split
        return TensorBatches(move_to(inputs, self.device), move_to(targets, self.device), batch_size)

    @torch.no_grad()
    def _set_point(self, c: np.ndarray) -> None:
        _copy_into(self.model, state_at(self.center, self.dirs, c), self.keys)
        if self.bn_mode == "recompute":
            _reestimate_batchnorm(
                self.model, (move_to(_unpack_batch(batch, "bn")[0], self.device) for batch in self.bn_data)
            )

    @torch.no_grad()
    def _eval_point(self, c: np.ndarray) -> dict[str, Any]:
        self._set_point(c)
        sums = {}
        with _precision(self.plan.precision, self.device):
            for split, batches in self.splits.items():
                loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
                correct = torch.zeros((), dtype=torch.int64, device=self.device)
                n = 0
                for batch in batches:
                    inputs, targets = _unpack_batch(batch, split)
                    inputs, targets = move_to(inputs, self.device), move_to(targets, self.device)
                    try:
                        outputs = call_model(self.model, inputs)
                    except Exception as error:
                        raise LandscapeError(_does_not_fit(f"split {split!r}", self.model, inputs, error)) from None
                    loss_sum += _sum_loss(self.loss_fn, self.loss_name, outputs, targets)
                    if self.metric_fn is not None:
                        correct += torch.as_tensor(self.metric_fn(outputs, targets), device=self.device).to(torch.int64)
                    n += len(targets)
                if n == 0:
                    raise LandscapeError(f"split {split!r} yielded no batches")
                sums[split] = (loss_sum, correct, n)
        return self._finish(sums)
