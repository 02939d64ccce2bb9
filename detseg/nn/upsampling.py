"""Down- and upsampling as the lecture draws them (section 5).

Max pooling that remembers where each maximum came from, unpooling back to those positions
(DeconvNet), nearest-neighbour and "bed of nails" upsampling, learnable transposed convolution
and bilinear interpolation. All take and return ``Tensor[B, C, H, W]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaxPoolWithIndices(nn.Module):
    """``nn.MaxPool2d(return_indices=True)`` that also returns the input size, for :class:`MaxUnpool`.

    ``forward(x: Tensor[B, C, H, W]) -> (Tensor[B, C, H', W'], LongTensor[B, C, H', W'], (H, W))``;
    the indices are flat positions ``y * W + x`` in each input plane.
    """

    def __init__(self, kernel_size: int = 2, stride: int | None = None, ceil_mode: bool = False) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(kernel_size, stride, return_indices=True, ceil_mode=ceil_mode)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        out, indices = self.pool(x)
        return out, indices, (x.shape[-2], x.shape[-1])


class MaxUnpool(nn.Module):
    """Unpooling: each value goes back to its remembered max position, zeros elsewhere (DeconvNet).

    ``forward(x, indices, output_size)``: ``output_size`` (the pooled input's H, W) makes odd sizes
    come back exactly.
    """

    def __init__(self, kernel_size: int = 2, stride: int | None = None) -> None:
        super().__init__()
        self.unpool = nn.MaxUnpool2d(kernel_size, stride)

    def forward(self, x: torch.Tensor, indices: torch.Tensor, output_size: tuple[int, int]) -> torch.Tensor:
        return self.unpool(x, indices, output_size=list(output_size))


class NearestUpsample(nn.Module):
    """Nearest-neighbour upsampling: each value repeated in a ``scale x scale`` block."""

    def __init__(self, scale: int = 2) -> None:
        super().__init__()
        self.scale = int(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale, mode="nearest")


class BedOfNailsUpsample(nn.Module):
    """ "Bed of nails": each value at its ``scale x scale`` block's top-left corner, zeros elsewhere."""

    def __init__(self, scale: int = 2) -> None:
        super().__init__()
        self.scale = int(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        out = x.new_zeros(b, c, h * self.scale, w * self.scale)
        out[..., :: self.scale, :: self.scale] = x
        return out


class BilinearUpsample(nn.Module):
    """Bilinear interpolation by ``scale`` or to the size given in ``forward(x, size=...)``."""

    def __init__(self, scale: float | None = 2, align_corners: bool = False) -> None:
        super().__init__()
        self.scale = scale
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        if size is not None:
            return F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners)
        return F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=self.align_corners)


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Weights ``[channels, channels, k, k]`` that make a transposed convolution bilinear interpolation
    (channel i to channel i only), as FCN initialises its upsampling layers."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    r = torch.arange(kernel_size, dtype=torch.float32)
    filt = 1 - (r - center).abs() / factor
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = filt[:, None] * filt[None, :]
    return weight


class TransposedConvUpsample(nn.Module):
    """Learnable upsampling by an integer ``scale`` with ``ConvTranspose2d(kernel=2*scale, stride=scale,
    padding=scale//2)``, so ``H -> scale * H`` exactly (even scales); starts as bilinear when
    ``bilinear_init`` and ``in_channels == out_channels`` (FCN)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        scale: int = 2,
        bias: bool = False,
        bilinear_init: bool = True,
    ) -> None:
        super().__init__()
        if scale < 2 or scale % 2:
            raise ValueError(f"TransposedConvUpsample needs an even scale >= 2, got {scale}")
        self.conv = nn.ConvTranspose2d(
            in_channels, out_channels, 2 * scale, stride=scale, padding=scale // 2, bias=bias
        )
        if bilinear_init and in_channels == out_channels:
            with torch.no_grad():
                self.conv.weight.copy_(bilinear_kernel(in_channels, 2 * scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def transposed_conv_output_size(
    size: int, kernel_size: int, stride: int, padding: int = 0, output_padding: int = 0, dilation: int = 1
) -> int:
    """``(size - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1``."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1


def resize_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``Tensor[B, C, h, w]`` to ``size`` (no-op when already that size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
