"""timm's classifiers by name: ``create_model("timm:NAME[.TAG]", pretrained=...)``.

    model = create_model("timm:tf_efficientnet_lite0", pretrained="in1k")   # ImageNet's 1000 classes
    model.class_names[310]          # "ant"
    logits = model(images)          # images float [B, 3, H, W] in [0, 1] -> logits [B, 1000]
    model.encoder / model.head      # timm's network without its classifier -> pooled features; Linear

The model is an :class:`~detseg.models.classifier.ImageClassifier` (so feature extraction, fine-tuning
and ``detseg train`` treat it like the torchvision classifiers): ``encoder`` is timm's network with
``num_classes=0`` (timm's key names under ``encoder.``), ``head`` its classifier. The input
normalisation of the weights (:func:`detseg.models.timm_weights.timm_normalization`; the offline
EfficientNet-Lite0 copy: ``(255 x - 127) / 128``) is applied inside ``forward`` and kept in the state
dict (``mean``/``std`` buffers), so train, eval, predict and an exported graph all apply it.

``pretrained``: None (random), True or a timm tag (``"in1k"``; ``timm:NAME.TAG`` says it too), a file or
a detseg checkpoint (as for every zoo model).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from detseg.models.classifier import ImageClassifier
from detseg.models.registry import TIMM_PREFIX, ModelInfo, register_prefix, split_timm_name
from detseg.models.timm_weights import (
    PACKAGED,
    check_timm_name,
    import_timm,
    resolve_timm_weights,
    timm_normalization,
    timm_tags,
    weights_tag,
)
from detseg.models.weights import load_pretrained, load_state_dict_into, offline_requested
from detseg.nn import channel_stats


class TimmClassifier(ImageClassifier):
    """An :class:`ImageClassifier` whose ``mean``/``std`` are the weights' and are saved with them."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Persistent: the normalisation travels with the weights (checkpoints, exported graphs).
        self.register_buffer("mean", self.mean.clone(), persistent=True)
        self.register_buffer("std", self.std.clone(), persistent=True)
        self.class_names: list[str] | None = None


def create_timm_classifier(
    name: str,
    num_classes: int | None = None,
    pretrained: Any = None,
    in_channels: int = 3,
    drop_rate: float = 0.0,
    offline: bool | None = None,
) -> TimmClassifier:
    """timm's ``name`` (``"timm:tf_efficientnet_lite0"``, ``"timm:resnet18.a1_in1k"``) as a detseg
    classifier with ``num_classes`` outputs (default: the weights' classes, 1000 for ImageNet).

    Timm weights load whole (the head too when the class counts agree, and then ``class_names`` are the
    weights'); with another class count the head is new. The load report is ``model.load_report``.
    """
    arch, _ = split_timm_name(name)
    check_timm_name(arch)
    tag, timm_weights = weights_tag(name, pretrained)
    state, description, cfg = None, "", {}
    if timm_weights:
        state, description, cfg = resolve_timm_weights(arch, tag, offline=offline_requested(offline))
        mean, std = cfg["mean"], cfg["std"]
    else:
        mean, std = timm_normalization(arch, tag)
    weights_classes = int(cfg.get("num_classes") or 1000)
    num_classes = int(num_classes if num_classes is not None else weights_classes)
    timm = import_timm()
    encoder = timm.create_model(arch, pretrained=False, num_classes=0, in_chans=in_channels)
    mean, std = channel_stats(in_channels, mean, std)
    model = TimmClassifier(encoder, encoder.num_features, num_classes, drop_rate, f"timm:{arch}", mean, std)
    classifier = encoder.pretrained_cfg.get("classifier", "classifier")
    key_map = {f"{classifier}.": "head.", "": "encoder."}
    if state is not None:
        model.load_report = load_state_dict_into(model, state, description, key_map)
        model.load_report.missing = [k for k in model.load_report.missing if k not in ("mean", "std")]
        if num_classes == weights_classes and cfg.get("class_names"):
            model.class_names = list(cfg["class_names"])
    else:
        model.load_report = load_pretrained(model, pretrained, key_map=key_map)
    model.pretrained_report = model.load_report
    model.pretrained_cfg = {k: v for k, v in cfg.items() if k != "class_names"}
    return model


def timm_model_info(name: str) -> ModelInfo:
    """A :class:`~detseg.models.registry.ModelInfo` for ``"timm:NAME[.TAG]"`` (a classifier; its builder
    takes ``num_classes``, ``pretrained``...)."""
    arch, _ = split_timm_name(name)
    check_timm_name(arch)
    timm = import_timm()
    cfg = timm.models.get_pretrained_cfg(arch)
    size = tuple(cfg.input_size) if cfg is not None else (3, 224, 224)
    builder = functools.partial(create_timm_classifier, name)
    builder.__name__ = name  # type: ignore[attr-defined]
    builder.__doc__ = f"timm's {arch} as a detseg classifier"
    return ModelInfo(name, builder, "classify", arch, size, {"source": "timm", "outputs": "labels"})


register_prefix(TIMM_PREFIX, timm_model_info)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def encoder_rows(pattern: str = "*", pretrained_only: bool = True, limit: int | None = None) -> list[dict]:
    """timm encoders for ``detseg zoo list --backbones``: name, tags, parameters (M, the
    ``features_only`` network), strides and channels from its ``feature_info``, offline source.

    Building each network takes time: ``pattern`` (a glob, timm's) and ``limit`` keep it short.
    """
    timm = import_timm()
    names = timm.list_models(pattern, pretrained=pretrained_only)
    names = sorted({n.partition(".")[0] for n in names})
    rows = []
    for arch in names[:limit] if limit else names:
        try:
            net = timm.create_model(arch, features_only=True, pretrained=False)
        except Exception as err:  # timm raises several types for models without features_only
            rows.append({"name": f"timm:{arch}", "error": f"no features_only encoder ({type(err).__name__})"})
            continue
        tags = timm_tags(arch)
        rows.append(
            {
                "name": f"timm:{arch}",
                "params_m": round(count_parameters(net) / 1e6, 2),
                "strides": list(net.feature_info.reduction()),
                "channels": list(net.feature_info.channels()),
                "tags": tags,
                "offline": [t for t in tags if f"{arch}.{t}" in PACKAGED],
            }
        )
    return rows
