"""A registered model with pre-trained weights, used as is: built, loaded, its classes named, with the
``meta`` a detseg checkpoint carries, so that prediction, evaluation and :func:`detseg.load` treat it
as a trained run (:mod:`detseg.engine.loader` calls it for a model name with its weights).

    model, meta = load_pretrained_model("ssd300_vgg16", "COCO_V1")
    meta["classes"][:3], meta["category_ids"][:3]    # ['person', 'bicycle', 'car'], [1, 2, 3]

Weights (:mod:`detseg.models.weights`): the model's torchvision weights by name (their classes named,
COCO's category ids kept), a detseg checkpoint (its run's classes), torchvision's own file fetched by
hand (recognised by its name), or any other state dict: its class count is read from the shape of its
class-dependent layers and its classes are named ``class_0``, ``class_1``, ...
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from detseg.models.registry import is_timm_name


def infer_num_classes(name: str, state: dict[str, torch.Tensor]) -> int | None:
    """The class count ``state`` was trained for, from its class-dependent layers: the model is built
    for 1 and for 2 classes (shapes only, on the meta device); a tensor whose first dimension grows is
    class-dependent, ``rows = a * num_classes + c``, and the state's rows give ``num_classes``."""
    from detseg.models.weights import match_keys
    from detseg.models.zoo import create_model, model_info

    key_map = model_info(name).extra.get("torchvision_key_map")
    with torch.device("meta"):
        one, two = (create_model(name, num_classes=n).state_dict() for n in (1, 2))
    theirs = match_keys(one, state, key_map)
    for key, small in one.items():
        large, given = two[key], theirs.get(key)
        if given is None or small.ndim == 0 or small.shape == large.shape:
            continue
        if given.shape[1:] != small.shape[1:]:
            continue
        step = large.shape[0] - small.shape[0]
        count, rest = divmod(given.shape[0] - (small.shape[0] - step), step)
        if rest == 0 and count >= 1:
            return count
    return None


def load_pretrained_model(
    name: str, pretrained: Any, device: str | torch.device = "cpu", **kwargs: Any
) -> tuple[nn.Module, dict[str, Any]]:
    """``name`` with ``pretrained`` loaded, in eval mode on ``device``, and its ``meta`` (task, model,
    model_kwargs, classes, category_ids for detectors, channels, the weights' description). A detseg
    checkpoint as ``pretrained`` goes through :func:`detseg.engine.loader.load`, which calls this."""
    from detseg.models import torchvision_weights as tvw
    from detseg.models.weights import resolve_weights, split_sha256
    from detseg.models.zoo import create_model, model_info

    if is_timm_name(name):  # timm's classifiers (detseg.models.timm_models)
        model = create_model(name, pretrained=pretrained, **kwargs)
        names = list(getattr(model, "class_names", None) or [f"class_{i}" for i in range(model.num_classes)])
        report = getattr(model, "load_report", None)
        meta = {"task": "classify", "model": name, "classes": names, "channels": 3, "img_size": None,
                "weights": report.source if report is not None else "none (random)",
                "pretrained": str(pretrained)}
        return model.to(device).eval(), meta
    info = model_info(name)
    if pretrained is None:
        raise ValueError(f"--model {name}: give its weights with --pretrained (e.g. "
                         f"{', '.join(tvw.weights_names(info)[:2]) or 'a file'})")
    tvw.check_weights_name(info, pretrained)
    if tvw.full_weights(info, pretrained) is None and "num_classes" not in kwargs:
        # A file: torchvision's own (named as torchvision names it) or a state dict of some class count.
        resolved = resolve_weights(pretrained)
        member = tvw.known_file(info, resolved.description.split(" (")[0])
        if member is not None:
            names, _ = tvw.class_names(info, list(member.meta["categories"]))
            kwargs = {**info.extra.get("torchvision_kwargs", {}), "num_classes": len(names)}
        else:
            count = infer_num_classes(name, resolved.state_dict)
            if count is not None:
                kwargs["num_classes"] = count
    model = create_model(name, pretrained=pretrained, **kwargs)
    report = getattr(model, "pretrained_report", None)
    if report is None or not report.loaded:
        raise ValueError(f"{pretrained}: nothing of it loads into {name}")
    if getattr(model, "class_names", None) is None:
        member = tvw.known_file(info, str(split_sha256(pretrained)[0]))
        if member is not None:
            model.class_names, model.category_ids = tvw.class_names(info, list(member.meta["categories"]))
        else:
            model.class_names = [f"class_{i}" for i in range(int(model.num_classes))]
    names = list(model.class_names)
    meta = {
        "task": info.task,
        "model": name,
        "model_kwargs": dict(getattr(model, "build_kwargs", kwargs)),
        "builder_pretrained": str(pretrained),  # rebuilt as made for these weights (frozen BatchNorm...)
        "classes": names,
        "channels": 3,
        "img_size": None,
        "weights": report.source,
        "pretrained": str(pretrained),
    }
    if info.task in ("detect", "instance"):
        ids = getattr(model, "category_ids", None)
        meta["category_ids"] = list(ids) if ids is not None else list(range(1, len(names) + 1))
    return model.to(device).eval(), meta


def weights_source(name: str, weights: Any) -> dict[str, Any]:
    """Pre-trained weights by name as the source of ``--extend-from`` (or ``--pretrained``): ``{"path",
    "state", "meta", "from_weights": True}``, as :func:`detseg.engine.run` reads a detseg checkpoint."""
    model, meta = load_pretrained_model(name, weights)
    return {"path": str(weights), "state": model.state_dict(), "meta": meta, "from_weights": True}


def is_weights_name(source: Any) -> bool:
    """Whether ``source`` names weights (``COCO_V1``, ``Enum.MEMBER``, ``zoo:``, a URL), not a file."""
    from detseg.models.weights import is_torchvision_name

    text = str(source)
    if Path(text).exists():
        return False
    return is_timm_name(text) or text.startswith(("zoo:", "http://", "https://")) or is_torchvision_name(text)
