"""Small convolution blocks: conv-BN-ReLU, strided convolution, skip fusion, padding helpers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Sequential):
    """``Conv2d(k, stride, dilation)`` (+ ``BatchNorm2d``) + ``ReLU``; ``padding="same"`` keeps the size
    at stride 1, ``"valid"`` pads nothing (the original U-Net)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: str = "same",
        dilation: int = 1,
        batch_norm: bool = True,
    ) -> None:
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
        pad = dilation * (kernel_size - 1) // 2 if padding == "same" else 0
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, pad, dilation, bias=not batch_norm)
        ]
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class StridedConv(ConvBNReLU):
    """Downsampling by a learnable strided convolution (stride 2 halves H and W, rounding up)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 2,
        kernel_size: int = 3,
        batch_norm: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, batch_norm=batch_norm)


def center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The central ``size`` window of ``Tensor[..., H, W]`` (U-Net crops its skips this way)."""
    h, w = x.shape[-2:]
    th, tw = size
    if th > h or tw > w:
        raise ValueError(f"cannot crop {h}x{w} to a larger {th}x{tw}")
    top, left = (h - th) // 2, (w - tw) // 2
    return x[..., top : top + th, left : left + tw]


class SkipFusion(nn.Module):
    """Combine a low-resolution semantic map with a high-resolution skip feature.

    ``mode="add"`` (FCN: sum of score maps) or ``"concat"`` (U-Net: channel concatenation).
    When sizes differ, ``align="crop"`` centre-crops the skip to the map's size (U-Net's valid
    convolutions leave the skip larger) and ``align="resize"`` resizes the map bilinearly to the skip's.
    ``forward(x, skip) -> Tensor[B, C(+C_skip), h, w]``.
    """

    def __init__(self, mode: str = "concat", align: str = "crop") -> None:
        super().__init__()
        if mode not in ("add", "concat"):
            raise ValueError(f"mode must be 'add' or 'concat', got {mode!r}")
        if align not in ("crop", "resize"):
            raise ValueError(f"align must be 'crop' or 'resize', got {align!r}")
        self.mode, self.align = mode, align

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if skip.shape[-2:] != x.shape[-2:]:
            if self.align == "crop":
                skip = center_crop(skip, (x.shape[-2], x.shape[-1]))
            else:
                x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return x + skip if self.mode == "add" else torch.cat([x, skip], dim=1)


def mirror_pad(x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    """Reflect padding of any width (repeats the reflection when a pad exceeds the image), as the
    U-Net paper's overlap-tile strategy extrapolates missing context by mirroring."""
    while left or right or top or bottom:
        h, w = x.shape[-2:]
        step = [min(left, w - 1), min(right, w - 1), min(top, h - 1), min(bottom, h - 1)]
        if max(step) == 0:  # a 1-pixel side cannot reflect: repeat it
            return F.pad(x, (left, right, top, bottom), mode="replicate")
        x = F.pad(x, step, mode="reflect")
        left, right, top, bottom = (a - b for a, b in zip((left, right, top, bottom), step, strict=True))
    return x


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "constant") -> torch.Tensor:
    """Pad ``Tensor[B, C, H, W]`` on the bottom and right so H and W are multiples of ``multiple``.

    ``mode``: ``"constant"`` (zeros) or ``"reflect"`` (mirror, any width). Crop back with
    ``out[..., :H, :W]``.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    if mode == "reflect":
        return mirror_pad(x, 0, pw, 0, ph)
    return F.pad(x, (0, pw, 0, ph))
