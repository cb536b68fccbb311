"""Checkpoints that carry their own metadata; loading of bare state dicts and the paper's files.

Format (`torch.save` of a plain dict, loadable with `weights_only=True`):
`format="landscape-checkpoint"`, `version`, `model` (registry name or import path),
`model_kwargs`, `state_dict`, `data` (dataset name, split seed, normalization), `epoch`,
`metrics` (train/test loss and accuracy).

Example:
    >>> ckpt = load_checkpoint("ckpts/resnet20.pt")
    >>> model = build_model(ckpt)
"""

from __future__ import annotations

import collections
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import LandscapeError
from ..system.hooks import is_import_path, one_line, refuse_stored_import_path
from .outputs import atomic_write, check_output
from .tensor_checks import check_archive, check_tensors

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "build_model",
    "load_into",
    "clean_state_dict",
    "fill_batchnorm_counters",
    "file_sha256",
    "check_stored_model",
    "refuse_torchscript",
]

CHECKPOINT_FORMAT = "landscape-checkpoint"
CHECKPOINT_VERSION = 1
_PREFIXES = ("module.", "_orig_mod.")


@dataclass
class Checkpoint:
    """A model's weights plus everything needed to rebuild and evaluate it."""

    model: str | None
    state_dict: dict[str, torch.Tensor]
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    epoch: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)  # training hyper-parameters, if trained here
    version: int = CHECKPOINT_VERSION
    path: str | None = None
    source: str = CHECKPOINT_FORMAT  # or "state_dict", "paper"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "version": self.version,
            "model": self.model,
            "model_kwargs": dict(self.model_kwargs),
            "state_dict": self.state_dict,
            "data": dict(self.data),
            "epoch": self.epoch,
            "metrics": dict(self.metrics),
            "train": dict(self.train),
        }


def save_checkpoint(ckpt: Checkpoint, path: str | Path) -> Path:
    """Write atomically (temporary file, then rename) so a crash or a full disk never leaves half
    a file; a path holding another kind of file (a surface, a plot) is refused."""
    path = Path(path)
    check_output(path, "checkpoint")
    state = {k: v.detach().cpu().clone() for k, v in ckpt.state_dict.items()}
    payload = ckpt.to_dict() | {"state_dict": state}
    buffer = io.BytesIO()  # serialized first: torch.save fails obscurely on a full disk
    torch.save(payload, buffer)
    with atomic_write(path, "write checkpoint", make_folder=True) as tmp, open(tmp, "wb") as f:
        f.write(buffer.getbuffer())
        f.flush()
        os.fsync(f.fileno())
    return path


def clean_state_dict(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Strip `module.` (DataParallel) and `_orig_mod.` (torch.compile) prefixes.

    Non-tensor entries are dropped; the module versions torch records in `_metadata` are kept
    (prefixes stripped too), as an `OrderedDict` attribute exactly as `state_dict()` holds them,
    because BatchNorm's loading reads them (see `fill_batchnorm_counters`).
    """
    out: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        if not isinstance(key, str):
            raise LandscapeError(
                f"state dict key {key!r} is a {type(key).__name__}, not a parameter name; the file "
                "is not a state dict (keys are strings such as 'conv1.weight')"
            )
        out[_strip_prefixes(key)] = value
    metadata = getattr(state, "_metadata", None)
    if isinstance(metadata, dict):
        out._metadata = collections.OrderedDict(  # type: ignore[attr-defined]
            (_strip_prefixes(k + ".")[:-1], v)
            for k, v in metadata.items()
            if isinstance(k, str) and isinstance(v, dict)
        )
    return out


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
        key = key.replace("._orig_mod.", ".")
    return key


def fill_batchnorm_counters(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` with each absent BatchNorm `num_batches_tracked` filled as torch itself fills it.

    Torch 0.4.1 added the counter (BatchNorm version 2). `_NormBase._load_from_state_dict`
    puts in the module's own counter (0 for a new module; `tensor(0)` when it is on the meta
    device) when the key is absent and the module's recorded version (`_metadata`) is below 2
    or not recorded; a version-2 module without it is a damaged file, and stays missing here
    too. Files from the paper's code (torch of 2017-2018) have no counters.
    """
    metadata = getattr(state, "_metadata", None) or {}
    out = collections.OrderedDict(state)
    if hasattr(state, "_metadata"):
        out._metadata = state._metadata  # type: ignore[attr-defined]
    for name, module in model.named_modules():
        if not isinstance(module, nn.modules.batchnorm._NormBase) or not module.track_running_stats:
            continue
        key = f"{name}.num_batches_tracked" if name else "num_batches_tracked"
        version = (metadata.get(name) or {}).get("version")
        if key in out or (version is not None and version >= 2):
            continue
        own = module.num_batches_tracked
        out[key] = own.clone() if own is not None and own.device.type != "meta" else torch.tensor(0, dtype=torch.long)
    return out


def _torch_load(path: Path) -> Any:
    if not path.exists():
        raise LandscapeError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise LandscapeError(f"checkpoint {path} is a directory, expected a file written by torch.save")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise LandscapeError(f"checkpoint {path} is not readable (permission denied)") from None
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "Weights only load failed" in str(e) or "weights_only" in str(e):
            raise LandscapeError(
                f"checkpoint {path} holds pickled Python objects, which are not loaded for safety; "
                "re-save it as a state dict (torch.save(model.state_dict(), path))"
            ) from None
        raise LandscapeError(
            f"cannot read checkpoint {path} ({type(e).__name__}: {first[:200]}); "
            "expected a file written by torch.save"
        ) from None


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "state_dict": (dict,),
    "model": (str, type(None)),
    "model_kwargs": (dict, type(None)),
    "data": (dict, type(None)),
    "metrics": (dict, type(None)),
    "train": (dict, type(None)),
    "epoch": (int, type(None)),
    "version": (int, type(None)),
}


def _check_fields(obj: dict[str, Any], path: Path) -> None:
    """Each field of a landscape checkpoint has its documented type, and the version is known."""
    from ..system.text import printable

    for key, types in _FIELD_TYPES.items():
        if key == "state_dict" and key not in obj:
            raise LandscapeError(f"checkpoint {path} has no 'state_dict'; the file is damaged: re-save it")
        value = obj.get(key)
        if isinstance(value, bool) or not isinstance(value, types):
            raise LandscapeError(
                f"checkpoint {path}: field {key!r} should be {' or '.join(t.__name__ for t in types)}, "
                f"found {type(value).__name__} {printable(repr(value)[:40])}; the file is damaged or "
                "hand-made: re-save it with landscape.io.checkpoint.save_checkpoint"
            )
    if obj.get("version") is not None and not 1 <= obj["version"] <= CHECKPOINT_VERSION:
        raise LandscapeError(
            f"checkpoint {path} has format version {obj['version']}; this landscape reads 1 to "
            f"{CHECKPOINT_VERSION} (upgrade: pip install -U nn-landscape)"
        )


_WRAPPER_KEYS = ("state_dict", "model", "net")  # {'state_dict'}: the paper's code; 'model'/'net': common


def _is_state(obj: object) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _from_object(obj: Any, path: Path) -> Checkpoint:
    """The checkpoint a loaded object holds, by its layout (see docs/checkpoints.md)."""
    if isinstance(obj, dict) and obj.get("format") == "landscape-curve":  # landscape.jobs.curves.CURVE_FORMAT
        raise LandscapeError(
            f"{path} is a curve file (landscape connect), not a model checkpoint; evaluate it with "
            "`landscape surface --curve`"
        )
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        _check_fields(obj, path)
        return Checkpoint(
            model=obj.get("model"),
            state_dict=clean_state_dict(obj["state_dict"]),
            model_kwargs=dict(obj.get("model_kwargs") or {}),
            data=dict(obj.get("data") or {}),
            epoch=obj.get("epoch"),
            metrics=dict(obj.get("metrics") or {}),
            train=dict(obj.get("train") or {}),
            version=int(obj.get("version", 1)),
        )
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict) and (key == "state_dict" or _is_state(obj[key])):
                epoch = obj.get("epoch")
                ckpt = Checkpoint(model=None, state_dict=clean_state_dict(obj[key]), source="paper")
                ckpt.epoch = epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None
                return ckpt
    if _is_state(obj):
        return Checkpoint(model=None, state_dict=clean_state_dict(obj), source="state_dict")
    raise LandscapeError(
        f"{path} is not a checkpoint: expected a landscape checkpoint, a state dict, or a dict "
        "with a 'state_dict', 'model' or 'net' entry"
    )


def load_checkpoint(
    path: str | Path,
    model: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    trust_torchscript: bool = False,
) -> Checkpoint:
    """Load a landscape checkpoint, a bare state dict, or a wrapper `{'state_dict': ...}`.

    Accepted: the legacy (pre-zip) and zip formats, storages saved on any GPU (mapped to the
    CPU), `{'state_dict'}` / `{'model'}` / `{'net'}` wrappers (the paper's
    `{'acc', 'epoch', 'state_dict'}`), DataParallel / torch.compile prefixes; always with
    `weights_only=True`. `model`/`model_kwargs` name the architecture for files that do not carry
    it, and override the recorded ones otherwise. Files are data: a recorded import path
    `package.module:factory` is refused (one line) unless `model` is given, since it would be
    imported and called; a TorchScript archive (a model with its own code) is refused unless
    `trust_torchscript` is set, since evaluating it runs that code.
    """
    path = Path(path)
    from ..system.hooks import is_torchscript, load_torchscript

    if is_torchscript(path):  # a whole model saved with torch.jit.save: no --model needed
        if not trust_torchscript:
            raise refuse_torchscript(path)
        module = load_torchscript(path)
        state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        name = getattr(module, "original_name", None) or "torchscript"
        return Checkpoint(model=name, state_dict=state, path=str(path), source="torchscript")
    check_archive(path)
    try:
        ckpt = _from_object(_torch_load(path), path)
    except LandscapeError as error:
        message = str(error)
        raise LandscapeError(message if str(path) in message else f"checkpoint {path}: {message}") from None
    check_tensors(ckpt.state_dict, path, path.stat().st_size)
    if model is not None:
        ckpt.model = model
    else:
        check_stored_model(ckpt.model, path)
    if model_kwargs:
        ckpt.model_kwargs = {**ckpt.model_kwargs, **model_kwargs}
    if ckpt.model is None:
        raise LandscapeError(
            f"{path} is a bare state dict with no model name; pass --model NAME (see 'landscape models')"
        )
    ckpt.path = str(path)
    return ckpt


def refuse_torchscript(path: str | Path) -> LandscapeError:
    """The one-line refusal of a TorchScript file nobody said to trust."""
    return LandscapeError(
        f"{path} is a TorchScript archive: a model with its own code, which evaluating it would "
        "run; pass --trust-torchscript (Python: trust_torchscript=True) if you trust the file, "
        "or give a state dict with --model"
    )


def check_stored_model(name: object, path: str | Path) -> None:
    """Refuse a model name read from a file unless it is a registry name (or absent).

    A stored import path would be imported and called with the file's keyword arguments; it is
    used only when the user passes the same path (`--model`, or `model=` in Python).
    """
    if name is None:
        return
    if not isinstance(name, str):
        raise LandscapeError(
            f"{path} stores a model name of type {type(name).__name__}; expected a registered "
            "name (see 'landscape models'): pass --model NAME"
        )
    if is_import_path(name):
        raise refuse_stored_import_path(f"checkpoint {path}", "model", name, "--model")


def load_into(model: nn.Module, state_dict: dict[str, torch.Tensor], what: str = "checkpoint") -> None:
    """Load strictly; on mismatch raise one line naming missing and unexpected keys.

    Absent BatchNorm counters of old files are filled as torch fills them
    (`fill_batchnorm_counters`); every other key must be there, with its shape and a dtype of
    the same kind (a float weight from a float tensor)."""
    state_dict = fill_batchnorm_counters(model, state_dict)
    _check_fit(model, state_dict, what)
    model.load_state_dict(state_dict, strict=True)


def _check_fit(model: nn.Module, state_dict: dict[str, torch.Tensor], what: str) -> None:
    """Raise one line naming missing and unexpected keys and shape mismatches, if any."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and state_dict[k].shape != own[k].shape
    ]
    dtypes = [
        f"{k} {str(state_dict[k].dtype).removeprefix('torch.')} for {str(own[k].dtype).removeprefix('torch.')}"
        for k in own
        if k in state_dict and own[k].is_floating_point() != state_dict[k].is_floating_point()
    ]
    if missing or unexpected or shapes or dtypes:
        parts = []
        if missing:
            parts.append(f"missing keys {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_short(unexpected)}")
        if shapes:
            parts.append(f"shape mismatch {_short(shapes)}")
        if dtypes:
            parts.append(f"dtype mismatch {_short(dtypes)}")
        raise LandscapeError(
            f"{what} does not fit model {type(model).__name__}: {'; '.join(parts)} "
            "(is --model right?)"
        )


def _short(items: list[str], n: int = 4) -> str:
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def build_model(ckpt: Checkpoint) -> nn.Module:
    """Create the checkpoint's architecture, load its weights, and put it in eval mode."""
    from ..models import create_model

    if ckpt.source == "torchscript" and ckpt.path is not None:
        from ..system.hooks import load_torchscript

        module = load_torchscript(ckpt.path)
        module.load_state_dict(ckpt.state_dict)
        return module
    kwargs = dict(ckpt.model_kwargs)
    what = f"checkpoint {ckpt.path or ''}".strip()
    try:
        _check_shell(ckpt, kwargs, what)
        model = create_model(ckpt.model, **kwargs)
    except (TypeError, ValueError, RuntimeError, OverflowError) as error:  # the file's keywords
        raise LandscapeError(
            f"checkpoint {ckpt.path or ''}: model {ckpt.model!r} cannot be built from the stored "
            f"model_kwargs {_short([f'{k}={v!r}' for k, v in kwargs.items()])} ({one_line(error)}); "
            "the file's model_kwargs are damaged"
        ) from None
    load_into(model, ckpt.state_dict, what=what)
    return model.eval()


def _check_shell(ckpt: Checkpoint, kwargs: dict[str, Any], what: str) -> None:
    """Build a registered architecture on the meta device (no memory) and check the weights fit,
    so that arguments from a file (`{"width": 10**9}`) cannot make us allocate terabytes first.
    A user's factory (an import path) is called once only, as given."""
    from ..models import create_model

    if ckpt.model is None or ":" in ckpt.model:
        return
    with torch.device("meta"):
        shell = create_model(ckpt.model, **kwargs)
    _check_fit(shell, fill_batchnorm_counters(shell, ckpt.state_dict), what)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
