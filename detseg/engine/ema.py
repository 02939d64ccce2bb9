"""Exponential moving average of a model's weights (Polyak averaging), for evaluation and prediction.

    ema = ModelEma(model, decay=0.99)
    ...optimizer.step(); ema.update(model)
    evaluate(ema.module)

The average covers every floating-point parameter and buffer (BatchNorm statistics too); integer
buffers (BatchNorm's step counter) are copied. Early in training the decay is held at
``(1 + n) / (10 + n)`` after ``n`` updates (as timm's ModelEma does), so the average does not drag
the random initial weights along: with ``decay=0.99`` it reaches 0.99 after about 900 steps and
averages over about the last 100 steps from then on.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class ModelEma:
    """An averaged copy of ``model`` (``.module``, eval mode, no gradients) updated after each step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be between 0 and 1 (e.g. 0.99), got {decay}")
        self.decay = float(decay)
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)

    def current_decay(self) -> float:
        """The decay the next update uses (held lower for the first updates)."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        weight = 1.0 - self.current_decay()
        self.updates += 1
        averaged, current = [], []
        for avg, new in zip(self.module.state_dict().values(), model.state_dict().values(), strict=True):
            if avg.dtype.is_floating_point:
                averaged.append(avg)
                current.append(new.detach())
            else:
                avg.copy_(new)
        if averaged:
            torch._foreach_lerp_(averaged, current, weight)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        self.updates = int(state["updates"])
