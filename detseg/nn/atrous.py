"""Atrous (dilated) convolution and ASPP, atrous spatial pyramid pooling with image pooling (DeepLabv3).

A ``k x k`` filter with dilation rate ``r`` spaces its taps ``r`` pixels apart: it sees
``r * (k - 1) + 1`` pixels per side with the same ``k * k`` weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def dilated_kernel_extent(kernel_size: int, dilation: int) -> int:
    """Pixels per side one dilated filter covers: ``dilation * (kernel_size - 1) + 1``."""
    return dilation * (kernel_size - 1) + 1


def receptive_field(layers: Sequence[tuple[int, int, int]]) -> int:
    """Receptive field of a stack of convolutions given as ``(kernel_size, stride, dilation)`` each.

    ``rf = 1 + sum_l (extent_l - 1) * prod_{j<l} stride_j`` with ``extent = d * (k - 1) + 1``.
    """
    rf, jump = 1, 1
    for k, s, d in layers:
        rf += (dilated_kernel_extent(k, d) - 1) * jump
        jump *= s
    return rf


class AtrousConv2d(nn.Conv2d):
    """``Conv2d`` with ``dilation`` and the padding that keeps the size at stride 1 (odd kernels)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        dilation: int = 1,
        stride: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=dilation * (kernel_size - 1) // 2,
            dilation=dilation,
            bias=bias,
        )


class ASPPConv(nn.Sequential):
    """3x3 atrous conv, batch norm, ReLU: one ASPP branch."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int) -> None:
        super().__init__(
            AtrousConv2d(in_channels, out_channels, 3, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )


class ASPPPooling(nn.Sequential):
    """Image pooling branch: global average, 1x1 conv, BN, ReLU, then spread back over the map.

    Its batch norm sees one value per channel and image, so training needs batches of 2 or more
    (as in torchvision).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        for module in self:
            x = module(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (Chen et al. 2017): a 1x1 conv, one 3x3 atrous conv per rate and
    image pooling in parallel, concatenated and projected to ``out_channels`` by a 1x1 conv.

    ``Tensor[B, in_channels, H, W] -> Tensor[B, out_channels, H, W]``. The paper's rates are
    (6, 12, 18) at output stride 16 and doubled at output stride 8. Module names follow
    torchvision's ``ASPP`` so its state dicts load.
    """

    def __init__(
        self,
        in_channels: int,
        atrous_rates: Sequence[int] = (6, 12, 18),
        out_channels: int = 256,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        branches: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU()
            )
        ]
        branches += [ASPPConv(in_channels, out_channels, rate) for rate in atrous_rates]
        branches.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            nn.Conv2d(len(branches) * out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))
