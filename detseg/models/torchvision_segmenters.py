"""torchvision's FCN-ResNet and LR-ASPP segmenters behind detseg's segmenter contract, so that their
COCO-with-VOC-labels weights (21 classes) load and give torchvision's logits.

- ``fcn_resnet50`` / ``fcn_resnet101``: a dilated ResNet (output stride 8), torchvision's FCN head
  (3x3 conv 2048 -> 512, BN, ReLU, dropout 0.1) and a 1x1 classifier, logits upsampled bilinearly. This
  is torchvision's "FCN", not the lecture's FCN-8s on VGG-16 (:mod:`detseg.models.fcn`).
- ``lraspp_mobilenet_v3_large`` (Howard et al. 2019): MobileNetV3-Large with a dilated last stage, the
  Lite R-ASPP head (1x1 conv-BN-ReLU on the stride-16 map times a pooled sigmoid attention, upsampled to
  the stride-8 map and classified there with that map's own classifier).

torchvision's state dicts load with ``backbone.`` -> ``encoder.`` and ``classifier.N`` -> ``decoder``/
``head`` (``TORCHVISION_KEY_MAP``); the auxiliary classifier of the FCN weights is not part of the model
(reported as unexpected).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from detseg.models.backbones import MobileNetEncoder, ResNetEncoder
from detseg.models.registry import register_model
from detseg.models.weights import load_pretrained
from detseg.nn import Segmenter, resize_to

FCN_KEY_MAP = {
    "backbone.": "encoder.",
    "classifier.0.": "decoder.0.",
    "classifier.1.": "decoder.1.",
    "classifier.4.": "head.",
}
LRASPP_KEY_MAP = {
    "backbone.": "encoder.features.",
    "classifier.cbr.": "decoder.cbr.",
    "classifier.scale.": "decoder.scale.",
    "classifier.low_classifier.": "head.low_classifier.",
    "classifier.high_classifier.": "head.high_classifier.",
}


class ResNetFCN(Segmenter):
    """torchvision's FCN on a dilated ResNet: ``encoder`` (C5 at stride 8), ``decoder`` (3x3 conv-BN-ReLU,
    dropout) and ``head`` (1x1 conv to ``num_classes``); logits resized to the input."""

    def __init__(self, backbone: str = "resnet50", num_classes: int = 21, in_channels: int = 3) -> None:
        super().__init__(num_classes, in_channels)
        self.encoder = ResNetEncoder(backbone, in_channels, output_stride=8)
        channels = self.encoder.out_channels[-1]
        self.decoder = nn.Sequential(
            nn.Conv2d(channels, channels // 4, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels // 4),
            nn.ReLU(),
            nn.Dropout(0.1),
        )
        self.head = nn.Conv2d(channels // 4, num_classes, 1)

    def reset_classifier(self, num_classes: int) -> None:
        old = self.head
        self.head = nn.Conv2d(old.in_channels, num_classes, 1).to(old.weight.device)
        self.num_classes = num_classes

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.decoder(self.encoder(x)[-1]))
        return resize_to(logits, (x.shape[-2], x.shape[-1]))


class LRASPPDecoder(nn.Module):
    """Lite R-ASPP's two branches on the stride-16 map: ``cbr`` (1x1 conv-BN-ReLU to ``channels``) times
    ``scale`` (global pool, 1x1 conv, sigmoid)."""

    def __init__(self, high_channels: int, channels: int = 128) -> None:
        super().__init__()
        self.cbr = nn.Sequential(nn.Conv2d(high_channels, channels, 1, bias=False), nn.BatchNorm2d(channels),
                                 nn.ReLU(inplace=True))
        self.scale = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(high_channels, channels, 1, bias=False),
                                   nn.Sigmoid())

    def forward(self, high: torch.Tensor) -> torch.Tensor:
        return self.cbr(high) * self.scale(high)


class LRASPPHead(nn.Module):
    """The two classifiers: on the upsampled decoder output and on the stride-8 map, summed."""

    def __init__(self, low_channels: int, channels: int, num_classes: int) -> None:
        super().__init__()
        self.low_classifier = nn.Conv2d(low_channels, num_classes, 1)
        self.high_classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, low: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        decoded = F.interpolate(decoded, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.low_classifier(low) + self.high_classifier(decoded)


class LRASPP(Segmenter):
    """LR-ASPP on MobileNetV3-Large (dilated last stage): the first stride-8 map (``features[4]``, 40
    channels) and the last map (``features[16]``, 960 channels, stride 16), as torchvision takes them."""

    low_index, high_index = 4, 16

    def __init__(self, num_classes: int = 21, in_channels: int = 3, channels: int = 128) -> None:
        super().__init__(num_classes, in_channels)
        self.encoder = MobileNetEncoder("mobilenet_v3_large", in_channels, dilated=True)
        low = self.encoder.features[self.low_index].out_channels
        high = self.encoder.out_channels[-1]
        self.decoder = LRASPPDecoder(high, channels)
        self.head = LRASPPHead(low, channels, num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        old = self.head
        self.head = LRASPPHead(old.low_classifier.in_channels, old.high_classifier.in_channels,
                               num_classes).to(old.low_classifier.weight.device)
        self.num_classes = num_classes

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        size, low = (x.shape[-2], x.shape[-1]), x
        for i, block in enumerate(self.encoder.features[: self.high_index + 1]):
            x = block(x)
            if i == self.low_index:
                low = x
        return resize_to(self.head(low, self.decoder(x)), size)


def _load(model: Segmenter, pretrained, backbone: str, key_map: dict[str, str]) -> Segmenter:
    # Backbone names (True, "IMAGENET1K_V1") resolve against the encoder's torchvision network.
    model.pretrained_report = load_pretrained(model, pretrained, arch=backbone, key_map=key_map)
    return model


@register_model(task="segment", backbone="resnet50", input_size=(3, 520, 520), paper="Long et al. 2015",
                torchvision="fcn_resnet50", torchvision_key_map=FCN_KEY_MAP)
def fcn_resnet50(num_classes: int = 21, in_channels: int = 3, pretrained=None) -> ResNetFCN:
    """torchvision's FCN-ResNet-50 (output stride 8); ``pretrained="COCO_WITH_VOC_LABELS_V1"``."""
    return _load(ResNetFCN("resnet50", num_classes, in_channels), pretrained, "resnet50", FCN_KEY_MAP)


@register_model(task="segment", backbone="resnet101", input_size=(3, 520, 520), paper="Long et al. 2015",
                torchvision="fcn_resnet101", torchvision_key_map=FCN_KEY_MAP)
def fcn_resnet101(num_classes: int = 21, in_channels: int = 3, pretrained=None) -> ResNetFCN:
    """torchvision's FCN-ResNet-101 (output stride 8)."""
    return _load(ResNetFCN("resnet101", num_classes, in_channels), pretrained, "resnet101", FCN_KEY_MAP)


@register_model(task="segment", backbone="mobilenet_v3_large", input_size=(3, 520, 520),
                paper="Howard et al. 2019", torchvision="lraspp_mobilenet_v3_large",
                torchvision_key_map=LRASPP_KEY_MAP)
def lraspp_mobilenet_v3_large(num_classes: int = 21, in_channels: int = 3, pretrained=None) -> LRASPP:
    """Lite R-ASPP on MobileNetV3-Large (torchvision's architecture), for CPU speed."""
    key_map = {"": "encoder."}  # a MobileNetV3 classification network's features.* -> encoder.features.*
    return _load(LRASPP(num_classes, in_channels), pretrained, "mobilenet_v3_large", key_map)
