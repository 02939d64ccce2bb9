"""Detectors on timm encoders: torchvision's Faster R-CNN and RetinaNet through an FPN on timm's
``features_only`` maps (``backbone="timm:NAME"``, ``pretrained`` a timm tag such as ``"in1k"``).

    model = create_model("timm_retinanet", backbone="timm:tf_efficientnet_lite0", pretrained="in1k",
                         num_classes=1, size=320)

The FPN takes the encoder's last three maps (strides and channels from timm's ``feature_info``,
typically 8, 16, 32); Faster R-CNN adds a max-pooled level (torchvision's ``LastLevelMaxPool``),
RetinaNet P6/P7. The weights' normalisation (the offline EfficientNet-Lite0: ``(pixel - 127) / 128``)
is the detector transform's ``image_mean``/``image_std``, as torchvision's detectors normalise inside.
Labels are 0-based, ``num_classes`` counts the user's classes (:class:`ZeroBasedLabels`).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from detseg.models.detection_utils import size_to_min_max
from detseg.models.timm_segmenters import DEFAULT_BACKBONE, timm_encoder
from detseg.models.timm_weights import resolve_timm_weights, split_timm_name, timm_normalization
from detseg.models.torchvision_detectors import FasterRCNNDetector, RetinaNetDetector
from detseg.models.weights import PRETRAINED_NAMES, WeightsDeferred, load_state_dict_into, offline_requested
from detseg.models.zoo import register_model


class TimmFPNBackbone(nn.Module):
    """timm encoder (``body``) + FPN over its last ``levels`` maps: ``Tensor[B, 3, H, W]`` (normalised) ->
    ``OrderedDict`` of ``out_channels``-wide maps, fine to coarse (torchvision's backbone contract)."""

    def __init__(self, backbone: str, out_channels: int = 128, levels: int = 3, extra: str = "pool") -> None:
        super().__init__()
        self.body = timm_encoder(backbone)
        self.taps = list(range(len(self.body.out_channels)))[-levels:]
        in_channels = [self.body.out_channels[i] for i in self.taps]
        extra_block = LastLevelP6P7(out_channels, out_channels) if extra == "p6p7" else LastLevelMaxPool()
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_blocks=extra_block)
        self.out_channels = out_channels
        self.strides = [self.body.strides[i] for i in self.taps]

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = self.body(x)
        return self.fpn(OrderedDict((str(i), feats[i]) for i in self.taps))


def _load(backbone: TimmFPNBackbone, name: str, pretrained: Any) -> tuple[Any, tuple, tuple]:
    """Timm weights into the encoder; returns ``(report, mean, std)`` (the weights' normalisation)."""
    arch, tag = split_timm_name(name)
    if pretrained is None or pretrained is False or isinstance(pretrained, WeightsDeferred):
        mean, std = timm_normalization(arch, tag)
        return None, tuple(mean), tuple(std)
    text = str(pretrained)
    if text.startswith("timm:"):
        tag = split_timm_name(text)[1] or tag
    elif pretrained is not True and text.lower() not in PRETRAINED_NAMES:
        tag = text
    state, description, cfg = resolve_timm_weights(arch, tag, offline=offline_requested(None))
    return load_state_dict_into(backbone.body, state, description), tuple(cfg["mean"]), tuple(cfg["std"])


def _anchors(strides: list[int], extra: int, scales: tuple[float, ...]) -> AnchorGenerator:
    sizes = tuple(tuple(int(4 * s * k) for k in scales) for s in [*strides, *[strides[-1] * 2**i for i in
                                                                              range(1, extra + 1)]])
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))


@register_model(task="detect", backbone="timm", input_size=(3, 512, 512), paper="Ren et al. 2015")
def timm_fasterrcnn(num_classes: int = 20, pretrained: Any = None, backbone: str = DEFAULT_BACKBONE,
                    fpn_channels: int = 128, size: int | None = None, **kwargs: Any) -> FasterRCNNDetector:
    """Faster R-CNN, FPN on a timm encoder's last three maps plus a pooled level."""
    kwargs["size"] = size
    size_to_min_max(kwargs)
    kwargs.setdefault("min_size", 512)  # the registered input size (torchvision's default: 800)
    kwargs.setdefault("max_size", 512)
    body = TimmFPNBackbone(backbone, fpn_channels, extra="pool")
    report, mean, std = _load(body, backbone, pretrained)
    anchors = _anchors(body.strides, 1, (1.0,))
    model = FasterRCNNDetector(body, num_classes, rpn_anchor_generator=anchors, image_mean=list(mean),
                               image_std=list(std), **kwargs)
    model.pretrained_report = report
    return model


@register_model(task="detect", backbone="timm", input_size=(3, 512, 512), paper="Lin et al. 2017",
                label_offset=0)
def timm_retinanet(num_classes: int = 20, pretrained: Any = None, backbone: str = DEFAULT_BACKBONE,
                   fpn_channels: int = 128, size: int | None = None, **kwargs: Any) -> RetinaNetDetector:
    """RetinaNet, FPN on a timm encoder's last three maps plus P6/P7."""
    kwargs["size"] = size
    size_to_min_max(kwargs)
    kwargs.setdefault("min_size", 512)  # the registered input size (torchvision's default: 800)
    kwargs.setdefault("max_size", 512)
    body = TimmFPNBackbone(backbone, fpn_channels, extra="p6p7")
    report, mean, std = _load(body, backbone, pretrained)
    anchors = _anchors(body.strides, 2, (1.0, 2 ** (1 / 3), 2 ** (2 / 3)))
    model = RetinaNetDetector(body, num_classes, anchor_generator=anchors, image_mean=list(mean),
                              image_std=list(std), **kwargs)
    model.pretrained_report = report
    return model
