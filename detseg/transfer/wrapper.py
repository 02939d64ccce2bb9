"""The common part of the task wrappers that train an extended model against its old self."""

from __future__ import annotations

from typing import Any

from torch import nn


class OldModelTask:
    """Wraps ``task`` (its evaluation, metric and output channels pass through) and holds ``old_model``,
    the model before its head was extended, frozen and in eval mode. Subclasses change ``train_step``."""

    def __init__(self, task: Any, old_model: nn.Module) -> None:
        self.task = task
        self.old_model = old_model.eval()
        for p in self.old_model.parameters():
            p.requires_grad_(False)
        self.name, self.main_metric = task.name, task.main_metric

    @property
    def out_channels(self) -> int:
        return self.task.out_channels

    def __getattr__(self, name: str) -> Any:  # eval_begin, eval_step, eval_end, coco_inputs, ...
        if name == "task":  # not set yet (copy, pickle): no endless recursion
            raise AttributeError(name)
        return getattr(self.task, name)
