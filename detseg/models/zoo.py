"""The model zoo, in the style of timm: registered models built by name, with their weights.

    create_model("fcn8s_vgg16", num_classes=2)
    create_model("ssd300_vgg16", pretrained="COCO_V1")
    list_models(task="segment")

The names come from :mod:`detseg.models.registry` (``register_model``, ``list_models``, ``model_info``,
``ModelInfo``, importable from here too); this module sits above the architecture files and the weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from detseg.models.registry import (  # noqa: F401  (the registry's names, where they always were)
    _REGISTRY,
    ModelInfo,
    is_timm_name,
    list_models,
    model_info,
    register_model,
)


def create_model(name: str, pretrained: Any = None, **kwargs) -> nn.Module:
    """Build a registered model by name; keyword arguments go to its builder (num_classes, size...).

    ``pretrained`` (resolved by :mod:`detseg.models.weights`): the model's own torchvision weights by
    name (``"COCO_V1"``, ``"COCO_WITH_VOC_LABELS_V1"``, ``"IMAGENET1K_V1"`` for classifiers,
    ``"DEFAULT"``; built with the weights' classes, whose names come along as ``model.class_names``, see
    :mod:`detseg.models.torchvision_weights`), ``True`` or a backbone's torchvision weights name, a URL
    (downloaded once into torch.hub's cache), a file (``"w.pth#sha256=..."``), a detseg checkpoint, or
    ``"zoo"`` / ``"zoo:NAME"`` for the weights ``detseg zoo build NAME`` cached. A zoo checkpoint or a
    whole detector's state dict (torchvision's COCO models, a detseg run) loads into the whole model,
    built as the weights were trained; anything else goes to the builder, which loads its backbone.
    The :class:`~detseg.models.weights.LoadReport` is kept as ``model.pretrained_report``.
    A weights name the model does not have raises ValueError listing the names it has.
    """
    from detseg.models import torchvision_weights as tvw
    from detseg.models.weights import collect_reports

    if is_timm_name(name):  # timm's classifiers by name; timm encoders under the segmenters
        from detseg.models.timm_models import create_timm_classifier

        return create_timm_classifier(name, pretrained=pretrained, **kwargs)
    if is_timm_name(kwargs.get("backbone")):
        from detseg.models.timm_segmenters import timm_segmenter_name

        name = timm_segmenter_name(name)
    info = model_info(name)
    if isinstance(pretrained, str) and (pretrained == "zoo" or pretrained.startswith("zoo:")):
        return _from_zoo(info, pretrained.partition(":")[2] or name, kwargs)
    member = tvw.full_weights(info, pretrained)
    if member is not None:
        return tvw.from_torchvision(info, member, kwargs)
    tvw.check_weights_name(info, pretrained)
    if info.task == "detect" and _is_file_source(pretrained):
        whole = _whole_detector(info, pretrained, kwargs)
        if whole is not None:
            return whole
    if pretrained is not None:
        kwargs["pretrained"] = pretrained
    with collect_reports() as reports:
        model = info.builder(**kwargs)
    if reports and getattr(model, "pretrained_report", None) is None:
        model.pretrained_report = reports[-1]
    return model


def _is_file_source(pretrained: Any) -> bool:
    """A file or a URL of one: the same weights either way (a URL is read from torch.hub's cache)."""
    from detseg.models.weights import parse_weights_source

    if not isinstance(pretrained, (str, Path)):
        return False
    source = parse_weights_source(pretrained)
    return source.scheme == "url" or (source.scheme == "file" and Path(source.location).is_file())


def _from_zoo(info: ModelInfo, zoo_name: str, kwargs: dict[str, Any]) -> nn.Module:
    """``info``'s model with the weights ``detseg zoo build zoo_name`` cached, built with the arguments
    it was trained with (``kwargs`` override them; another class count reloads all but the head)."""
    from detseg.models.weights import load_pretrained, zoo_cached

    path, sha256, meta = zoo_cached(zoo_name)
    if meta.get("model") == info.name:
        kwargs = {**meta.get("model_kwargs", {}), **kwargs}
    model = info.builder(**kwargs)
    model.pretrained_report = load_pretrained(model, str(path), sha256=sha256)
    model.zoo_meta = meta
    return model


def _whole_detector(info: ModelInfo, pretrained: Any, kwargs: dict[str, Any]) -> nn.Module | None:
    """The detector with a whole detector's weights (keys ``backbone.*``, ``head.*`` ...), or None when
    the file holds a backbone (a classification network's keys) for the builder to load.

    The architecture is built both ways (as from scratch, and as for pre-trained backbones: frozen
    BatchNorm, MobileNet's full tail) and the one the weights fit better is kept; on a tie, a detseg
    checkpoint keeps its run's arguments and from-scratch form, other files (torchvision's COCO models,
    trained from ImageNet backbones) the pre-trained form.
    """
    from detseg.models.torchvision_weights import class_names, known_file
    from detseg.models.weights import (
        WeightsDeferred,
        _extract_state_dict,
        load_state_dict_into,
        parse_weights_source,
        read_weights_file,
    )

    source = parse_weights_source(pretrained)
    path = source.local_file()
    obj = read_weights_file(path, source.sha256)
    state = _extract_state_dict(obj, source.location)
    if not any(k.removeprefix("module.").startswith("backbone.") for k in state):
        return None
    meta = obj.get("meta", {}) if isinstance(obj, dict) else {}
    from_detseg = isinstance(meta, dict) and meta.get("model") == info.name
    if from_detseg:
        kwargs = {**meta.get("model_kwargs", {}), **kwargs}
    member = None if from_detseg else known_file(info, path)
    names, ids = class_names(info, list(member.meta["categories"])) if member else ([], None)
    if member is not None:  # torchvision's own file fetched by hand: its architecture and its classes
        kwargs = {**info.extra.get("torchvision_kwargs", {}), "num_classes": len(names), **kwargs}
    forms = [None, WeightsDeferred()] if from_detseg else [WeightsDeferred(), None]
    best, best_score, best_form = None, None, None
    for form in forms:
        model = info.builder(**kwargs, pretrained=form)
        own = model.state_dict()
        theirs = {k.removeprefix("module."): v.shape for k, v in state.items()}
        fit = sum(k in own and own[k].shape == shape for k, shape in theirs.items())
        score = fit - sum(k not in own for k in theirs) - sum(k not in theirs for k in own)
        if best_score is None or score > best_score:
            best, best_score, best_form = model, score, form
    best.pretrained_report = load_state_dict_into(best, state, source.describe(path))
    best.build_kwargs = dict(kwargs)
    best.pretrained_form = best_form is not None  # built as for pre-trained weights (frozen BatchNorm...)
    if member is not None and kwargs["num_classes"] == len(names):
        best.class_names, best.category_ids = names, ids
    return best
