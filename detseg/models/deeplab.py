"""DeepLabv3 (Chen, Papandreou, Schroff and Adam, 2017): a ResNet whose last stages trade stride for
atrous convolution (output stride 16 or 8), optional multi-grid rates in the last stage, ASPP with image
pooling, a 3x3 conv-BN-ReLU, a 1x1 classifier, and bilinear upsampling of the logits to the input size.
Also on MobileNetV3-Large (output stride 16) for CPU speed.

The parts match torchvision's ``deeplabv3_*`` (without the auxiliary head) layer for layer, so the
parameter counts are equal and torchvision's segmentation state dicts load (``backbone.`` ->
``encoder.``, ``classifier.0-2`` -> ``decoder.0-2``, ``classifier.4`` -> ``head``). ASPP rates follow
the paper, (6, 12, 18) at output stride 16 and (12, 24, 36) at 8 (torchvision uses the latter for both).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from detseg.models.backbones import MobileNetEncoder, ResNetEncoder, load_pretrained
from detseg.models.registry import register_model
from detseg.nn import ASPP, Segmenter, resize_to

TORCHVISION_KEY_MAP = {
    "backbone.": "encoder.",
    "classifier.0.": "decoder.0.",
    "classifier.1.": "decoder.1.",
    "classifier.2.": "decoder.2.",
    "classifier.4.": "head.",
}


class DeepLabDecoder(nn.Sequential):
    """ASPP, then 3x3 conv-BN-ReLU: ``Tensor[B, C_enc, h, w] -> Tensor[B, 256, h, w]``. DeepLabv3 has no
    real decoder; this is the part between the encoder and the classifier."""

    def __init__(self, in_channels: int, atrous_rates: Sequence[int], channels: int = 256) -> None:
        super().__init__(
            ASPP(in_channels, atrous_rates, channels),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
        )


class DeepLabV3(Segmenter):
    """DeepLabv3 on ``backbone`` (resnet50, resnet101, mobilenet_v3_large).

    ``output_stride`` 8 or 16 (ResNets; MobileNetV3 is 16); ``multi_grid`` e.g. (1, 2, 4).
    Training needs batches of 2 or more (ASPP's image-pooling batch norm).
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        num_classes: int = 21,
        in_channels: int = 3,
        output_stride: int = 8,
        multi_grid: Sequence[int] | None = None,
        atrous_rates: Sequence[int] | None = None,
    ) -> None:
        super().__init__(num_classes, in_channels)
        if output_stride not in (8, 16):
            raise ValueError(f"DeepLabv3 output_stride must be 8 or 16, got {output_stride}")
        if backbone == "mobilenet_v3_large":
            if output_stride != 16 or multi_grid is not None:
                raise ValueError("DeepLabv3-MobileNetV3 has output stride 16 and no multi-grid")
            self.encoder = MobileNetEncoder(backbone, in_channels, dilated=True)
        else:
            self.encoder = ResNetEncoder(backbone, in_channels, output_stride, multi_grid)
        rates = atrous_rates or ((12, 24, 36) if output_stride == 8 else (6, 12, 18))
        self.decoder = DeepLabDecoder(self.encoder.out_channels[-1], rates)
        self.head = nn.Conv2d(256, num_classes, 1)
        self.output_stride = output_stride

    def reset_classifier(self, num_classes: int) -> None:
        old = self.head
        self.head = nn.Conv2d(old.in_channels, num_classes, 1).to(old.weight.device)
        self.num_classes = num_classes

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] < 2:
            raise ValueError(
                "DeepLabv3 trains on batches of 2 or more images: the ASPP image-pooling batch norm sees "
                "one value per channel and image (use batch size >= 2, or model.eval() for inference)"
            )
        features = self.encoder(x)[-1]
        return resize_to(self.head(self.decoder(features)), (x.shape[-2], x.shape[-1]))


def _deeplab(
    backbone: str, num_classes: int, in_channels: int, pretrained: str | None, **kwargs
) -> DeepLabV3:
    model = DeepLabV3(backbone, num_classes, in_channels, **kwargs)
    key_map = dict(TORCHVISION_KEY_MAP)
    if backbone.startswith("mobilenet"):  # torchvision wraps ``features`` itself: backbone.N -> features.N
        key_map["backbone."] = "encoder.features."
    model.pretrained_report = load_pretrained(model, pretrained, arch=backbone, key_map=key_map)
    return model


# torchvision's counterparts (COCO_WITH_VOC_LABELS_V1 weights); its ASPP rates are (12, 24, 36) at any stride.
MOBILENET_KEY_MAP = {**TORCHVISION_KEY_MAP, "backbone.": "encoder.features."}


@register_model(task="segment", backbone="resnet50", input_size=(3, 513, 513), paper="Chen et al. 2017",
                torchvision="deeplabv3_resnet50", torchvision_key_map=TORCHVISION_KEY_MAP)
def deeplabv3_resnet50(
    num_classes: int = 21,
    in_channels: int = 3,
    pretrained: str | None = None,
    output_stride: int = 8,
    multi_grid: Sequence[int] | None = None,
    **kwargs,
) -> DeepLabV3:
    """DeepLabv3-ResNet-50, output stride 8 by default (as torchvision); ``multi_grid=(1, 2, 4)``."""
    return _deeplab(
        "resnet50",
        num_classes,
        in_channels,
        pretrained,
        output_stride=output_stride,
        multi_grid=multi_grid,
        **kwargs,
    )


@register_model(task="segment", backbone="resnet101", input_size=(3, 513, 513), paper="Chen et al. 2017",
                torchvision="deeplabv3_resnet101", torchvision_key_map=TORCHVISION_KEY_MAP)
def deeplabv3_resnet101(
    num_classes: int = 21,
    in_channels: int = 3,
    pretrained: str | None = None,
    output_stride: int = 8,
    multi_grid: Sequence[int] | None = None,
    **kwargs,
) -> DeepLabV3:
    """DeepLabv3-ResNet-101."""
    return _deeplab(
        "resnet101",
        num_classes,
        in_channels,
        pretrained,
        output_stride=output_stride,
        multi_grid=multi_grid,
        **kwargs,
    )


@register_model(task="segment", backbone="mobilenet_v3_large", input_size=(3, 520, 520),
                torchvision="deeplabv3_mobilenet_v3_large", torchvision_key_map=MOBILENET_KEY_MAP,
                torchvision_kwargs={"atrous_rates": (12, 24, 36)})
def deeplabv3_mobilenet_v3_large(
    num_classes: int = 21, in_channels: int = 3, pretrained: str | None = None, **kwargs
) -> DeepLabV3:
    """DeepLabv3 on MobileNetV3-Large (dilated last stage, output stride 16), for CPU speed."""
    return _deeplab("mobilenet_v3_large", num_classes, in_channels, pretrained, output_stride=16, **kwargs)
