"""The CPU's instruction sets, the oneDNN fault on AVX2 kernels and the guard around it.

The fault (landscape/system/cpu.py) corrupts the heap in the weight gradient of small strided 1x1
convolutions with channels-last input when oneDNN runs AVX2 code. `ONEDNN_MAX_CPU_ISA=AVX2`
makes an AVX-512 machine run the same kernels, so these tests exercise it on any x86 CPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import RESNET_MODEL, RESNET_MODEL_KWARGS, digits_splits, plain_evaluate

from landscape.core.directions import point_state, random_directions
from landscape.engine.evaluate import PointEvaluator, plan_evaluation
from landscape.io.checkpoint import build_model, load_checkpoint
from landscape.jobs.train import _augment
from landscape.models import create_model
from landscape.system.cpu import CpuInfo, affected_convs, onednn_safe, standard_layout

ROOT = Path(__file__).resolve().parents[1]
AVX2_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
x86 = pytest.mark.skipif(
    not (torch.backends.mkldnn.is_available() and os.uname().machine in ("x86_64", "AMD64")),
    reason="the oneDNN AVX2 kernels exist on x86-64 builds only",
)


def _run_python(code: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter with `env` added (the ISA limit is read at start-up)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env={**os.environ, **env}, cwd=ROOT,
        capture_output=True, text=True, timeout=timeout,
    )


def test_cpu_info_reads_flags_and_isa_limits() -> None:
    flags = frozenset({"avx2", "avx512f", "avx512_bf16"})
    assert CpuInfo("x", flags, "AVX512", "").native_bf16
    assert CpuInfo("x", flags, "AVX512", "").onednn_avx512
    limited = CpuInfo("x", flags, "AVX2", "AVX2")
    assert not limited.native_bf16 and not limited.onednn_avx512
    assert not CpuInfo("x", frozenset({"avx2", "avx512f"}), "AVX512", "").native_bf16
    assert CpuInfo("x", frozenset({"avx2"}), "AVX2", "").hardware_isa == "AVX2"
    assert "bf16 emulated" in limited.describe()


def test_augmented_batches_have_plain_layout() -> None:
    # one channel: permute-and-back gives strides that `.contiguous()` accepts but that select
    # the channels-last kernels downstream
    x = torch.randn(16, 1, 8, 8)
    out = _augment(x, "shift", torch.Generator().manual_seed(0))
    assert out.stride() == (64, 64, 8, 1)
    odd = torch.empty_strided((16, 1, 8, 8), (64, 1, 8, 1)).copy_(x)
    assert odd.is_contiguous() and standard_layout(odd).stride() == (64, 64, 8, 1)
    assert torch.equal(standard_layout(odd), odd)


def test_affected_convs_are_the_small_strided_1x1_ones() -> None:
    net = create_model(RESNET_MODEL, in_channels=1, num_classes=10, **RESNET_MODEL_KWARGS)
    found = affected_convs(net)
    # resnet8 at width 4: only the 4 -> 8 projection shortcut of stage 2 (stage 3's has 8 inputs)
    assert [(c.in_channels, c.out_channels, c.stride) for c in found] == [(4, 8, (2, 2))]
    assert affected_convs(create_model("resnet20", in_channels=3, num_classes=10)) == []


GUARDED_GRADIENT = """
    import torch
    from landscape.system.cpu import onednn_safe
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 8, 1, stride=2, bias=False)
    for step in range(200):
        x = torch.randn(64, 4, 8, 8).contiguous(memory_format=torch.channels_last)
        conv.weight.grad = None
        with onednn_safe(conv) as guarded:
            conv(x).square().sum().backward()
    assert guarded == 1
    got = conv.weight.grad.clone()
    with torch.backends.mkldnn.flags(enabled=False):
        conv.weight.grad = None
        conv(x).square().sum().backward()
    torch.testing.assert_close(got, conv.weight.grad, rtol=1e-5, atol=1e-6)
    print("guarded ok")
"""


@x86
def test_guard_keeps_avx2_weight_gradients_safe_and_exact() -> None:
    """Without the guard this process aborts (heap corruption); with it the gradient is exact."""
    proc = _run_python(GUARDED_GRADIENT, AVX2_ENV)
    assert proc.returncode == 0 and "guarded ok" in proc.stdout, proc.stderr[-2000:]


@x86
def test_the_upstream_fault_still_exists_without_the_guard() -> None:
    """The plain-torch reproduction crashes: the guard is still needed with this torch."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "repro_onednn_1x1_bwd.py")],
        env={**os.environ, **AVX2_ENV}, capture_output=True, text=True, timeout=240,
    )
    if proc.returncode == 0:
        pytest.skip(f"torch {torch.__version__} no longer shows the oneDNN fault; the guard may go")
    assert proc.returncode < 0 or proc.returncode == 134, (proc.returncode, proc.stderr[-500:])
    # the layouts that the guard switches to run clean in the same environment
    clean = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "repro_onednn_1x1_bwd.py"), "--layout", "nchw"],
        env={**os.environ, **AVX2_ENV}, capture_output=True, text=True, timeout=240,
    )
    assert clean.returncode == 0, clean.stderr[-500:]


@x86
def test_training_a_resnet_on_avx2_kernels_completes(tmp_path: Path) -> None:
    """The reported crash: resnet8 (width 4) on digits, one thread, oneDNN limited to AVX2.

    Run once as shipped and once with the old channels-last augmentation, so that the guard in
    `train` is what keeps the second run alive.
    """
    code = """
        import sys, torch
        import landscape.jobs.train as T
        if sys.argv[1] == "channels-last":
            plain = T._augment
            T._augment = lambda x, kind, g: torch.empty_strided(x.shape, (64, 1, 8, 1)).copy_(plain(x, kind, g))
        ckpt = T.train(T.TrainConfig(model="resnet8", model_kwargs={"width": 4}, data="digits",
                                     epochs=2, seed=0, device="cpu", quiet=True))
        print("trained", ckpt.metrics["test_acc"])
    """
    for variant in ("as-shipped", "channels-last"):
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), variant], env={**os.environ, **AVX2_ENV},
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0 and "trained" in proc.stdout, (variant, proc.stderr[-2000:])


def test_evaluation_is_the_same_with_and_without_onednn(tiny_resnet_ckpt: Path) -> None:
    """The engine's CPU path (channels-last, folded BatchNorm, oneDNN convolutions) against the
    same plan with oneDNN off, and both against plain PyTorch."""
    ckpt = load_checkpoint(tiny_resnet_ckpt)
    model = build_model(ckpt)
    s = digits_splits(200)
    d = random_directions(model, seed=5)
    coords = np.array([[0.0, 0.0], [0.4, -0.3], [-0.8, 0.6]])
    plan = plan_evaluation(model, torch.device("cpu"), len(coords), sample=s["train"][0])
    assert plan.strategy == "sequential" and plan.channels_last and plan.fold_bn
    with_onednn = PointEvaluator(model, d, s, plan)(coords)
    with torch.backends.mkldnn.flags(enabled=False):
        without = PointEvaluator(model, d, s, plan)(coords)
    for i, c in enumerate(coords):
        ref = plain_evaluate(ckpt.model, ckpt.model_kwargs, point_state(ckpt.state_dict, d, *c), s)
        for name, want in ref.items():
            assert float(with_onednn[name][i]) == pytest.approx(want, rel=1e-5), (name, i)
            assert float(without[name][i]) == pytest.approx(want, rel=1e-5), (name, i)


def test_guard_changes_no_value_and_only_while_recording_gradients() -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 8, 1, stride=2, bias=False)
    x = torch.randn(8, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    seen: list[bool] = []
    conv.register_forward_hook(lambda m, a, out: seen.append(a[0].is_contiguous()))
    with onednn_safe(conv):
        y = conv(x)
        with torch.no_grad():
            conv(x)
    conv(x)
    # guarded with gradients: plain layout; without gradients or after the block: channels-last
    assert seen == [True, False, False]
    torch.testing.assert_close(y, conv(x), rtol=1e-6, atol=1e-6)


@x86
def test_bf16_without_native_support_is_measured_and_warned(tiny_resnet_ckpt: Path, tmp_path: Path) -> None:
    """With oneDNN limited to AVX2 bf16 is emulated: the run measures it against fp32 at the
    first point, records the ratio and warns in one line when bf16 is the slower."""
    import h5py

    out = tmp_path / "bf16.h5"
    proc = subprocess.run(
        [sys.executable, "-m", "landscape", "surface", "--ckpt", str(tiny_resnet_ckpt), "--x=-1:1:3",
         "--max-samples", "200", "--precision", "bf16", "--device", "cpu", "--quiet", "--out", str(out)],
        env={**os.environ, **AVX2_ENV}, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    with h5py.File(out, "r") as f:
        slowdown = float(f.attrs["bf16_slowdown"])
        runs = f.attrs["runs"]
    assert slowdown > 0
    warnings = [line for line in proc.stderr.splitlines() if "bf16 measured" in line]
    assert len(warnings) == (1 if slowdown > 1 else 0), proc.stderr
    if warnings:
        assert f"{slowdown:.1f}x slower" in warnings[0] and "bf16 emulated" in warnings[0]
    assert "oneDNN AVX2" in str(runs)  # the run records which kernels computed it
