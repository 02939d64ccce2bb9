"""Test-time augmentation for segmenters: average class probabilities over flipped and turned views.

Each view is the input flipped and/or turned by a multiple of 90 degrees; the network's probabilities
for it are turned back and averaged. Worth it where the image has no up or down (microscopy, aerial
views; a model trained with ``--vflip``/``--rotate``): the mean of several views has fewer isolated
errors. It costs one forward pass per view.

- ``hflip``: the image and its mirror (2 views);
- ``flips``: no flip, horizontal, vertical, both (4 views);
- ``d4``: the 8 symmetries of the square (the 4 turns, each also mirrored).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from detseg.engine.tasks import class_logits

#: views as (turns by 90 degrees, mirror left-right) pairs
MODES: dict[str, list[tuple[int, bool]]] = {
    "hflip": [(0, False), (0, True)],
    "flips": [(0, False), (0, True), (2, True), (2, False)],  # a half turn + mirror = vertical flip
    "d4": [(turns, mirror) for turns in range(4) for mirror in (False, True)],
}


def _view(x: Tensor, turns: int, mirror: bool) -> Tensor:
    if mirror:
        x = x.flip(-1)
    return torch.rot90(x, turns, dims=(-2, -1)) if turns else x


def _unview(x: Tensor, turns: int, mirror: bool) -> Tensor:
    if turns:
        x = torch.rot90(x, -turns, dims=(-2, -1))
    return x.flip(-1) if mirror else x


class TestTimeAugmentation(nn.Module):
    """Wraps a segmenter ``[B, C, H, W] -> [B, K, H, W]`` logits; returns the log of the views' mean
    probabilities (``[B, K, H, W]``, so argmax and cross-entropy work as on logits). A one-channel
    (binary) model gets back one channel: the logit of the mean sigmoid probability."""

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, model: nn.Module, mode: str = "flips") -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"test-time augmentation must be one of {', '.join(MODES)}, not {mode!r}")
        self.model, self.mode = model, mode

    def forward(self, x: Tensor) -> Tensor:
        total, binary = None, False
        for turns, mirror in MODES[self.mode]:
            logits = self.model(_view(x, turns, mirror)).float()
            binary = logits.shape[1] == 1
            probs = _unview(class_logits(logits).softmax(1), turns, mirror)
            total = probs if total is None else total + probs
        mean = (total / len(MODES[self.mode])).clamp_min(1e-7)
        if binary:
            positive = mean[:, 1:].clamp_max(1 - 1e-7)
            return positive.log() - (1 - positive).log()
        return mean.log()


def with_tta(model: nn.Module, mode: str | None, task: str) -> nn.Module:
    """``model`` wrapped in :class:`TestTimeAugmentation` for ``mode`` ("hflip", "flips", "d4"), or
    as it is when ``mode`` is None; refused for a model of another ``task`` than "segment"."""
    if not mode:
        return model
    if task != "segment":
        raise ValueError(
            f"test-time augmentation (--tta) is for segmentation models, not a {task} model "
            "(a detector's boxes are not averaged)"
        )
    return TestTimeAugmentation(model, mode)

