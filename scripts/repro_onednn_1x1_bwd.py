"""Heap corruption in oneDNN's AVX2 1x1-convolution weight gradient: a plain-torch reproduction.

Ready to send upstream; it imports nothing but torch.

    ONEDNN_MAX_CPU_ISA=AVX2 python scripts/repro_onednn_1x1_bwd.py            # aborts or segfaults
    ONEDNN_MAX_CPU_ISA=AVX2 python scripts/repro_onednn_1x1_bwd.py --layout nchw   # runs clean
    ONEDNN_MAX_CPU_ISA=AVX2 python scripts/repro_onednn_1x1_bwd.py --no-mkldnn     # runs clean

On an AVX2-only CPU (no AVX-512) the environment variable is not needed. Seen with torch 2.13.0+cpu
and 2.14.1+cu130 (both bundle oneDNN v3.12.0, git 80afa710) on an AMD EPYC (Zen 4) limited to
AVX2, and on a 2-core AVX2-only AMD EPYC without the variable.

What goes wrong: `Conv2d(4, 8, kernel_size=1, stride=2)` on a channels-last (NHWC) input of
shape (64, 4, 8, 8), one intra-op thread. The forward pass runs `brgconv_1x1:avx2`; the weight
gradient runs `jit_1x1:avx2` backward_weights (ONEDNN_VERBOSE=1 shows
`src:acdb wei:ABcd8b8a ... mb64_ic4oc8_ih8oh4kh1sh2..._iw8ow4kw1sw2...`). Under valgrind:

    Invalid write of size 8
       at 0x...: ???   (JIT code)
       by dnnl::impl::cpu::x64::jit_avx2_1x1_convolution_bwd_weights_t::execute_backward_weights
          (exec_ctx_t const&) const::{lambda(int, int)#...}
       by dnnl::impl::parallel(int, std::function<void (int, int)> const&)
       by at::native::mkldnn_convolution_backward_weights(...)
     Address 0x... is 16 bytes before a block of size 32 alloc'd

glibc then reports "corrupted double-linked list", "munmap_chunk(): invalid pointer",
"double free or corruption (out)" or "free(): invalid size" and aborts, or the process
segfaults. Scope found by bisection: kernel 1x1 only (3x3 is fine), stride 2 or 3 (stride 1
is fine), input channels 2 to 6 crashed (7, 8 and more did not in 100 steps; the AVX2 vector
holds 8 floats), even spatial sizes >= 6, any
batch size above 1, one thread (two threads: no crash seen), channels-last input only, weight
gradient only (the forward pass and the input gradient are fine), the avx2 kernel only (the
avx512_core kernel on the same machine is fine).

A one-channel channels-last tensor is easy to make by accident: `x.permute(0, 2, 3, 1)` and back
gives strides (64, 1, 8, 1), which `is_contiguous()` accepts, so `.contiguous()` keeps it and the
convolutions downstream pick the channels-last kernels.
"""

from __future__ import annotations

import argparse
import sys

import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layout", choices=("nhwc", "nchw"), default="nhwc", help="input memory layout")
    ap.add_argument("--no-mkldnn", action="store_true", help="torch.backends.mkldnn.enabled = False")
    ap.add_argument("--in-channels", type=int, default=4)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.backends.mkldnn.enabled = not args.no_mkldnn
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(args.in_channels, 8, kernel_size=1, stride=2, bias=False)
    fmt = torch.channels_last if args.layout == "nhwc" else torch.contiguous_format
    for _ in range(args.steps):
        x = torch.randn(64, args.in_channels, 8, 8).contiguous(memory_format=fmt)
        conv(x).sum().backward()
    print(f"torch {torch.__version__}: {args.steps} weight gradients, no fault", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
