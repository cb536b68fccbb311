"""`landscape info`: a readable summary of a checkpoint or a surface file."""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import Any

from ..errors import LandscapeError
from ..system.text import printable

__all__ = ["describe", "describe_machine", "is_hdf5", "plan_summary", "surface_summary"]


def is_hdf5(path: str | Path) -> bool:
    """True when the file starts with the HDF5 signature."""
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False


def describe(
    path: str | Path,
    model: str | None = None,
    as_json: bool = False,
    model_kwargs: dict[str, Any] | None = None,
) -> str:
    """Summarize `path` (checkpoint or surface file) as text or JSON."""
    path = Path(path)
    if not path.exists():
        raise LandscapeError(f"{path} does not exist")
    if is_hdf5(path):
        try:
            info = surface_summary(path)
        except LandscapeError as error:
            info = _direction_summary(path, error)  # the paper's direction file (--dirs), else the error
        if isinstance(info.get("plan"), dict) and not as_json:
            plan = info.pop("plan")
            info.update(plan_summary(plan))
        if isinstance(info.get("metrics"), dict) and not as_json:
            info["metrics"] = _short_topology(info["metrics"])
        hess = info.get("hessian")
        if isinstance(hess, dict) and isinstance(hess.get("density"), dict) and not as_json:
            info["hessian"] = {**hess, "density": _density_line(hess["density"])}
    else:
        info = _checkpoint_summary(path, model, model_kwargs)
    if as_json:  # strict JSON: a NaN or infinity from a file is written as null
        return json.dumps(_strict(info), indent=2, default=str, allow_nan=False)
    return _format(info)


def _strict(value: Any) -> Any:
    """`value` with every non-finite number None and numpy scalars plain numbers (JSON-safe)."""
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    number = float(value)
    return number if math.isfinite(number) else None


def surface_summary(path: str | Path) -> dict[str, Any]:
    """Metadata and progress of a surface file, for `landscape info`."""
    from ..core.preview import preview, preview_note
    from ..io.storage import read_surface

    s = read_surface(path)
    info: dict[str, Any] = {"file": str(path), "kind": "surface", "source": s.source}
    info["grid"] = "x".join(str(n) for n in s.shape) + f" ({'1D' if s.ndim == 1 else '2D'})"
    info["x"] = f"{s.x[0]:g}..{s.x[-1]:g} ({len(s.x)})"
    if s.y is not None:
        info["y"] = f"{s.y[0]:g}..{s.y[-1]:g} ({len(s.y)})"
    info["points done"] = f"{s.done}/{s.computed.size} ({100.0 * s.done / s.computed.size:.1f}%)"
    note = preview_note(preview(s))
    if note:  # what plot and report draw of a file still being computed
        info["preview"] = note.removeprefix("preview: ")
    info["arrays"] = ", ".join(s.surfaces())
    if s.n_frames:  # frames through training (landscape.jobs.frames): one line, not the per-frame list
        epochs = [m.get("epoch") for m in s.attrs.get("frames") or [] if isinstance(m, dict)]
        info["frames"] = f"{s.n_frames} (epochs {', '.join(map(str, epochs))}); the root is the last frame"
    skip = {"settings", "runs", "metrics", "format", "frames", "frames_config"}
    for k, v in s.attrs.items():
        if k not in skip:
            info[k] = v
    if s.metrics:
        info["metrics"] = s.metrics
    runs = s.attrs.get("runs") or []
    if runs:
        info["runs"] = {
            f"run {i + 1}": f"{r.get('points', '?')} points in {_number(r.get('seconds'), '.1f')}s "
            f"({_number(r.get('points_per_second'), '.3g')} points/s) on {r.get('ranks', 1)} rank(s), "
            f"{r.get('device', '?')}"
            for i, r in enumerate(runs)
        }
    return info


def _number(value: Any, spec: str) -> str:
    """`value` formatted with `spec` when it is a number (a hand-made file may hold anything)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, spec)
    return "?" if value is None else str(value)


def plan_summary(meta: dict[str, Any]) -> dict[str, str]:
    """A surface file's `plan` attribute in a line or two: the plan, and its trial.

    Example:
        >>> plan_summary({"plan_strategy": "vmap", "plan_points_per_pass": 32, "plan_batch_size": 128})
        {'plan': 'vmap, 32 points/pass, batch 128'}
    """
    from dataclasses import fields

    from ..engine.planning import EvalPlan

    known = {f.name for f in fields(EvalPlan)}
    values = {k[5:]: v for k, v in meta.items() if k.startswith("plan_") and k[5:] in known}
    try:
        plan = EvalPlan(**values)
        line = plan.describe() + (", torch.compile" if plan.compile else "")
        line += f" ({plan.reason})" if plan.reason else ""
    except (TypeError, ValueError):  # a hand-made or damaged attribute: show it as stored
        return {"plan": json.dumps(meta, default=str)}
    out = {"plan": line}
    trial = values.get("trial")
    if isinstance(trial, dict):
        out["plan trial"] = _trial_line(trial)
    return out


def _short_topology(metrics: dict[str, Any]) -> dict[str, Any]:
    """The topology metrics (`landscape.core.topology`) folded into one `topology` line for text."""
    from ..core.topology import topology_line

    line = topology_line(metrics)
    if line is None:
        return metrics
    keys = ("local_minima", "persistence", "centre_basin_fraction", "centre_basin_level", "centre_basin_depth")
    out = {k: v for k, v in metrics.items() if k not in keys}
    out["topology"] = line
    return out


def _density_line(d: dict[str, Any]) -> str:
    """A stored spectral density in a line (its nodes, weights and grid are for --json and plot)."""
    support = d.get("support")
    where = f", nodes {support[0]:.4g} .. {support[1]:.4g}" if isinstance(support, list) and len(support) == 2 else ""
    sigma = d.get("sigma")
    smooth = f", sigma {sigma:.3g}" if isinstance(sigma, (int, float)) else ""
    return f"{d.get('probes', '?')} probes x {d.get('steps', '?')} Lanczos steps{where}{smooth}"


def _trial_line(trial: dict[str, Any]) -> str:
    """'chose sequential, batch 64 of 3: ... 0.012 s/pt; ...' or 'skipped: why'."""
    if "skipped" in trial:
        return f"skipped: {trial['skipped']}"
    if "unfinished" in trial:
        return f"unfinished: {trial['unfinished']}"
    parts = []
    candidates = trial.get("candidates")
    for c in candidates if isinstance(candidates, list) else []:
        if not isinstance(c, dict):
            continue
        spp = c.get("seconds_per_point")
        timing = f"{spp:.4g} s/pt" if isinstance(spp, (int, float)) else c.get("note", "not timed")
        parts.append(f"{c.get('plan', '?')}: {timing} ({c.get('points', '?')} pts)")
    seconds = trial.get("seconds")
    took = f" in {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
    return f"chose {trial.get('chosen', '?')}{took}; " + "; ".join(parts)


def describe_machine(as_json: bool = False) -> str:
    """torch's version, the devices it sees and the CPU's instruction sets (AVX2/AVX-512, bf16)."""
    import torch

    from ..system.cpu import cpu_info
    from ..system.threads import machine_cpus

    cpu = cpu_info()
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "cpu": cpu.describe(),
        "cores": machine_cpus().describe(),  # what a computing command's threads follow
        "threads": torch.get_num_threads(),
        "cuda": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available() else "none",
    }
    return json.dumps(info, indent=2) if as_json else _format(info)


def _checkpoint_summary(
    path: Path, model: str | None, model_kwargs: dict[str, Any] | None = None
) -> dict[str, Any]:
    from ..io.checkpoint import load_checkpoint
    from ..system.hooks import is_torchscript

    if is_torchscript(path):
        return _torchscript_summary(path)
    ckpt = load_checkpoint(path, model=model, model_kwargs=model_kwargs)
    if model is not None or model_kwargs:
        # the user named the architecture: check that the weights fit it (raises one line)
        from ..io.checkpoint import build_model

        build_model(ckpt)
    n_params = sum(v.numel() for k, v in ckpt.state_dict.items() if v.is_floating_point())
    return {
        "file": str(path),
        "kind": "checkpoint",
        "source": ckpt.source,
        "version": ckpt.version,
        "model": ckpt.model,
        "model_kwargs": ckpt.model_kwargs,
        "epoch": ckpt.epoch,
        "data": ckpt.data,
        "metrics": ckpt.metrics,
        "state_entries": len(ckpt.state_dict),
        "state_floats": n_params,
    }


def _direction_summary(path: Path, surface_error: LandscapeError) -> dict[str, Any]:
    """What a direction file of the paper's code holds (`xdirection`/`ydirection`, the file
    `surface --dirs` reads), read through the same validated reader; if `path` is not one,
    the surface reader's refusal stands."""
    from ..io.storage import read_directions

    try:
        x, y, meta = read_directions(path)
    except LandscapeError:
        raise surface_error from None
    if not isinstance(x, list):  # ours: a surface file, which the surface reader refused
        raise surface_error from None
    info: dict[str, Any] = {
        "file": str(path),
        "kind": "direction file (the paper's layout: xdirection/0..N-1, in module order)",
        "directions": "x and y (2D)" if y is not None else "x (1D)",
        "tensors per direction": len(x),
        "floats per direction": sum(int(t.numel()) for t in x),
        "use": f"landscape surface --ckpt CKPT --dirs {path} (tensors matched to the model by order)",
    }
    if "explained_variance_ratio" in meta:
        info["explained variance ratio (PCA)"] = ", ".join(f"{v:.4g}" for v in meta["explained_variance_ratio"])
    return info


def _torchscript_summary(path: Path) -> dict[str, Any]:
    """What a TorchScript archive holds, read from its zip directory: loading it would compile
    and run its code, and `info` only looks at files."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return {
        "file": str(path),
        "kind": "checkpoint",
        "source": "torchscript (a model with its own code: not loaded by info)",
        "archive entries": len(names),
        "tensor records": sum("/data/" in n for n in names),
    }


def _format(info: dict[str, Any], indent: int = 0) -> str:
    """`key: value` lines, nested dicts indented; text from the file with controls escaped."""
    lines = []
    pad = "  " * indent
    for key, value in info.items():
        name = printable(str(key))
        if isinstance(value, dict) and value:
            lines.append(f"{pad}{name}:")
            lines.append(_format(value, indent + 1))
        elif isinstance(value, float):
            lines.append(f"{pad}{name}: {value:.6g}")
        else:
            lines.append(f"{pad}{name}: {printable(str(value))}")
    return "\n".join(lines)
