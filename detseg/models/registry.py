"""The names of detseg's models: the registry every architecture file writes itself into, and the one
parser of ``timm:`` names.

    @register_model(task="segment", backbone="vgg16", input_size=(3, 512, 512))
    def fcn8s_vgg16(num_classes: int = 21, **kwargs) -> nn.Module: ...

    list_models(task="segment"); model_info("fcn8s_vgg16").input_size

This module imports no model: the architecture files import it and register their builders (timm's
classifiers register the ``timm:`` prefix, :func:`register_prefix`); the first look-up imports every
module of :mod:`detseg.models` by name so that their decorators run. Building a model with weights is
:func:`detseg.models.zoo.create_model`.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

TIMM_PREFIX = "timm:"


def is_timm_name(text: Any) -> bool:
    """Whether ``text`` names a timm network (``"timm:resnet18"``, ``"timm:resnet18.a1_in1k"``)."""
    return isinstance(text, str) and text.startswith(TIMM_PREFIX)


def split_timm_name(text: str) -> tuple[str, str | None]:
    """``"timm:resnet18.a1_in1k"`` or ``"resnet18.a1_in1k"`` -> ``("resnet18", "a1_in1k")``."""
    name, _, tag = text.removeprefix(TIMM_PREFIX).partition(".")
    return name, tag or None


@dataclass
class ModelInfo:
    """What the zoo knows about one named model; ``extra`` carries measured figures and their source."""

    name: str
    builder: Callable[..., nn.Module]
    task: str  # "detect", "segment" or "classify"
    backbone: str = ""
    input_size: tuple[int, int, int] = (3, 224, 224)
    extra: dict[str, Any] = field(default_factory=dict)
    # The family's training defaults (optimizer, lr, schedule, warm-up, batch size, augmentation...), used by
    # ``detseg train`` where the command line and the spec say nothing (detseg.engine.config).
    default_cfg: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelInfo] = {}
#: Names under a prefix that a module answers itself: prefix -> the name's :class:`ModelInfo`.
_PREFIXES: dict[str, Callable[[str], ModelInfo]] = {}
#: Modules of detseg.models that register no model (imported by neither look-up).
_NOT_MODELS = {"registry", "zoo"}


def register_model(
    task: str,
    backbone: str = "",
    input_size: tuple[int, int, int] = (3, 224, 224),
    default_cfg: dict[str, Any] | None = None,
    **extra,
):
    """Register a builder under its function name. ``default_cfg``: the family's training defaults
    (:data:`detseg.engine.config.TUNABLE` names, e.g. ``{"optimizer": "adamw", "lr": 3e-3}``)."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = builder.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelInfo(
            name, builder, task, backbone, tuple(input_size), dict(extra), _default_cfg(name, default_cfg)
        )
        return builder

    return wrap


def register_prefix(prefix: str, info: Callable[[str], ModelInfo]) -> None:
    """Names starting with ``prefix`` are models that ``info(name)`` describes (``"timm:"``: every timm
    classifier, :func:`detseg.models.timm_models.timm_model_info`)."""
    _PREFIXES[prefix] = info


def _default_cfg(name: str, given: dict[str, Any] | None) -> dict[str, Any]:
    """The model's own training defaults, else its family's (:mod:`detseg.models.default_cfgs`)."""
    from detseg.models.default_cfgs import family_default_cfg

    return dict(given) if given is not None else family_default_cfg(name)


def _load_all() -> None:
    # Importing the architecture modules runs their @register_model decorators.
    import detseg.models as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in _NOT_MODELS:
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
    """The registry entry of ``name``; an unknown name raises ValueError naming the closest models."""
    _load_all()
    for prefix, info in _PREFIXES.items():
        if name.startswith(prefix):
            return info(name)
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ValueError(f"unknown model {name!r}; {hint}(`detseg zoo list` shows all {len(_REGISTRY)}: "
                         f"{', '.join(sorted(_REGISTRY)) or 'none'})")
    return _REGISTRY[name]
