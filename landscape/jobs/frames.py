"""Landscapes through training: one surface per snapshot, every frame in one file.

`landscape surface --ckpt snapshots/*.pt --frames` (or `compute_frames(cfg, executor)`) computes
the surface around each snapshot's own weights. The directions are drawn ONCE (one seed: the
Gaussian draw depends only on the tensor shapes, which every frame shares) and filter-normalized
per frame against that frame's weights, as the paper's filter normalization requires: a frame
then shows the landscape at that epoch's scale of the weights, and frames differ only in where
they are, not in which random plane they cut. With `--dirs FILE` every frame moves along the
same stored tensors (no renormalization).

Each frame is an ordinary surface job (resumable, MPI-sharded, exact) written to a work file
`.<out name>.frames/frame_NNNN.h5` beside the output; when all are complete they are assembled
into ONE file, written atomically, and the work files are removed. A killed run resumes from the
work files; a finished file made with the same settings is left as it is.

The frames file (schema version 2; `landscape.io.schema` validates it):
- its root is the LAST frame's surface, exactly as `landscape surface` writes one (so `info`,
  `compare`, `--dirs` and the paper's readers see the trained net's surface);
- group `frames`: every result array of every frame, `frames/<array>` float64 [n_frames, *grid],
  and `frames/computed` uint8 [n_frames, *grid];
- attribute `frames`: per frame, its checkpoint, checksum, epoch, weights hash and metrics;
  `frames_config`: the settings a rerun must match.

Example:
    >>> cfg = SurfaceConfig(ckpt=snaps[0], frames=tuple(snaps), x="-1:1:11", y="-1:1:11")
    >>> path = compute_frames(cfg, SerialExecutor(), run_config)
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LandscapeError
from ..io.checkpoint import file_sha256, load_checkpoint
from ..io.outputs import atomic_write, check_output
from ..io.schema import FRAMES_VERSION
from ..system.text import printable
from .executor import Executor

__all__ = ["FRAMES_VERSION", "compute_frames", "frames_out", "check_frames", "frame_work_dir"]

# the options a rerun must match (a finished file with these and the same checkpoints is kept)
_CONFIG_KEYS = ("x", "y", "dir_type", "norm", "ignore", "seed", "same_dir", "dirs", "data", "data_test",
                "splits", "max_samples", "precision", "bn", "loss", "curvature")


def frames_out(cfg: Any) -> Path:
    """The output file: `--out`, else `surfaces/<snapshots' folder>_frames.h5`."""
    if cfg.out:
        return Path(cfg.out)
    folder = Path(cfg.frames[0]).resolve().parent.name or Path(cfg.frames[0]).stem
    return Path("surfaces") / f"{folder}_frames{'_1d' if cfg.y is None else ''}.h5"


def frame_work_dir(out: Path) -> Path:
    """Where the frames are computed before they are assembled: `.<out name>.frames/`."""
    return out.with_name(f".{out.name}.frames")


def check_frames(cfg: Any) -> list[Any]:
    """Refuse, in one line, what frames cannot be made of; return the loaded checkpoints."""
    if len(cfg.frames) < 2:
        raise LandscapeError(
            f"--frames needs 2 or more checkpoints (one per frame), got {len(cfg.frames)}: give "
            "--ckpt snapshots/*.pt (landscape train --save-every K writes them)"
        )
    if cfg.ckpt2 or cfg.ckpt3 or cfg.pca or cfg.dirs == "hessian" or getattr(cfg, "curve", None):
        raise LandscapeError(
            "--frames takes random directions (drawn once, normalized per frame) or --dirs FILE; "
            "--ckpt2/--ckpt3/--pca/--dirs hessian make directions from each frame's own weights, "
            "so the frames would not share a plane: drop them"
        )
    ckpts = [load_checkpoint(p, model=cfg.model) for p in cfg.frames]
    first = ckpts[0]
    shapes = {k: tuple(v.shape) for k, v in first.state_dict.items()}
    for i, (path, c) in enumerate(zip(cfg.frames, ckpts)):
        other = {k: tuple(v.shape) for k, v in c.state_dict.items()}
        if c.model != first.model or dict(c.model_kwargs or {}) != dict(first.model_kwargs or {}) or other != shapes:
            raise LandscapeError(
                f"frame {i} ({printable(str(path))}) is a {c.model} {c.model_kwargs or {}}, frame 0 "
                f"({printable(str(cfg.frames[0]))}) a {first.model} {first.model_kwargs or {}}: every frame "
                "must be a snapshot of one architecture (give the snapshots of one training run)"
            )
    return ckpts


def _config(cfg: Any) -> dict[str, Any]:
    return {k: getattr(cfg, k) for k in _CONFIG_KEYS}


def _frame_meta(paths: Sequence[str], ckpts: Sequence[Any]) -> list[dict[str, Any]]:
    return [{"checkpoint": str(p), "checkpoint_sha256": file_sha256(p),
             "epoch": -1 if c.epoch is None else int(c.epoch)} for p, c in zip(paths, ckpts)]


def _finished(out: Path, cfg: Any, meta: list[dict[str, Any]]) -> bool:
    """Whether `out` is a frames file of these checkpoints and settings (else refused unless --force)."""
    from ..io.storage import read_surface

    s = read_surface(out)
    stored = s.attrs.get("frames") or []
    same_ckpts = [m.get("checkpoint_sha256") for m in stored] == [m["checkpoint_sha256"] for m in meta]
    same_config = json.loads(json.dumps(s.attrs.get("frames_config"))) == json.loads(json.dumps(_config(cfg)))
    if s.frames is not None and same_ckpts and same_config:
        return True
    raise LandscapeError(
        f"{printable(str(out))} exists and holds other frames (other checkpoints or settings); use "
        "another --out, or --force to start afresh"
    )


def compute_frames(
    cfg: Any, executor: Executor, run_config: Callable[[Any, Executor], Path],
    say: Callable[[str], None] | None = None,
) -> Path:
    """Compute (or resume) one surface per checkpoint of `cfg.frames` with `run_config`
    (`landscape.jobs.compute.run_config`, passed in: compute sits above this module); assemble them
    into one file (see the module docstring); return its path. `say` gets one line per frame."""
    out = frames_out(cfg)
    ckpts = check_frames(cfg)
    meta = _frame_meta(cfg.frames, ckpts)
    if executor.rank == 0:
        check_output(out, "hdf5")
    done = out.exists() and not cfg.force and _finished(out, cfg, meta)
    if done:
        if say:
            say(f"{out}: all {len(meta)} frames are already computed")
        return out
    work = frame_work_dir(out)
    if cfg.force and executor.rank == 0 and work.exists():
        shutil.rmtree(work)
    parts = []
    for i, path in enumerate(cfg.frames):
        part = work / f"frame_{i:04d}.h5"
        if say and executor.rank == 0:
            say(f"frame {i + 1}/{len(meta)}: {path}")
        frame_cfg = replace(cfg, ckpt=str(path), frames=(), out=str(part), force=False)
        parts.append(run_config(frame_cfg, executor))
    if executor.rank == 0:
        _assemble(out, parts, meta, _config(cfg))
        shutil.rmtree(work, ignore_errors=True)
    executor.sync()
    return out


def _assemble(out: Path, parts: Sequence[Path], meta: list[dict[str, Any]], config: dict[str, Any]) -> None:
    """The frames file: the last frame's file, plus the `frames` group and attributes."""
    import h5py

    from ..io.storage import read_surface

    surfaces = [read_surface(p) for p in parts]
    names = surfaces[-1].surfaces()
    for m, s in zip(meta, surfaces):
        m["metrics"] = s.metrics
        m["weights_sha256"] = s.attrs.get("weights_sha256")
    image = io.BytesIO(Path(parts[-1]).read_bytes())
    with h5py.File(image, "r+", locking=False) as f:
        g = f.create_group("frames")
        for name in names:
            g.create_dataset(name, data=np.stack([np.asarray(s.arrays[name], dtype=np.float64) for s in surfaces]))
        g.create_dataset("computed", data=np.stack([s.computed.astype(np.uint8) for s in surfaces]))
        f.attrs["version"] = FRAMES_VERSION
        f.attrs["frames"] = json.dumps(meta)
        f.attrs["frames_config"] = json.dumps(config)
    with atomic_write(out, "write frames file", make_folder=True) as tmp, open(tmp, "wb") as fh:
        fh.write(image.getbuffer())
        fh.flush()
        os.fsync(fh.fileno())
