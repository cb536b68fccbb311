"""Choosing the torch device: `auto`, `cpu`, `cuda`, `cuda:N`."""

from __future__ import annotations

import torch

from .errors import LandscapeError

__all__ = ["resolve_device"]


def resolve_device(spec: str = "auto", local_rank: int = 0) -> torch.device:
    """Return the device for `spec`; with several GPUs, `auto`/`cuda` take `local_rank % n`."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise LandscapeError(
                f"--device {spec} was asked for but torch sees no CUDA device "
                f"(torch {torch.__version__}); use --device cpu or install a CUDA build of torch"
            )
        if spec == "cuda":
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        try:
            return torch.device(spec)
        except RuntimeError:
            raise LandscapeError(f"bad --device {spec!r}; expected auto, cpu, cuda or cuda:N") from None
    raise LandscapeError(f"bad --device {spec!r}; expected auto, cpu, cuda or cuda:N")
