"""ParseNet (Liu, Rabinovich and Berg, "ParseNet: Looking Wider to See Better", 2015) on FCN's VGG-16.

FCN-32s's fc7 features (stride 32) get global context:

- global average pooling of fc7 over the whole image: one ``[B, C, 1, 1]`` vector;
- L2 normalisation of each feature vector across channels, ``x / ||x||_2``, followed by a learned
  per-channel scale ``gamma`` (both for the global vector and for every local fc7 position: features
  of different layers have very different norms, and without the normalisation the larger one wins);
- "unpooling": the global vector broadcast (repeated) to fc7's spatial size, concatenated to the
  local features (early fusion, 2 C channels);
- the classifier (1x1 convolution) and FCN-32s's x32 upsampling (a learnable transposed convolution
  initialised to bilinear interpolation).

The scales start at 10 (the paper's point: a learned scale makes normalised features train as fast as
raw ones; Caffe's ParseNet models start their Normalize layers at 10). Any input size: as in
:mod:`detseg.models.fcn`, the input is padded bottom/right to a multiple of 32 and the logits cropped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from detseg.models.backbones import VGGEncoder, load_pretrained
from detseg.models.registry import register_model
from detseg.nn import Segmenter, TransposedConvUpsample, pad_to_multiple


class L2Norm(nn.Module):
    """``gamma_c * x_c / ||x||_2`` at every position of ``Tensor[B, C, H, W]``; ``gamma`` is learned per
    channel."""

    def __init__(self, channels: int, scale: float = 10.0, eps: float = 1e-10) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1, eps=self.eps) * self.weight.view(1, -1, 1, 1)


class GlobalContext(nn.Module):
    """ParseNet's context fusion: ``Tensor[B, C, h, w] -> Tensor[B, 2 C, h, w]`` =
    concat(L2Norm(local), unpool(L2Norm(global average pool)))."""

    def __init__(self, channels: int, scale: float = 10.0) -> None:
        super().__init__()
        self.local_norm = L2Norm(channels, scale)
        self.global_norm = L2Norm(channels, scale)
        self.out_channels = 2 * channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self.global_norm(F.adaptive_avg_pool2d(x, 1))
        return torch.cat([self.local_norm(x), context.expand(-1, -1, *x.shape[-2:])], dim=1)


class ParseNetHead(nn.Module):
    """1x1 classifier on the fused features, then x32 learnable upsampling (bilinear initialisation):
    ``Tensor[B, 2 C, h, w] -> Tensor[B, num_classes, 32 h, 32 w]``."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.score = nn.Conv2d(in_channels, num_classes, 1)
        self.upscore = TransposedConvUpsample(num_classes, num_classes, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upscore(self.score(x))


class ParseNet(Segmenter):
    """ParseNet on VGG-16 with fc6/fc7 as convolutions (FCN-32s's network). ``width`` scales VGG's
    channels and ``fc_channels`` is fc6/fc7's width (4096); ``scale`` is the L2 norms' initial scale.
    ``batch_norm=True`` uses VGG-16-BN (torchvision ``vgg16_bn`` weights): plain VGG-16 barely trains from
    scratch (on membrane its loss stays flat for 90 AdamW steps)."""

    def __init__(
        self,
        num_classes: int = 21,
        in_channels: int = 3,
        width: float = 1.0,
        fc_channels: int = 4096,
        dropout: float = 0.5,
        scale: float = 10.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__(num_classes, in_channels)
        self.encoder = VGGEncoder(
            in_channels, batch_norm=batch_norm, width=width, fc_channels=fc_channels, dropout=dropout
        )
        self.decoder = GlobalContext(fc_channels, scale)
        self.head = ParseNetHead(self.decoder.out_channels, num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        """A new classifier and upsampling (both class-sized) for ``num_classes``."""
        self.head = ParseNetHead(self.decoder.out_channels, num_classes).to(self.mean.device)
        self.num_classes = num_classes

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        fc7 = self.encoder(pad_to_multiple(x, 32))[-1]
        return self.head(self.decoder(fc7))[..., :h, :w]


@register_model(task="segment", backbone="vgg16", input_size=(3, 512, 512), paper="Liu et al. 2015")
def parsenet_vgg16(
    num_classes: int = 21, in_channels: int = 3, pretrained: str | None = None, **kwargs
) -> ParseNet:
    """ParseNet: FCN-32s's VGG-16 with L2-normalised, scaled global context concatenated to fc7."""
    model = ParseNet(num_classes, in_channels, **kwargs)
    arch = "vgg16_bn" if kwargs.get("batch_norm") else "vgg16"
    model.pretrained_report = load_pretrained(
        model, pretrained, arch=arch, key_map=VGGEncoder.torchvision_key_map
    )
    return model
