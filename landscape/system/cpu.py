"""What this CPU's kernels can do, and the one oneDNN fault we route around.

Two facts decide how fast and how safely torch runs on a CPU, and both depend on the machine,
not on the code: the instruction set the kernels use (AVX2 or AVX-512; `ONEDNN_MAX_CPU_ISA`
and `ATEN_CPU_CAPABILITY` can lower it) and whether bf16 is native (AVX512_BF16 or AMX) or
emulated, which on an AVX2-only CPU was measured 7-12x slower than fp32.

The fault: oneDNN 3.12 (torch 2.13.0 and 2.14.1) computes the weight gradient of a 1x1
convolution with stride > 1, fewer than 8 input channels and a channels-last input with its
`jit_1x1:avx2` kernel, which writes 8 bytes *before* a heap block (valgrind: "Invalid write of
size 8 ... 16 bytes before a block of size 32", inside
`jit_avx2_1x1_convolution_bwd_weights_t::execute_backward_weights`). glibc then aborts
("corrupted double-linked list", "munmap_chunk(): invalid pointer") or the process segfaults,
on one thread almost always. It happens only where oneDNN runs AVX2 code (an AVX2-only CPU, or
`ONEDNN_MAX_CPU_ISA=AVX2`); the AVX-512 kernel and the plain (NCHW) layout are not affected.
`scripts/repro_onednn_1x1_bwd.py` reproduces it with plain torch. `onednn_safe` gives those
convolutions a plain-layout input while gradients are computed: the same values, another kernel.

Example:
    >>> with onednn_safe(model):  # doctest: +SKIP
    ...     loss.backward()
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = [
    "CpuInfo",
    "cpu_info",
    "affected_convs",
    "guard_onednn",
    "onednn_safe",
    "standard_layout",
    "time_call",
]

# oneDNN's ISA names, lowest first (ONEDNN_MAX_CPU_ISA takes one of them)
_ONEDNN_ISAS = (
    "SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX",
    "AVX10_1_512_AMX_FP16", "ALL",
)
_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class CpuInfo:
    """The instruction sets the CPU has and the ones torch's kernels are allowed to use."""

    model: str
    flags: frozenset[str]
    aten: str  # ATen's dispatch level: DEFAULT, AVX2, AVX512
    onednn_max_isa: str  # ONEDNN_MAX_CPU_ISA, or "" when not limited

    @property
    def hardware_isa(self) -> str:
        """The widest vector instruction set the processor reports."""
        if "avx512f" in self.flags:
            return "AVX-512"
        if "avx2" in self.flags:
            return "AVX2"
        return "SSE/AVX"

    @property
    def onednn_avx512(self) -> bool:
        """Whether oneDNN may run AVX-512 kernels (hardware and ONEDNN_MAX_CPU_ISA allow it)."""
        return self.hardware_isa == "AVX-512" and _isa_at_least(self.onednn_max_isa, "AVX512_CORE")

    @property
    def native_bf16(self) -> bool:
        """Whether bf16 matrix and convolution kernels run natively, not emulated in fp32."""
        has = any(flag in self.flags for flag in _NATIVE_BF16_FLAGS)
        return has and _isa_at_least(self.onednn_max_isa, "AVX512_CORE_BF16")

    def describe(self) -> str:
        """One line, e.g. `AMD EPYC: AVX-512 (kernels: ATen AVX512, oneDNN all), bf16 native`."""
        limit = self.onednn_max_isa or "all"
        bf16 = "native" if self.native_bf16 else "emulated"
        return f"{self.model}: {self.hardware_isa} (kernels: ATen {self.aten}, oneDNN {limit}), bf16 {bf16}"


def _isa_at_least(limit: str, isa: str) -> bool:
    """Whether an ONEDNN_MAX_CPU_ISA value `limit` ("" = unlimited) admits `isa`."""
    if not limit:
        return True
    name = limit.upper()
    if name not in _ONEDNN_ISAS:
        return True  # an ISA name this table does not know: assume newer, not limiting
    return _ONEDNN_ISAS.index(name) >= _ONEDNN_ISAS.index(isa)


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first processor in /proc/cpuinfo; empty where there is none."""
    model, flags = "CPU", frozenset()
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "CPU":
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return model, flags


def cpu_info() -> CpuInfo:
    """This machine's CPU as torch will use it (reads /proc/cpuinfo and the ISA limits)."""
    model, flags = _cpuinfo()
    try:
        aten = torch.backends.cpu.get_cpu_capability()
    except Exception:  # very old torch: no such query
        aten = "unknown"
    return CpuInfo(model, flags, aten, os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip())


def affected_convs(model: nn.Module) -> list[nn.Conv2d]:
    """The convolutions whose weight gradient hits the oneDNN fault: 1x1, stride > 1, < 8 inputs."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
        and tuple(m.kernel_size) == (1, 1)
        and max(m.stride) > 1
        and m.in_channels // m.groups < 8
    ]


def standard_layout(x: torch.Tensor) -> torch.Tensor:
    """`x` with plain row-major (NCHW) strides.

    `Tensor.contiguous()` is not enough: with one channel, a channels-last tensor is also
    "contiguous", and convolutions then pick the channels-last kernels.
    """
    if x.dim() != 4 or x.stride() == _row_major_strides(x.shape):
        return x
    return x.clone(memory_format=torch.contiguous_format)


def _row_major_strides(shape: torch.Size) -> tuple[int, ...]:
    """The strides of a freshly allocated (NCHW, row-major) tensor of `shape`."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def _plain_input(module: nn.Module, args: tuple) -> tuple | None:
    if not torch.is_grad_enabled() or not args or not isinstance(args[0], torch.Tensor):
        return None
    x = args[0]
    if x.device.type != "cpu":
        return None
    return (standard_layout(x), *args[1:])


def guard_onednn(model: nn.Module) -> list[RemovableHandle]:
    """Route the weight gradients of `affected_convs(model)` to oneDNN's plain-layout kernel.

    Those convolutions get an NCHW input whenever gradients are being recorded on the CPU;
    nothing else changes (forward-only passes keep channels-last). For a model the caller owns
    (a training run's, a Hessian operator's copy); returns the hooks' handles.
    """
    return [conv.register_forward_pre_hook(_plain_input) for conv in affected_convs(model)]


@contextlib.contextmanager
def onednn_safe(model: nn.Module) -> Iterator[int]:
    """`guard_onednn` for the duration of a `with` block; yields how many convolutions it guards."""
    handles = guard_onednn(model)
    try:
        yield len(handles)
    finally:
        for handle in handles:
            handle.remove()


def time_call(fn: Callable[[], object], repeats: int = 1) -> float:
    """Seconds of the fastest of `repeats` calls of `fn` (after the caller's warm-up)."""
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
