"""Detectors on timm encoders: torchvision's Faster R-CNN and RetinaNet through an FPN on timm's
``features_only`` maps, and SSDLite on its last two maps (``backbone="timm:NAME"``, ``pretrained`` a
timm tag such as ``"in1k"``).

    model = create_model("timm_retinanet", backbone="timm:tf_efficientnet_lite0", pretrained="in1k",
                         num_classes=1, size=320)

The FPN takes the encoder's last three maps (strides and channels from timm's ``feature_info``,
typically 8, 16, 32); Faster R-CNN adds a max-pooled level (torchvision's ``LastLevelMaxPool``),
RetinaNet P6/P7. SSDLite (Sandler et al. 2018) takes the maps at strides 16 and 32 and adds its four
extra inverted-bottleneck blocks (512, 256, 256, 128 channels): six maps, depthwise-separable heads,
default boxes at 0.2-0.95 of the side (``min_scale``/``max_scale``). The weights' normalisation (the
offline EfficientNet-Lite0: ``(pixel - 127) / 128``) is the detector transform's ``image_mean`` and
``image_std``, as torchvision's detectors normalise inside.
Labels are 0-based, ``num_classes`` counts the user's classes (:class:`ZeroBasedLabels`).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.ssdlite import _extra_block, _normal_init
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from detseg.models.detection_utils import size_to_min_max
from detseg.models.registry import register_model
from detseg.models.ssdlite import NORM_LAYER, build_ssdlite
from detseg.models.timm_segmenters import DEFAULT_BACKBONE, timm_encoder
from detseg.models.timm_weights import resolve_timm_weights, split_timm_name, timm_normalization, weights_tag
from detseg.models.torchvision_detectors import FasterRCNNDetector, RetinaNetDetector
from detseg.models.weights import load_pretrained, load_state_dict_into, offline_requested


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


class TimmSSDLiteBackbone(nn.Module):
    """timm encoder (``body``) + SSDLite's extra blocks: ``Tensor[B, 3, H, W]`` (normalised) -> six maps,
    the encoder's last at stride 16, its last (stride 32), then strides 64 to 512."""

    def __init__(self, backbone: str) -> None:
        super().__init__()
        self.body = timm_encoder(backbone)
        strides = list(self.body.strides)
        if 16 not in strides:
            raise ValueError(f"SSDLite needs a map at stride 16; {backbone} gives strides {strides}")
        self.taps = [len(strides) - 1 - strides[::-1].index(16), len(strides) - 1]
        self.extra = nn.ModuleList([
            _extra_block(self.body.out_channels[-1], 512, NORM_LAYER),
            _extra_block(512, 256, NORM_LAYER),
            _extra_block(256, 256, NORM_LAYER),
            _extra_block(256, 128, NORM_LAYER),
        ])
        _normal_init(self.extra)
        self.strides = [strides[i] for i in self.taps] + [strides[-1] * 2**k for k in range(1, 5)]

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = self.body(x)
        out = [feats[i] for i in self.taps]
        for block in self.extra:
            out.append(block(out[-1]))
        return OrderedDict((str(i), v) for i, v in enumerate(out))


def _load(backbone: nn.Module, name: str, pretrained: Any) -> tuple[Any, tuple, tuple]:
    """Timm weights into the encoder; returns ``(report, mean, std)`` (the weights' normalisation).
    Other weights (a file, a checkpoint) are the whole detector's: :func:`_load_rest` loads them."""
    arch = split_timm_name(name)[0]
    tag, timm_weights = weights_tag(name, pretrained)
    if not timm_weights:
        mean, std = timm_normalization(arch, tag)
        return None, tuple(mean), tuple(std)
    state, description, cfg = resolve_timm_weights(arch, tag, offline=offline_requested(None))
    return load_state_dict_into(backbone.body, state, description), tuple(cfg["mean"]), tuple(cfg["std"])


def _load_rest(model: nn.Module, pretrained: Any, report: Any) -> None:
    """``model.pretrained_report``: the encoder's timm load, else ``pretrained`` (a file, a checkpoint)
    loaded into the whole detector (None: nothing loaded)."""
    model.pretrained_report = report if report is not None else load_pretrained(model, pretrained)


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
    _load_rest(model, pretrained, report)
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
    _load_rest(model, pretrained, report)
    return model


@register_model(task="detect", backbone="timm", input_size=(3, 320, 320), paper="Sandler et al. 2018")
def timm_ssdlite(num_classes: int = 20, pretrained: Any = None, backbone: str = DEFAULT_BACKBONE,
                 size: int = 320, **kwargs: Any) -> nn.Module:
    """SSDLite on a timm encoder's maps at strides 16 and 32 plus four extra blocks (``size``: the
    square input side; ``min_scale``, ``max_scale``: the default boxes' scales, 0.2 and 0.95)."""
    body = TimmSSDLiteBackbone(backbone)
    report, mean, std = _load(body, backbone, pretrained)
    model = build_ssdlite(body, int(size), num_classes, {**kwargs, "image_mean": list(mean),
                                                          "image_std": list(std)})
    _load_rest(model, pretrained, report)
    return model
