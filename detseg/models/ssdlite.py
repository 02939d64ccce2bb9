"""SSDLite on MobileNetV3-Large and MobileNetV2 (Sandler et al. 2018, sec. 6.2): SSD for CPU speed.

The head's 3x3 convolutions become depthwise-separable ones, the extra layers are inverted
bottlenecks, the first map is taken at the expansion of the last stride-16 block. Built from
torchvision's ssdlite blocks (``SSDLiteHead``, ``_mobilenet_extractor``, ``_extra_block``) and
wrapped in :class:`detseg.models.ssd.SSDDetector` (0-based labels, multibox loss).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from functools import partial
from typing import Any

from torch import Tensor, nn
from torchvision.models import (
    MobileNet_V2_Weights,
    MobileNet_V3_Large_Weights,
    mobilenet_v2,
    mobilenet_v3_large,
)
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssdlite import SSDLiteHead, _extra_block, _mobilenet_extractor, _normal_init

from detseg.models.detection_utils import load_pretrained, trainable_layers
from detseg.models.registry import register_model
from detseg.models.ssd import SSDDetector

# torchvision's SSDLite recipe: BatchNorm with eps 1e-3 / momentum 0.03, inputs scaled to [-1, 1].
NORM_LAYER = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
SSDLITE_DEFAULTS = dict(
    score_thresh=0.001, nms_thresh=0.55, detections_per_img=300, topk_candidates=300,
    image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
)


class SSDLiteFeatureExtractorMobileNetV2(nn.Module):
    """MobileNetV2 features for SSDLite: the expansion of block 14 (stride 16, 576 channels), the last
    layer (stride 32, 1280 channels) and four extra blocks (512, 256, 256, 128 channels)."""

    def __init__(self, features: nn.Sequential, norm_layer=NORM_LAYER):
        super().__init__()
        c4_pos = [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)][-1]
        block = features[c4_pos]
        self.features = nn.Sequential(
            nn.Sequential(*features[:c4_pos], block.conv[0]),  # until the C4 expansion layer
            nn.Sequential(*block.conv[1:], *features[c4_pos + 1:]),  # from the C4 depthwise to the end
        )
        self.extra = nn.ModuleList([
            _extra_block(features[-1].out_channels, 512, norm_layer),
            _extra_block(512, 256, norm_layer),
            _extra_block(256, 256, norm_layer),
            _extra_block(256, 128, norm_layer),
        ])
        _normal_init(self.extra)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``Tensor[B, 3, H, W]`` -> six maps at strides 16, 32, 64, 128, 256, 512."""
        out = []
        for block in [*self.features, *self.extra]:
            x = block(x)
            out.append(x)
        return OrderedDict((str(i), v) for i, v in enumerate(out))


def build_ssdlite(backbone: nn.Module, size: int, num_classes: int, kwargs: dict[str, Any]) -> SSDDetector:
    """SSDLite's head and default boxes on ``backbone`` (six maps, shallow to deep)."""
    # The paper's default boxes for SSDLite: ratios {1, 2, 3, 1/2, 1/3} on all six maps, scales 0.2..0.95
    # of the input side; ``min_scale``/``max_scale`` move them for data whose objects are smaller or larger.
    low, high = float(kwargs.pop("min_scale", 0.2)), float(kwargs.pop("max_scale", 0.95))
    if not 0 < low < high:
        raise ValueError(f"SSDLite default boxes need 0 < min_scale < max_scale, got {low}, {high}")
    anchor_generator = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=low, max_ratio=high)
    out_channels = det_utils.retrieve_out_channels(backbone, (size, size))
    head = SSDLiteHead(out_channels, anchor_generator.num_anchors_per_location(), num_classes + 1, NORM_LAYER)
    kwargs = {**SSDLITE_DEFAULTS, **kwargs}
    model = SSDDetector(backbone, anchor_generator, (size, size), num_classes, head=head, **kwargs)
    model.min_train_batch = 2
    return model


@register_model(task="detect", backbone="mobilenet_v3_large", input_size=(3, 320, 320),
                paper="Howard et al. 2019", torchvision="ssdlite320_mobilenet_v3_large",
                torchvision_kwargs={"reduced_tail": True})
def ssdlite320_mobilenet_v3_large(
    num_classes: int = 20,
    pretrained: bool | str | os.PathLike = False,
    trainable_backbone_layers: int | None = None,
    size: int = 320,
    reduced_tail: bool | None = None,
    **kwargs: Any,
) -> SSDDetector:
    """SSDLite on MobileNetV3-Large (torchvision's recipe; reduced tail when trained from scratch).

    ``pretrained``: True loads torchvision's ImageNet MobileNetV3-Large from the torch.hub cache, a path
    loads that file. ``size``: the square input side (320 in the paper). ``min_scale``, ``max_scale``
    (keyword arguments): the default boxes' smallest and largest scale, 0.2 and 0.95 of the side.
    ``reduced_tail``: MobileNetV3's halved last stage (default: from scratch only; torchvision's COCO
    weights were trained with it, from scratch).
    """
    trainable = trainable_layers(trainable_backbone_layers, pretrained, 6, 6)
    # The reduced tail (Table 6 of the MobileNetV3 paper) does not fit ImageNet weights.
    reduced = not pretrained if reduced_tail is None else bool(reduced_tail)
    net = mobilenet_v3_large(weights=None, norm_layer=NORM_LAYER, reduced_tail=reduced)
    if pretrained:
        load_pretrained(net, pretrained, MobileNet_V3_Large_Weights.IMAGENET1K_V1)
    else:
        _normal_init(net)
    return build_ssdlite(_mobilenet_extractor(net, trainable, NORM_LAYER), size, num_classes, kwargs)


@register_model(task="detect", backbone="mobilenet_v2", input_size=(3, 320, 320), paper="Sandler et al. 2018")
def ssdlite320_mobilenet_v2(
    num_classes: int = 20,
    pretrained: bool | str | os.PathLike = False,
    trainable_backbone_layers: int | None = None,
    size: int = 320,
    **kwargs: Any,
) -> SSDDetector:
    """SSDLite on MobileNetV2 as in its paper (sec. 6.2): first map at the expansion of layer 15."""
    net = mobilenet_v2(weights=None, norm_layer=NORM_LAYER)
    if pretrained:
        load_pretrained(net, pretrained, MobileNet_V2_Weights.IMAGENET1K_V1)
    else:
        _normal_init(net)
    features = net.features
    stages = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)] + [len(features) - 1]
    trainable = trainable_layers(trainable_backbone_layers, pretrained, len(stages), len(stages))
    freeze_before = len(features) if trainable == 0 else stages[len(stages) - trainable]
    for block in features[:freeze_before]:
        block.requires_grad_(False)
    return build_ssdlite(SSDLiteFeatureExtractorMobileNetV2(features), size, num_classes, kwargs)
