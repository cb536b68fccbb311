"""Model registry: builders are registered by name and models are created by name or import path.

A builder is a plain function that takes only keyword arguments with defaults (at least
``in_channels`` and ``num_classes``) and returns an ``nn.Module``; the function's name is the
model's name. ``create_model`` also accepts ``package.module:factory`` so a user's own
architecture needs no registration.

Example:
    >>> from landscape.models import create_model, list_models
    >>> "resnet56" in list_models("resnet*")
    True
    >>> net = create_model("resnet8", in_channels=1, num_classes=10, width=4)
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from landscape.errors import LandscapeError

__all__ = [
    "ModelBuilder",
    "create_model",
    "is_model_name",
    "list_models",
    "register_model",
    "unregister_model",
]

ModelBuilder = Callable[..., nn.Module]
_Builder = TypeVar("_Builder", bound=ModelBuilder)

# name -> builder; the only module-level state of the model zoo.
_BUILDERS: dict[str, ModelBuilder] = {}

# How many names an "unknown model" message lists when nothing is close.
_LISTED_WHEN_NO_MATCH = 8


def register_model(builder: _Builder) -> _Builder:
    """Register ``builder`` under its function name and return it unchanged (a decorator).

    Registering a second, different function under a taken name raises ``LandscapeError``;
    re-registering the same function (e.g. after a module reload) replaces it.

    Example:
        >>> @register_model
        ... def my_net(in_channels: int = 3, num_classes: int = 10) -> nn.Module:  # doctest: +SKIP
        ...     return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))
    """
    name = builder.__name__
    previous = _BUILDERS.get(name)
    if previous is not None and _qualified_name(previous) != _qualified_name(builder):
        raise LandscapeError(
            f"model name {name!r} is already registered by {_qualified_name(previous)}; "
            f"rename {_qualified_name(builder)}"
        )
    _BUILDERS[name] = builder
    return builder


def unregister_model(name: str) -> ModelBuilder:
    """Remove ``name`` from the registry and return its builder (for tests and plugins)."""
    try:
        return _BUILDERS.pop(name)
    except KeyError:
        raise LandscapeError(_unknown_model_message(name)) from None


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models matching the shell-style ``pattern``.

    Example:
        >>> list_models("densenet*")
        ['densenet121', 'densenet_bc40']
    """
    return sorted(name for name in _BUILDERS if fnmatch.fnmatchcase(name, pattern))


def is_model_name(name: str) -> bool:
    """Whether ``name`` is a registered model (import paths are not checked)."""
    return name in _BUILDERS


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model, or call the factory at import path ``package.module:factory``.

    ``kwargs`` go to the builder unchanged; a keyword the builder does not take raises
    ``LandscapeError`` listing the keywords it does take.

    Example:
        >>> net = create_model("resnet56", num_classes=100)
        >>> net = create_model("my_project.nets:build", depth=10)  # doctest: +SKIP
    """
    if ":" in name:
        return _create_from_import_path(name, kwargs)
    builder = _BUILDERS.get(name)
    if builder is None:
        raise LandscapeError(_unknown_model_message(name))
    _check_keywords(name, builder, kwargs)
    return builder(**kwargs)


def _qualified_name(builder: ModelBuilder) -> str:
    module = getattr(builder, "__module__", "?")
    return f"{module}.{getattr(builder, '__qualname__', builder.__name__)}"


def _unknown_model_message(name: str) -> str:
    names = sorted(_BUILDERS)
    matches = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    if matches:
        hint = "close matches: " + ", ".join(matches)
    else:
        shown = names[:_LISTED_WHEN_NO_MATCH]
        more = ", ..." if len(names) > len(shown) else ""
        hint = "available: " + (", ".join(shown) + more if shown else "none registered")
    return f"unknown model {name!r}; {hint} (see 'landscape models')"


def _check_keywords(name: str, builder: ModelBuilder, kwargs: dict[str, Any]) -> None:
    signature = inspect.signature(builder)
    try:
        signature.bind(**kwargs)
    except TypeError as error:
        accepted = ", ".join(signature.parameters) or "no arguments"
        raise LandscapeError(
            f"model {name!r} cannot take {sorted(kwargs)}: {error}; it accepts: {accepted}"
        ) from None


def _create_from_import_path(path: str, kwargs: dict[str, Any]) -> nn.Module:
    from landscape.system.hooks import (  # shared with data and loss hooks
        call_factory,
        import_object,
    )

    factory = import_object(path, "model factory")
    model = call_factory(factory, f"model factory {path!r}", **kwargs)
    if not isinstance(model, nn.Module):
        raise LandscapeError(
            f"model factory {path!r} returned a {type(model).__name__}, expected a torch.nn.Module"
        )
    return model
