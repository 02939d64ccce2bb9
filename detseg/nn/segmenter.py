"""The parts every detseg segmenter shares: input normalisation, encoder/decoder/head, classifier reset.

A segmenter maps float images ``Tensor[B, C_in, H, W]`` in [0, 1] to logits
``Tensor[B, num_classes, H, W]`` of the same H, W, normalising with ImageNet's mean and std inside
(for ``in_channels != 3`` the mean of the three).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def channel_stats(
    in_channels: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> tuple[list[float], list[float]]:
    """An RGB normalisation (ImageNet's by default) for 3 channels; its averages repeated for any other
    channel count."""
    if in_channels == 3:
        return list(mean), list(std)
    return [sum(mean) / 3] * in_channels, [sum(std) / 3] * in_channels


class Segmenter(nn.Module):
    """Base class: subclasses set ``encoder``, ``decoder``, ``head`` and implement ``forward_logits``
    (normalised input to logits of the input's size) and ``reset_classifier``."""

    encoder: nn.Module
    decoder: nn.Module
    head: nn.Module

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        mean, std = channel_stats(in_channels)
        # Not persistent: constants, so state dicts hold only learned weights (and load across versions).
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self._encoder_frozen = False

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects images Tensor[B, {self.in_channels}, H, W], got shape "
                f"{tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise ValueError(f"{type(self).__name__} expects float images in [0, 1], got dtype {x.dtype}")
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``Tensor[B, C_in, H, W]`` floats in [0, 1] -> logits ``Tensor[B, num_classes, H, W]``."""
        return self.forward_logits(self.normalize(x))

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def freeze_encoder(self, frozen: bool = True) -> None:
        """Stop the encoder's gradients and keep its batch norms in eval mode (feature extraction)."""
        self._encoder_frozen = frozen
        for p in self.encoder.parameters():
            p.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> Segmenter:
        super().train(mode)
        if self._encoder_frozen:
            self.encoder.eval()
        return self
