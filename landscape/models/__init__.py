"""The model zoo: every architecture of the paper, registered by name, plus tiny test models.

Importing this package registers all families (ResNet, wide ResNet, DenseNet, VGG, small).

Example:
    >>> from landscape.models import create_model, list_models
    >>> list_models("resnet56*")
    ['resnet56', 'resnet56_noshort']
    >>> net = create_model("resnet56", num_classes=100)
"""

from __future__ import annotations

# The family modules register their builders when imported.
from landscape.models import densenet, resnet, small, vgg  # noqa: F401

# The public API is the registry's: ModelBuilder, create_model, is_model_name, list_models,
# register_model, unregister_model.
from landscape.models._registry import *  # noqa: F403
from landscape.models._registry import __all__  # noqa: F401
