"""torchvision's full-model weights (COCO detectors, COCO-with-VOC-labels segmenters, ImageNet
classifiers) in detseg's models, with the class names that come with them.

A registered model names its torchvision counterpart: ``@register_model(..., torchvision="ssd300_vgg16")``
and, where detseg's builder needs to be told the counterpart's form, ``torchvision_kwargs`` (SSDLite's
reduced tail, DeepLabv3-MobileNet's ASPP rates) and ``torchvision_key_map`` (torchvision's key prefixes
renamed to detseg's). :func:`create_model <detseg.models.zoo.create_model>` then takes the counterpart's
weights names (``"COCO_V1"``, ``"SSD300_VGG16_Weights.COCO_V1"``, ``"DEFAULT"``) and builds the model
with the weights' class count, loads every tensor (reported) and attaches

- ``model.class_names``: COCO's names on its 91-id layout (90 slots after the background, 80 named,
  the 10 unused ids ``"N/A"``), VOC's 21, ImageNet's 1000 (``weights.meta["categories"]``);
- ``model.category_ids``: the weights' own id of each label (COCO's 1..90), detectors only;
- ``model.build_kwargs``: the builder arguments, to rebuild the same architecture from a checkpoint.

With another ``num_classes`` (fine-tuning) everything but the class-dependent layers loads and the
report lists those as mismatched.
"""

from __future__ import annotations

import re
from typing import Any

import torchvision
from torch import nn

from detseg.models.weights import PRETRAINED_NAMES, WeightsDeferred, load_state_dict_into, resolve_weights

#: Category names that are no class: the background slot and COCO's unused ids.
NOT_A_CLASS = {"__background__", "N/A"}

_ENUM_NAME = re.compile(r"[A-Za-z0-9_]+_Weights\.[A-Za-z0-9_]+")
_MEMBER_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


def counterpart_enum(info: Any):
    """The ``WeightsEnum`` of ``info``'s torchvision counterpart, or None."""
    name = info.extra.get("torchvision")
    return torchvision.models.get_model_weights(name) if name else None


def _backbone_enum(info: Any):
    """The ``WeightsEnum`` the builder resolves backbone names against (``resnet50_fpn`` -> ResNet-50)."""
    name = info.backbone.removesuffix("_fpn")
    try:
        return torchvision.models.get_model_weights(name)
    except (ValueError, KeyError):
        return None


def full_weights(info: Any, pretrained: Any):
    """The counterpart's ``WeightsEnum`` member that ``pretrained`` names, or None (``pretrained`` is
    something else: a file, a backbone's weights, ``True``)."""
    enum = counterpart_enum(info)
    if enum is None or pretrained is None or isinstance(pretrained, bool):
        return None
    if isinstance(pretrained, enum):
        return pretrained
    if not isinstance(pretrained, str):
        return None
    if _ENUM_NAME.fullmatch(pretrained):
        try:
            member = torchvision.models.get_weight(pretrained)
        except (ValueError, KeyError, AttributeError):
            return None
        return member if isinstance(member, enum) else None
    if pretrained == "DEFAULT":
        return enum.DEFAULT
    return enum[pretrained] if pretrained in enum.__members__ else None


def weights_names(info: Any) -> list[str]:
    """Every torchvision weights name ``info``'s model takes: its own (whole model), its backbone's."""
    names = []
    for enum in (counterpart_enum(info), _backbone_enum(info)):
        if enum is not None:
            names += [f"{enum.__name__}.{m.name}" for m in enum]  # DEFAULT is an alias, not listed
    return names


def check_weights_name(info: Any, pretrained: Any) -> None:
    """Refuse a torchvision-style weights name (``"COCO_V1"``) that ``info``'s model does not have, in one
    line listing the names it has (a bare member name resolves against the whole model, then the
    backbone)."""
    if not isinstance(pretrained, str) or pretrained.lower() in PRETRAINED_NAMES:
        return
    bare = _MEMBER_NAME.fullmatch(pretrained)
    if not (bare or _ENUM_NAME.fullmatch(pretrained)):
        return
    known = weights_names(info)
    if bare and any(name.endswith("." + pretrained) for name in known + [".DEFAULT"]):
        return
    if not bare and pretrained in known:
        return
    if not bare and not known:
        return  # a backbone this module cannot name (the builder resolves it, or says why not)
    has = ", ".join(known) if known else "none by name (give a file, a URL, a checkpoint or zoo:NAME)"
    raise ValueError(f"model {info.name!r} has no weights {pretrained!r}; its torchvision weights: {has}")


def class_names(info: Any, categories: list[str]) -> tuple[list[str], list[int] | None]:
    """The model's class names and (detectors) category ids from torchvision's ``categories``: a
    detector with a background slot (``label_offset`` 1, torchvision's label 0) drops it."""
    offset = int(info.extra.get("label_offset", 1)) if info.task == "detect" else 0
    if offset and categories and categories[0] != "__background__":
        offset = 0
    names = list(categories[offset:])
    ids = list(range(offset, len(categories))) if info.task == "detect" else None
    return names, ids


def from_torchvision(
    info: Any, member: Any, kwargs: dict[str, Any], offline: bool | None = None
) -> nn.Module:
    """``info``'s model with the counterpart's weights ``member`` (downloaded once when missing)."""
    resolved = resolve_weights(member, offline=offline)
    names, ids = class_names(info, resolved.meta.get("categories") or [])
    build_kwargs = {**info.extra.get("torchvision_kwargs", {}), "num_classes": len(names), **kwargs}
    model = info.builder(pretrained=WeightsDeferred(), **build_kwargs)
    report = load_state_dict_into(model, resolved.state_dict, resolved.description,
                                  info.extra.get("torchvision_key_map"))
    if not report.loaded:
        raise ValueError(f"{resolved.description}: none of its tensors fit {info.name}; {report.summary()}")
    model.pretrained_report = report
    if hasattr(model, "load_report"):  # the classifiers' name for it
        model.load_report = report
    model.build_kwargs = build_kwargs
    model.weights_meta = {"weights": resolved.meta["weights"], "classes": names, "category_ids": ids}
    if build_kwargs["num_classes"] == len(names):  # used as is: the weights' classes
        model.class_names, model.category_ids = names, ids
    return model


def known_file(info: Any, path: str) -> Any:
    """The counterpart's weights member whose file name ``path`` has (a torchvision file fetched by
    hand keeps its classes), or None."""
    from pathlib import Path

    enum = counterpart_enum(info)
    if enum is None:
        return None
    return next((m for m in enum if Path(m.url).name == Path(path).name), None)
