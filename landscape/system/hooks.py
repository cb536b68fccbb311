"""The user's own code: objects named by import path, factories called safely, TorchScript files.

Every hook (a model factory, a data factory, a loss function) is named `package.module:attr`
(`attr` may be dotted, `module:Class.method`). The current directory is searched after the
installed packages, as `python -m` would, so `landscape surface --model mynets:build` works from
a project directory without installing it. Each failure is one line that names the path.

Files are data: nothing read from a checkpoint, surface or direction file reaches
`import_object`. A name stored in a file that is an import path is refused with
`refuse_stored_import_path` unless the user passes the same path themselves.

Example:
    >>> fn = import_object("torch.nn.functional:cross_entropy", "loss")
    >>> build = import_object("mynets:build", "model factory")  # doctest: +SKIP
    >>> net = call_factory(build, "model factory 'mynets:build'", width=8)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

from ..errors import LandscapeError, one_line

__all__ = [
    "import_object",
    "call_factory",
    "describe",
    "one_line",
    "is_torchscript",
    "load_torchscript",
    "is_import_path",
    "refuse_stored_import_path",
]


def _ensure_cwd_importable() -> None:
    # appended, not prepended: an installed package of the same name still wins
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.append(cwd)


def import_object(path: str, what: str = "object") -> Any:
    """The object at `package.module:attr`; a LandscapeError naming `path` when it is not there.

    `what` says what the object is for ("model factory", "loss", "data factory") and appears in
    every message, e.g. `cannot import loss 'mylib.losses:focal': ModuleNotFoundError: ...`.
    """
    module_name, _, attribute = str(path).partition(":")
    if not module_name or not attribute:
        raise LandscapeError(f"{what} import path {path!r} must look like 'package.module:factory'")
    _ensure_cwd_importable()
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # any failure while importing user code ends up here
        raise LandscapeError(f"cannot import {what} {path!r}: {one_line(error)}") from error
    obj: Any = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise LandscapeError(
                f"cannot find {what} {path!r}: module {module_name!r} "
                f"has no attribute {attribute!r}"
            )
        obj = getattr(obj, part)
    return obj


def is_import_path(name: object) -> bool:
    """Whether a name is an import path `package.module:attr` (code), not a registry name."""
    return isinstance(name, str) and ":" in name


def refuse_stored_import_path(source: str, what: str, name: str, option: str) -> LandscapeError:
    """The one-line refusal for an import path read from a file (files are data, never code).

    `source` names the file (`checkpoint a.pt`), `what` the field (`model`, `data set`), and
    `option` what the user passes to use it anyway (`--model`).
    """
    return LandscapeError(
        f"{source} names its {what} by the import path {name!r}; files are data and are never "
        f"imported: pass {option} {name} yourself if you trust it"
    )


def call_factory(factory: Any, label: str, **kwargs: Any) -> Any:
    """Call a user's factory; any exception becomes one line `<label> failed: Type: message`.

    `label` names the user's object, e.g. "model factory 'mynets:build'".
    """
    if not callable(factory):
        raise LandscapeError(f"{label} is a {type(factory).__name__}, not callable")
    try:
        return factory(**kwargs)
    except LandscapeError:
        raise
    except Exception as error:
        raise LandscapeError(f"{label} failed: {one_line(error)}") from error


def describe(obj: Any) -> str:
    """A short name for a user's object: `module:qualname` for functions, else the class name."""
    if isinstance(obj, str):
        return obj
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if module and qualname and callable(obj) and not hasattr(obj, "forward"):
        return f"{module}:{qualname}"
    return type(obj).__name__


def is_torchscript(path: str | Path) -> bool:
    """Whether `path` is a TorchScript archive (torch.jit.save), not a torch.save pickle."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(
                "/code/__torch__/" in n or n.endswith("/constants.pkl") for n in z.namelist()
            )
    except (OSError, zipfile.BadZipFile):
        return False


def load_torchscript(path: str | Path) -> Any:
    """A TorchScript module on the CPU, in eval mode."""
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as error:
        raise LandscapeError(f"cannot load TorchScript file {path}: {one_line(error)}") from None
    return module.eval()
