"""FCN-32s, FCN-16s and FCN-8s on VGG-16 (Long, Shelhamer and Darrell, CVPR 2015).

VGG-16 made fully convolutional: fc6 becomes a 7x7 convolution and fc7 a 1x1 convolution (torchvision's
``classifier.0``/``classifier.3`` weights load into them reshaped). A 1x1 "score" convolution gives one
channel per class; learnable transposed convolutions, initialised to bilinear interpolation, upsample
it. FCN-16s adds the scores of pool4 (stride 16), FCN-8s also those of pool3 (stride 8); those skip
score layers start at zero, as in the paper, so training begins from the coarser net's output.

Any input size: the paper pads the input by 100 pixels and crops every fused map at Caffe-computed
offsets; here the input is padded on the bottom and right to a multiple of 32 (zeros after
normalisation, i.e. the mean colour), which aligns every skip exactly, and the logits are cropped back.
"""

from __future__ import annotations

import torch
from torch import nn

from detseg.models.backbones import VGGEncoder, load_pretrained
from detseg.models.registry import register_model
from detseg.nn import Segmenter, SkipFusion, TransposedConvUpsample, pad_to_multiple


class FCNHead(nn.Module):
    """The class-score 1x1 convolutions: ``score_fr`` on fc7, ``score_pool4``/``score_pool3`` on the skips.

    ``forward(pool3, pool4, fc7) -> [score_fr, score_pool4?, score_pool3?]``, each ``[B, C, h, w]``.
    """

    def __init__(self, channels: list[int], num_classes: int, variant: int) -> None:
        super().__init__()
        c_pool3, c_pool4, c_fc7 = channels
        self.variant = variant
        self.score_fr = nn.Conv2d(c_fc7, num_classes, 1)
        if variant <= 16:
            self.score_pool4 = nn.Conv2d(c_pool4, num_classes, 1)
            nn.init.zeros_(self.score_pool4.weight)
            nn.init.zeros_(self.score_pool4.bias)
        if variant == 8:
            self.score_pool3 = nn.Conv2d(c_pool3, num_classes, 1)
            nn.init.zeros_(self.score_pool3.weight)
            nn.init.zeros_(self.score_pool3.bias)

    def forward(self, pool3: torch.Tensor, pool4: torch.Tensor, fc7: torch.Tensor) -> list[torch.Tensor]:
        scores = [self.score_fr(fc7)]
        if self.variant <= 16:
            scores.append(self.score_pool4(pool4))
        if self.variant == 8:
            scores.append(self.score_pool3(pool3))
        return scores


class FCNDecoder(nn.Module):
    """Upsampling and fusion of the score maps: x2 and add (per skip), then one final upsampling
    (x32, x16 or x8) to the input's resolution."""

    def __init__(self, num_classes: int, variant: int) -> None:
        super().__init__()
        self.variant = variant
        self.fuse = SkipFusion("add")
        if variant <= 16:
            self.upscore2 = TransposedConvUpsample(num_classes, num_classes, 2)
        if variant == 8:
            self.upscore_pool4 = TransposedConvUpsample(num_classes, num_classes, 2)
        self.upscore_final = TransposedConvUpsample(num_classes, num_classes, variant)

    def forward(self, scores: list[torch.Tensor]) -> torch.Tensor:
        x = scores[0]
        if self.variant <= 16:
            x = self.fuse(self.upscore2(x), scores[1])
        if self.variant == 8:
            x = self.fuse(self.upscore_pool4(x), scores[2])
        return self.upscore_final(x)


class FCN(Segmenter):
    """FCN-``variant``s (32, 16 or 8) on VGG-16. ``width`` scales VGG's channels and ``fc_channels``
    is fc6/fc7's width (4096 in the paper); smaller values make quick test models."""

    def __init__(
        self,
        num_classes: int = 21,
        in_channels: int = 3,
        variant: int = 8,
        width: float = 1.0,
        fc_channels: int = 4096,
        dropout: float = 0.5,
    ) -> None:
        super().__init__(num_classes, in_channels)
        if variant not in (32, 16, 8):
            raise ValueError(f"FCN variant must be 32, 16 or 8, got {variant}")
        self.variant = variant
        self.encoder = VGGEncoder(in_channels, width=width, fc_channels=fc_channels, dropout=dropout)
        self._build_classifier(num_classes)

    def _build_classifier(self, num_classes: int) -> None:
        ch = self.encoder.out_channels
        self.head = FCNHead([ch[2], ch[3], ch[5]], num_classes, self.variant)
        self.decoder = FCNDecoder(num_classes, self.variant)
        self.num_classes = num_classes

    def reset_classifier(self, num_classes: int) -> None:
        """New score layers and upsampling for ``num_classes`` (all of FCN's class-sized layers)."""
        device = self.mean.device
        self._build_classifier(num_classes)
        self.head.to(device)
        self.decoder.to(device)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        _, _, pool3, pool4, _, fc7 = self.encoder(pad_to_multiple(x, 32))
        return self.decoder(self.head(pool3, pool4, fc7))[..., :h, :w]


def _fcn(variant: int, num_classes: int, in_channels: int, pretrained, **kwargs) -> FCN:
    model = FCN(num_classes, in_channels, variant, **kwargs)
    model.pretrained_report = load_pretrained(
        model, pretrained, arch="vgg16", key_map=VGGEncoder.torchvision_key_map
    )
    return model


@register_model(task="segment", backbone="vgg16", input_size=(3, 512, 512), paper="Long et al. 2015")
def fcn32s_vgg16(num_classes: int = 21, in_channels: int = 3, pretrained: str | None = None, **kwargs) -> FCN:
    """FCN-32s: score of fc7 upsampled x32 in one step."""
    return _fcn(32, num_classes, in_channels, pretrained, **kwargs)


@register_model(task="segment", backbone="vgg16", input_size=(3, 512, 512), paper="Long et al. 2015")
def fcn16s_vgg16(num_classes: int = 21, in_channels: int = 3, pretrained: str | None = None, **kwargs) -> FCN:
    """FCN-16s: fc7's score x2 plus pool4's score, then x16."""
    return _fcn(16, num_classes, in_channels, pretrained, **kwargs)


@register_model(task="segment", backbone="vgg16", input_size=(3, 512, 512), paper="Long et al. 2015")
def fcn8s_vgg16(num_classes: int = 21, in_channels: int = 3, pretrained: str | None = None, **kwargs) -> FCN:
    """FCN-8s: as FCN-16s, then x2 plus pool3's score, then x8."""
    return _fcn(8, num_classes, in_channels, pretrained, **kwargs)
