"""Tiny models and in-memory data sets for the engine's tests (fast on one CPU thread)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset


class ToySegmenter(nn.Module):
    """Two 3x3 convolutions, no BatchNorm (so DDP equals one process exactly), optional dropout."""

    def __init__(self, num_classes: int = 2, in_channels: int = 3, width: int = 8, dropout: float = 0.0):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Dropout2d(dropout),
            nn.Conv2d(width, num_classes, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class PointwiseSegmenter(nn.Module):
    """A 1x1 convolution: each output pixel depends on its own input pixel only (tiling changes nothing)."""

    def __init__(self, num_classes: int = 2, in_channels: int = 3):
        super().__init__()
        self.head = nn.Conv2d(in_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


class BlobData(Dataset):
    """Images with bright squares on noise; the mask marks the squares (class 1).

    ``augment`` flips at random with the global torch RNG, like a transform would, so that exact
    resume has to restore that RNG.
    """

    def __init__(self, n: int = 12, size: int = 16, seed: int = 0, augment: bool = False):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.rand(n, 3, size, size, generator=g) * 0.5
        self.masks = torch.zeros(n, size, size, dtype=torch.int64)
        for i in range(n):
            y, x = torch.randint(0, size // 2, (2,), generator=g).tolist()
            s = size // 3
            self.images[i, :, y : y + s, x : x + s] += 0.5
            self.masks[i, y : y + s, x : x + s] = 1
        self.augment = augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        image, mask = self.images[i], self.masks[i]
        if self.augment and torch.rand(()) < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        return image.clone(), mask.clone()
