"""U-Net (Ronneberger, Fischer and Brox, MICCAI 2015) and U-Net decoders on pre-trainable encoders.

The original: ``depth`` times (two 3x3 convolutions, 2x2 max pool), doubling the width from ``width``
(64); two convolutions at the bottom; then ``depth`` times (2x2 up-convolution halving the width,
concatenation with the encoder's map of that level, two 3x3 convolutions); a 1x1 convolution to the
classes. ``batch_norm=True`` (default) adds batch norm after each convolution, which the paper did
not have but which makes training from scratch much faster.

Output size equals input size, for any input size:
- ``padding="same"``: the input is mirror-padded on the bottom and right to a multiple of
  ``2 ** depth`` and the logits are cropped back.
- ``padding="valid"`` (the paper's unpadded convolutions, each losing a pixel per side): the paper's
  overlap-tile strategy. The input is mirror-padded by the margin the network eats
  (92 pixels per side at depth 4, as 572 -> 388) plus what rounds the output up to a size the
  network can produce; the logits are cropped to the input's size. Skip maps are centre-cropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from detseg.models.backbones import build_encoder, load_pretrained
from detseg.models.registry import register_model
from detseg.nn import ConvBNReLU, Segmenter, SkipFusion, mirror_pad, pad_to_multiple


def double_conv(in_channels: int, out_channels: int, padding: str, batch_norm: bool) -> nn.Sequential:
    return nn.Sequential(
        ConvBNReLU(in_channels, out_channels, 3, padding=padding, batch_norm=batch_norm),
        ConvBNReLU(out_channels, out_channels, 3, padding=padding, batch_norm=batch_norm),
    )


def valid_unet_sizes(size: int, depth: int) -> tuple[int, int]:
    """For a valid-padding U-Net of ``depth``: the smallest ``(input, output)`` sizes it can run with
    ``output >= size``. Depth 4 and size 388 give (572, 388), the paper's tile."""
    bottom = 1
    while True:
        out = bottom
        for _ in range(depth):
            out = 2 * out - 4  # up-convolution doubles, two 3x3 convolutions lose 4
        if out >= max(size, 1):
            break
        bottom += 1
    inp = bottom + 4
    for _ in range(depth):
        inp = 2 * inp + 4  # pooling halves (even sizes), two convolutions lose 4
    return inp, out


class UNetEncoder(nn.Module):
    """Contracting path. ``forward(x) -> [level_0, ..., level_{depth-1}, bottom]`` (pre-pool maps)."""

    def __init__(self, in_channels: int, depth: int, width: int, padding: str, batch_norm: bool) -> None:
        super().__init__()
        widths = [width * 2**i for i in range(depth + 1)]
        self.levels = nn.ModuleList(
            double_conv(a, b, padding, batch_norm)
            for a, b in zip([in_channels] + widths[:-1], widths, strict=True)
        )
        self.pool = nn.MaxPool2d(2)
        self.out_channels = widths

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.levels[0](x)]
        for level in self.levels[1:]:
            feats.append(level(self.pool(feats[-1])))
        return feats


class UNetDecoder(nn.Module):
    """Expanding path: per level, a 2x2 up-convolution halving the width, concatenation with the
    (centre-cropped) encoder map, two 3x3 convolutions."""

    def __init__(self, widths: Sequence[int], padding: str, batch_norm: bool) -> None:
        super().__init__()
        deep_to_shallow = list(reversed(widths))
        self.ups = nn.ModuleList(nn.ConvTranspose2d(c, c // 2, 2, stride=2) for c in deep_to_shallow[:-1])
        self.convs = nn.ModuleList(double_conv(c, c // 2, padding, batch_norm) for c in deep_to_shallow[:-1])
        self.fuse = SkipFusion("concat")

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        for up, conv, skip in zip(self.ups, self.convs, reversed(feats[:-1]), strict=True):
            x = conv(self.fuse(up(x), skip))
        return x


class UNet(Segmenter):
    """The original U-Net with ``depth`` poolings and base ``width`` (see the module docstring)."""

    def __init__(
        self,
        num_classes: int = 2,
        in_channels: int = 3,
        depth: int = 4,
        width: int = 64,
        padding: str = "same",
        batch_norm: bool = True,
    ) -> None:
        super().__init__(num_classes, in_channels)
        if padding not in ("same", "valid"):
            raise ValueError(f"U-Net padding must be 'same' or 'valid', got {padding!r}")
        if depth < 1:
            raise ValueError(f"U-Net depth must be >= 1, got {depth}")
        self.depth, self.padding = depth, padding
        self.encoder = UNetEncoder(in_channels, depth, width, padding, batch_norm)
        self.decoder = UNetDecoder(self.encoder.out_channels, padding, batch_norm)
        self.head = nn.Conv2d(width, num_classes, 1)

    def reset_classifier(self, num_classes: int) -> None:
        old = self.head
        self.head = nn.Conv2d(old.in_channels, num_classes, 1).to(old.weight.device)
        self.num_classes = num_classes

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.padding == "same":
            x = pad_to_multiple(x, 2**self.depth, mode="reflect")
        else:
            (in_h, out_h), (in_w, out_w) = valid_unet_sizes(h, self.depth), valid_unet_sizes(w, self.depth)
            top, left = (in_h - out_h) // 2, (in_w - out_w) // 2  # the margin the convolutions eat
            x = mirror_pad(x, left, in_w - w - left, top, in_h - h - top)
        return self.head(self.decoder(self.encoder(x)))[..., :h, :w]


class EncoderUNetDecoder(nn.Module):
    """U-Net decoder for a 5-stage encoder (strides 2..32): per stage, upsample x2 (nearest) to the skip's
    size, concatenate, two conv-BN-ReLU; a last block upsamples to the input size without a skip."""

    def __init__(
        self, encoder_channels: Sequence[int], decoder_channels: Sequence[int] = (256, 128, 64, 32, 16)
    ) -> None:
        super().__init__()
        skips = list(reversed(encoder_channels[:-1])) + [0]
        ins = [encoder_channels[-1]] + list(decoder_channels[:-1])
        self.blocks = nn.ModuleList(
            double_conv(i + s, o, "same", True) for i, s, o in zip(ins, skips, decoder_channels, strict=True)
        )
        self.fuse = SkipFusion("concat")

    def forward(self, feats: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        x = feats[-1]
        targets = [f.shape[-2:] for f in reversed(feats[:-1])] + [size]
        skips = list(reversed(feats[:-1])) + [None]
        for block, target, skip in zip(self.blocks, targets, skips, strict=True):
            x = F.interpolate(x, size=tuple(target), mode="nearest")
            x = block(x if skip is None else self.fuse(x, skip))
        return x


class EncoderUNet(Segmenter):
    """U-Net with a torchvision encoder (resnet18/34/50, mobilenet_v2) whose 5 stages feed the skips."""

    def __init__(
        self,
        encoder: str = "resnet34",
        num_classes: int = 2,
        in_channels: int = 3,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
    ) -> None:
        super().__init__(num_classes, in_channels)
        self.encoder = build_encoder(encoder, in_channels)
        if len(self.encoder.out_channels) != 5:
            raise ValueError(
                f"encoder {encoder!r} must give 5 stages, gives {len(self.encoder.out_channels)}"
            )
        self.decoder = EncoderUNetDecoder(self.encoder.out_channels, decoder_channels)
        self.head = nn.Conv2d(decoder_channels[-1], num_classes, 3, padding=1)

    def reset_classifier(self, num_classes: int) -> None:
        old = self.head
        self.head = nn.Conv2d(old.in_channels, num_classes, 3, padding=1).to(old.weight.device)
        self.num_classes = num_classes

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.encoder(x), (x.shape[-2], x.shape[-1])))


@register_model(task="segment", backbone="unet", input_size=(3, 512, 512), paper="Ronneberger et al. 2015")
def unet(
    num_classes: int = 2,
    in_channels: int = 3,
    pretrained: str | None = None,
    depth: int = 4,
    width: int = 64,
    padding: str = "same",
    batch_norm: bool = True,
) -> UNet:
    """The original U-Net (no pre-trained encoder exists; ``pretrained`` takes a detseg checkpoint)."""
    model = UNet(num_classes, in_channels, depth, width, padding, batch_norm)
    model.pretrained_report = load_pretrained(model, pretrained)
    return model


def _encoder_unet(encoder: str, num_classes: int, in_channels: int, pretrained: str | None, **kwargs):
    model = EncoderUNet(encoder, num_classes, in_channels, **kwargs)
    model.pretrained_report = load_pretrained(model, pretrained, arch=encoder)
    return model


@register_model(task="segment", backbone="resnet18", input_size=(3, 512, 512))
def unet_resnet18(
    num_classes: int = 2, in_channels: int = 3, pretrained: str | None = None, **kwargs
) -> EncoderUNet:
    """U-Net decoder on ResNet-18 (torchvision ``ResNet18_Weights`` load into the encoder)."""
    return _encoder_unet("resnet18", num_classes, in_channels, pretrained, **kwargs)


@register_model(task="segment", backbone="resnet34", input_size=(3, 512, 512))
def unet_resnet34(
    num_classes: int = 2, in_channels: int = 3, pretrained: str | None = None, **kwargs
) -> EncoderUNet:
    """U-Net decoder on ResNet-34."""
    return _encoder_unet("resnet34", num_classes, in_channels, pretrained, **kwargs)


@register_model(task="segment", backbone="mobilenet_v2", input_size=(3, 512, 512))
def unet_mobilenet_v2(
    num_classes: int = 2, in_channels: int = 3, pretrained: str | None = None, **kwargs
) -> EncoderUNet:
    """U-Net decoder on MobileNetV2."""
    return _encoder_unet("mobilenet_v2", num_classes, in_channels, pretrained, **kwargs)
