"""Loss and accuracy at many grid points at once, exactly, on any device.

The data are moved to the device once and the directions live there too; per grid point only
the results cross back. Two strategies, chosen per device and model by `plan_evaluation` (and
where the engine has a choice, by timing candidate plans on a run's first points:
`landscape.engine.trial`):

- `sequential` (a CPU with convolutions): one point per pass, BatchNorm folded into the
  preceding convolutions, channels-last layout, large batches. Batching points would turn
  convolutions into grouped convolutions, which are slower on a CPU.
- `vmap` (any GPU; a CPU with dense layers only): several points share one pass through
  `torch.func.vmap` over stacked weights; this fills a GPU, and amortizes per-point overhead
  for small models.

Sums over samples are accumulated in float64, so the stored mean loss equals a plain PyTorch
evaluation of the same weights within fp32 rounding, whatever the batching.

Outputs that are not one tensor (a Hugging Face `ModelOutput`, a tuple) are planned
sequentially; asked for with vmap, each point's outputs are taken from every tensor of the
structure (`inputs.take_row`), never by indexing the structure itself (`ModelOutput[j]` is its j-th
field). Tied tensors (`landscape.core.directions.tied_keys`) are held once, under their first key.

Example:
    >>> ev = PointEvaluator(model, directions, {"test": (x, y)})
    >>> ev(np.array([[0.0, 0.0], [0.5, -0.5]]))["test_loss"]
"""


from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.directions import Directions, point_weights, tied_keys
from ..errors import LandscapeError
from .batchnorm import fold_batchnorm, recompute_batchnorm, reestimate_batchnorm, refresh_folded
from .inputs import (
    TensorBatches,
    call_model,
    does_not_fit,
    model_name,
    move_to,
    take_row,
    unpack_batch,
)
from .losses import (
    LossFn,
    MetricFn,
    accuracy_count,
    cross_entropy,
    loss_sum_count,
    model_logits,
    resolve_loss,
    result_names,
)
from .planning import BN_MODES, PRECISIONS, EvalPlan, has_conv, plan_evaluation

__all__ = [
    "PointEvaluator",
    "LoaderEvaluator",
    "state_at",
    "COMPILE_WORTH_SECONDS",
    "COMPILE_RTOL",
    # defined in planning / losses / inputs, importable from here too
    "EvalPlan",
    "PRECISIONS",
    "BN_MODES",
    "plan_evaluation",
    "resolve_loss",
    "result_names",
    "call_model",
]

Splits = Mapping[str, tuple[torch.Tensor, torch.Tensor]]

COMPILE_WORTH_SECONDS = 300.0  # compile a CPU conv net when more eager work than this is ahead
COMPILE_RTOL = {"fp32": 2e-6, "tf32": 1e-3, "bf16": 1e-2}  # compiled vs eager agreement required


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


# split -> (loss sum, what the loss sum counts (samples, or tokens), correct, samples)
Sums = Mapping[str, tuple[torch.Tensor, int, torch.Tensor, int]]


def _own_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state, each tied tensor once (under its first key), cloned."""
    tied = tied_keys(model)
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k not in tied}


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
        for split, (loss_sum, count, correct, n) in sums.items():
            if count == 0:
                raise LandscapeError(f"split {split!r}: the loss counted no elements (all targets are padding?)")
            out[f"{split}_loss"] = (loss_sum.cpu().numpy() / count).astype(np.float64)
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
        self.center = _own_state(self.model)
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
        worth_asking = self.device.type == "cpu" and has_conv(self.model) and self.bn_mode == "eval"
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
            refresh_folded(self.folded, state)
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
                count = 0
                for i in range(0, len(x), self.plan.batch_size):
                    out = self.runner(x[i : i + self.plan.batch_size])
                    yb = y[i : i + self.plan.batch_size]
                    part, counted = loss_sum_count(self.loss_fn, self.loss_name, out, yb)
                    loss_sum += part
                    count += counted
                    if self.metric_fn is not None:
                        correct += self.metric_fn(out, yb)
                sums[split] = (loss_sum, count, correct, len(x))
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

        def forward(params: dict[str, torch.Tensor], xb: torch.Tensor) -> Any:
            # tied keys are not in `shared` (see `_own_state`): functional_call ties them itself
            return functional_call(self.model, (params, shared), (xb,))

        batched = vmap(forward, in_dims=(0, None))
        sums = {}
        with _precision(self.plan.precision, self.device):
            for split, (x, y) in self.splits.items():
                loss_sum = torch.zeros(k, dtype=torch.float64, device=self.device)
                correct = torch.zeros(k, dtype=torch.int64, device=self.device)
                count = 0
                for i in range(0, len(x), self.plan.batch_size):
                    xb, yb = x[i : i + self.plan.batch_size], y[i : i + self.plan.batch_size]
                    out = self._batched(batched, stacked, xb)  # tensors [k, B, ...]
                    logits = model_logits(out) if self.loss_name == "cross_entropy" else None
                    if logits is not None and logits.dim() == 3 and yb.dim() == 1:
                        per = cross_entropy(logits.flatten(0, 1), yb.repeat(k)).view(k, -1)
                        loss_sum += per.double().sum(1)
                        count += len(yb)
                    else:
                        parts = [loss_sum_count(self.loss_fn, self.loss_name, take_row(out, j), yb) for j in range(k)]
                        loss_sum += torch.stack([p for p, _ in parts])
                        count += parts[0][1]  # the targets, so the count, are the same at every point
                    if self.metric_fn is not None:
                        correct += torch.stack([self.metric_fn(take_row(out, j), yb) for j in range(k)]).to(torch.int64)
                sums[split] = (loss_sum, count, correct, len(x))
        return self._finish(sums)

    def _batched(self, batched: Any, stacked: dict[str, torch.Tensor], xb: torch.Tensor) -> Any:
        try:
            return batched(stacked, xb)
        except LandscapeError:
            raise
        except Exception as error:
            if not any(w in str(error).lower() for w in ("vmap", "batching rule", "batched tensor", "data-dependent")):
                raise  # the model's own error, not one of running it under vmap
            raise LandscapeError(
                f"the vmap strategy cannot run model {model_name(self.model)} "
                f"({type(error).__name__}: {' '.join(str(error).split())[:160]}); its outputs must "
                "be tensors (a cache object is not: use_cache=False) and its forward free of "
                "data-dependent branches; use --strategy sequential"
            ) from None


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
                f"the directions do not match model {model_name(model)}: it has no tensor {missing[0]!r}"
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
            reestimate_batchnorm(
                self.model, (move_to(unpack_batch(batch, "bn")[0], self.device) for batch in self.bn_data)
            )

    @torch.no_grad()
    def _eval_point(self, c: np.ndarray) -> dict[str, Any]:
        self._set_point(c)
        sums = {}
        with _precision(self.plan.precision, self.device):
            for split, batches in self.splits.items():
                loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
                correct = torch.zeros((), dtype=torch.int64, device=self.device)
                n = count = 0
                for batch in batches:
                    inputs, targets = unpack_batch(batch, split)
                    inputs, targets = move_to(inputs, self.device), move_to(targets, self.device)
                    try:
                        outputs = call_model(self.model, inputs)
                    except Exception as error:
                        raise LandscapeError(does_not_fit(f"split {split!r}", self.model, inputs, error)) from None
                    part, counted = loss_sum_count(self.loss_fn, self.loss_name, outputs, targets)
                    loss_sum += part
                    count += counted
                    if self.metric_fn is not None:
                        correct += torch.as_tensor(self.metric_fn(outputs, targets), device=self.device).to(torch.int64)
                    n += len(targets)
                if n == 0:
                    raise LandscapeError(f"split {split!r} yielded no batches")
                sums[split] = (loss_sum, count, correct, n)
        return self._finish(sums)
