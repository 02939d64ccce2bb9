"""The model registry, in the style of timm: one-line registered builders.

    @register_model(task="segment", backbone="vgg16", input_size=(3, 512, 512))
    def fcn8s_vgg16(num_classes: int = 21, **kwargs) -> nn.Module: ...

    create_model("fcn8s_vgg16", num_classes=2)
    list_models(task="segment")
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass
class ModelInfo:
    """What the zoo knows about one named model; ``extra`` carries measured figures and their source."""

    name: str
    builder: Callable[..., nn.Module]
    task: str  # "detect", "segment" or "classify"
    backbone: str = ""
    input_size: tuple[int, int, int] = (3, 224, 224)
    extra: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(task: str, backbone: str = "", input_size: tuple[int, int, int] = (3, 224, 224), **extra):
    """Register a builder under its function name."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = builder.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelInfo(name, builder, task, backbone, tuple(input_size), dict(extra))
        return builder

    return wrap


def _load_all() -> None:
    # Importing the architecture modules runs their @register_model decorators.
    import importlib
    import pkgutil

    import detseg.models as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name != "zoo":
            importlib.import_module(f"detseg.models.{info.name}")


def list_models(pattern: str = "*", task: str | None = None) -> list[str]:
    """Names of registered models matching a glob ``pattern`` (and ``task`` when given), sorted."""
    _load_all()
    return sorted(
        name
        for name, info in _REGISTRY.items()
        if fnmatch.fnmatch(name, pattern) and (task is None or info.task == task)
    )


def model_info(name: str) -> ModelInfo:
    _load_all()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise ValueError(f"unknown model {name!r}; known models: {known}")
    return _REGISTRY[name]


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model by name; keyword arguments go to its builder (num_classes, pretrained...)."""
    return model_info(name).builder(**kwargs)
