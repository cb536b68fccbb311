"""What a checkpoint file may hold before anything is computed from it: bounded, dense, real tensors.

A file is data, and small data must not turn into large work: a zip archive whose records are
compressed (torch writes them stored) can expand 1000-fold inside `torch.load`, and a tensor can
claim more values than its storage holds (a stride-0 view), which the first copy materializes.
`check_archive` runs on the file before `torch.load`; `check_tensors` on the loaded state dict
before any model sees it. Each refusal is one line naming the file and the entry.

Example:
    >>> check_tensors({"w": torch.zeros(3)}, "a.pt")
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import LandscapeError

__all__ = ["check_archive", "check_tensors"]

_SLACK = 1 << 16  # headers, names and the pickle itself beside the tensor bytes


def check_archive(path: Path) -> None:
    """Refuse a zip checkpoint whose records expand beyond the file's own size.

    torch.save writes every record uncompressed (stored); a compressed record is not from
    torch.save, and its expanded size would be allocated by torch.load before any check.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return  # not a zip archive: the legacy format reads each storage from the file itself
    size = path.stat().st_size
    expanded = sum(i.file_size for i in infos)
    if expanded > size + _SLACK:
        raise LandscapeError(
            f"checkpoint {path} is a {size / 1e6:.3g} MB archive whose records expand to "
            f"{expanded / 1e6:.3g} MB (compressed records: torch.save never writes them); "
            "refused before loading: re-save it with torch.save"
        )


def check_tensors(state: Mapping[object, object], path: Path | str, file_size: int | None = None) -> None:
    """Refuse meta, sparse, quantized or complex tensors, views claiming more values than their
    storage holds, and (given `file_size`) storages larger than the file they came from."""
    total = 0
    seen: set[int] = set()
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        name = f"checkpoint {path}: entry {str(key)[:80]!r}"
        if value.is_meta:
            raise LandscapeError(
                f"{name} is a meta tensor (a shape with no values, saved from a model built on "
                "the meta device); save the weights of a real model"
            )
        if value.layout != torch.strided:
            raise LandscapeError(
                f"{name} is a {str(value.layout).removeprefix('torch.')} tensor; weights must be "
                "dense: save tensor.to_dense()"
            )
        if value.is_quantized or value.is_complex():
            raise LandscapeError(
                f"{name} has dtype {str(value.dtype).removeprefix('torch.')}; weights must be "
                "real numbers (float, or integer buffers): convert them before saving"
            )
        storage = value.untyped_storage()
        if value.numel() * value.element_size() > storage.nbytes():
            raise LandscapeError(
                f"{name} claims {value.numel()} values but its storage holds "
                f"{storage.nbytes() // max(value.element_size(), 1)} (a broadcast view); "
                "save tensor.contiguous()"
            )
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    if file_size is not None and total > file_size + _SLACK:
        raise LandscapeError(
            f"checkpoint {path} holds {total / 1e6:.3g} MB of tensors in a {file_size / 1e6:.3g} MB "
            "file; it is damaged or hand-made: re-save it with torch.save"
        )
