"""DeconvNet (Noh, Hong and Han, ICCV 2015): a VGG-16 encoder (with batch norm, as the paper adds)
and a mirrored decoder of unpooling at the remembered max positions and deconvolution layers.

Any input size: the input is padded on the bottom and right to a multiple of 32 and the logits are
cropped back. The paper's fc6 is a 7x7 convolution without padding that collapses a 224x224 input's
7x7 pool5 map to 1x1, and its deconv-fc6 re-expands it; here both pad by 3 and keep the map's size,
so inputs of any size work (identical layer shapes, so the weights are interchangeable).
"""

from __future__ import annotations

import torch
from torch import nn

from detseg.models.backbones import VGGEncoder, load_pretrained
from detseg.models.registry import register_model
from detseg.nn import MaxUnpool, Segmenter, pad_to_multiple


def deconv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    """ "Deconvolution" (transposed convolution, stride 1, size kept) + batch norm + ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class DeconvDecoder(nn.Module):
    """deconv-fc6, then per stage 5..1: unpool with the encoder's indices and VGG's convolutions
    mirrored as deconvolutions (the last of each stage narrows to the next stage's width)."""

    def __init__(self, stage_channels: list[int], fc_channels: int) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = stage_channels
        self.deconv_fc6 = deconv_bn_relu(fc_channels, c5, 7)
        self.unpool = MaxUnpool(2, 2)
        plan = [[c5, c5, c5, c4], [c4, c4, c4, c3], [c3, c3, c3, c2], [c2, c2, c1], [c1, c1, c1]]
        self.stages = nn.ModuleList(
            nn.Sequential(*(deconv_bn_relu(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)))
            for widths in plan
        )

    def forward(
        self, x: torch.Tensor, remembered: list[tuple[torch.Tensor, tuple[int, int]]]
    ) -> torch.Tensor:
        x = self.deconv_fc6(x)
        for stage, (indices, size) in zip(self.stages, reversed(remembered), strict=True):
            x = stage(self.unpool(x, indices, size))
        return x


class DeconvNet(Segmenter):
    """DeconvNet. ``width`` scales VGG's channels, ``fc_channels`` is fc6/fc7's width (4096), ``dropout``
    follows fc6 and fc7."""

    def __init__(
        self,
        num_classes: int = 21,
        in_channels: int = 3,
        width: float = 1.0,
        fc_channels: int = 4096,
        dropout: float = 0.5,
    ) -> None:
        super().__init__(num_classes, in_channels)
        self.encoder = VGGEncoder(
            in_channels, batch_norm=True, width=width, fc_channels=fc_channels, dropout=dropout
        )
        self.decoder = DeconvDecoder(self.encoder.out_channels[:5], fc_channels)
        self.head = nn.Conv2d(self.encoder.out_channels[0], num_classes, 1)

    def reset_classifier(self, num_classes: int) -> None:
        old = self.head
        self.head = nn.Conv2d(old.in_channels, num_classes, 1).to(old.weight.device)
        self.num_classes = num_classes

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x, remembered = self.encoder.forward_with_indices(pad_to_multiple(x, 32))
        x = self.decoder(self.encoder.forward_fc(x), remembered)
        return self.head(x)[..., :h, :w]


@register_model(task="segment", backbone="vgg16_bn", input_size=(3, 224, 224), paper="Noh et al. 2015")
def deconvnet_vgg16(
    num_classes: int = 21, in_channels: int = 3, pretrained: str | None = None, **kwargs
) -> DeconvNet:
    """DeconvNet on VGG-16-BN (torchvision ``vgg16_bn`` weights load into the encoder)."""
    model = DeconvNet(num_classes, in_channels, **kwargs)
    model.pretrained_report = load_pretrained(
        model, pretrained, arch="vgg16_bn", key_map=VGGEncoder.torchvision_key_map
    )
    return model
