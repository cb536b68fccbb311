"""landscape: loss landscapes of trained neural networks, exact, fast and scalable.

The pipeline, one module per step:
checkpoint -> directions -> grid -> evaluate -> store -> render.

Heavy modules are imported on first use, so `import landscape` is cheap.

Example:
    >>> import landscape
    >>> landscape.list_models("resnet*")[:2]
    ['resnet110', 'resnet110_noshort']
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__
from .errors import LandscapeError

# public name -> module that defines it (imported lazily on first attribute access)
_EXPORTS = {
    "list_models": "models",
    "create_model": "models",
    "register_model": "models",
    "load_dataset": "data.sources",
    "Dataset": "data.sources",
    "Checkpoint": "io.checkpoint",
    "load_checkpoint": "io.checkpoint",
    "save_checkpoint": "io.checkpoint",
    "build_model": "io.checkpoint",
    "TrainConfig": "jobs.train",
    "train": "jobs.train",
    # the notebook API (landscape/api.py)
    "surface": "api",
    "load_model": "api",
    "make_directions": "api",
    "evaluate_points": "api",
    "write_surface": "api",
    "read_surface": "api",
    "Surface": "api",
    "plot_surface": "render.notebook",
    "write_report": "render.report",
    "Directions": "core.directions",
    "Axis": "core.grid",
    "tune_host_allocator": "system.device",
    # mode-connecting curves (docs/curves.md)
    "connect": "jobs.curves",
    "ConnectConfig": "jobs.curves",
    "load_curve": "jobs.curves",
    "compute_curve_surface": "jobs.curve_surface",
}

__all__ = ["__version__", "LandscapeError", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'landscape' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
