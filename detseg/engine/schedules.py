"""Learning-rate schedules stepped once per iteration: poly, cosine, constant, each with linear warm-up.

They are ``torch.optim.lr_scheduler.LambdaLR`` objects, so their state saves and loads like any
scheduler's. The factor that multiplies the base learning rate at iteration ``t`` of ``T``:

- poly (DeepLab): ``(1 - t / T) ** power``
- cosine: ``0.5 * (1 + cos(pi * t / T))``
- constant: ``1``

During the first ``warmup`` iterations the factor is further scaled by a line from ``warmup_factor``
to 1, which keeps the first large-gradient steps of a fresh network small.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

SCHEDULES = ("poly", "cosine", "constant")


@dataclass
class ScheduleFactor:
    """The multiplicative factor of the base learning rate at iteration ``t`` (a picklable callable)."""

    name: str
    total_iters: int
    warmup: int = 0
    warmup_factor: float = 0.001
    power: float = 0.9
    min_factor: float = 0.0

    def __call__(self, t: int) -> float:
        progress = min(t, self.total_iters) / max(1, self.total_iters)
        if self.name == "poly":
            factor = (1.0 - progress) ** self.power
        elif self.name == "cosine":
            factor = 0.5 * (1.0 + math.cos(math.pi * progress))
        elif self.name == "constant":
            factor = 1.0
        else:  # checked in build_scheduler; kept for direct use
            raise ValueError(f"unknown schedule {self.name!r}; choose one of {', '.join(SCHEDULES)}")
        factor = self.min_factor + (1.0 - self.min_factor) * factor
        if t < self.warmup:
            alpha = t / self.warmup
            factor *= self.warmup_factor * (1.0 - alpha) + alpha
        return factor


def build_scheduler(
    optimizer: Optimizer,
    name: str,
    total_iters: int,
    warmup: int = 0,
    warmup_factor: float = 0.001,
    power: float = 0.9,
    min_factor: float = 0.0,
) -> LambdaLR:
    """A per-iteration scheduler: call ``scheduler.step()`` after every ``optimizer.step()``."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    if total_iters < 1:
        raise ValueError(f"total_iters must be >= 1, got {total_iters}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0 iterations, got {warmup}")
    factor = ScheduleFactor(name, total_iters, warmup, warmup_factor, power, min_factor)
    return LambdaLR(optimizer, factor)
