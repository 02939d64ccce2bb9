"""Old-class pseudo-labels for adding classes to a trained model.

New-class data label only the new classes: an old object in those images is unlabelled, and training
calls it background, which teaches the extended model to forget it (the "background shift" of
incremental detection and segmentation). Pseudo-labelling gives such objects back their old labels:
on every training batch the old model (frozen, eval mode) looks at the same augmented images, and

- detection: its detections of the old classes with a score >= ``threshold`` that overlap no labelled
  box (IoU < ``overlap``) are added to the batch's targets;
- segmentation: pixels labelled background where the old model predicts an old object class with a
  probability >= ``threshold`` take that class (ignored pixels stay ignored; background is class 0).

It combines with Learning without Forgetting (``--distill``), which keeps the old outputs' soft values
where pseudo-labels only give hard ones. The loss is the task's own: only the targets change.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torchvision.ops import box_iou

from detseg.transfer.wrapper import OldModelTask

#: Per-box target entries rebuilt for the added boxes; other entries (image_id, file_name) are kept.
_BOX_KEYS = ("boxes", "labels")


def pseudo_label_detection(
    old_model: nn.Module,
    images: list[Tensor],
    targets: list[dict[str, Any]],
    threshold: float = 0.5,
    overlap: float = 0.5,
) -> tuple[list[dict[str, Any]], int]:
    """``targets`` with the old model's confident detections added where nothing is labelled; returns
    them and the number of boxes added. Labels are the old model's (0-based, the old classes come first
    in the extended model's list)."""
    with torch.no_grad():
        outputs = old_model.eval()(images)
    new_targets, added = [], 0
    for target, output in zip(targets, outputs, strict=True):
        boxes = torch.as_tensor(target["boxes"]).as_subclass(Tensor).reshape(-1, 4).float()
        labels = torch.as_tensor(target["labels"]).as_subclass(Tensor).reshape(-1)
        keep = output["scores"] >= threshold
        extra_boxes = output["boxes"][keep].to(boxes.device, boxes.dtype)
        extra_labels = output["labels"][keep].to(labels.device, labels.dtype)
        if len(boxes) and len(extra_boxes):
            free = box_iou(extra_boxes, boxes).amax(1) < overlap
            extra_boxes, extra_labels = extra_boxes[free], extra_labels[free]
        out = {k: v for k, v in target.items() if k not in _BOX_KEYS and not _per_box(v, len(labels))}
        out["boxes"] = torch.cat([boxes, extra_boxes])
        out["labels"] = torch.cat([labels, extra_labels])
        new_targets.append(out)
        added += len(extra_labels)
    return new_targets, added


def _per_box(value: Any, n: int) -> bool:
    return isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] == n and n > 0


def pseudo_label_segmentation(
    old_model: nn.Module,
    images: Tensor,
    masks: Tensor,
    threshold: float = 0.5,
    background: int = 0,
) -> tuple[Tensor, int]:
    """``masks`` with background pixels that the old model calls an old object class (probability >=
    ``threshold``) set to that class; returns them and the number of pixels changed."""
    with torch.no_grad():
        probs = old_model.eval()(images).float().softmax(1)
    confidence, predicted = probs.max(1)
    change = (masks == background) & (predicted != background) & (confidence >= threshold)
    return torch.where(change, predicted.to(masks.dtype), masks), int(change.sum())


class PseudoLabelTask(OldModelTask):
    """A task wrapper that adds the old model's pseudo-labels to every training batch of ``task``;
    evaluation is ``task``'s. ``old_model``: the model before its head was extended."""

    def __init__(
        self, task: Any, old_model: nn.Module, threshold: float = 0.5, overlap: float = 0.5
    ) -> None:
        if task.name not in ("detect", "segment"):
            raise ValueError(f"pseudo-labels are for detection and segmentation, not {task.name!r}")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"the pseudo-label score threshold must be in (0, 1], got {threshold}")
        super().__init__(task, old_model)
        self.threshold, self.overlap = float(threshold), float(overlap)

    def train_step(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[Tensor, dict]:
        self.old_model.to(device)
        images, targets = batch
        if self.name == "detect":
            images = [im.to(device) for im in images]
            targets, added = pseudo_label_detection(
                self.old_model, images, targets, self.threshold, self.overlap
            )
        else:
            images, targets = images.to(device), targets.to(device)
            targets, added = pseudo_label_segmentation(self.old_model, images, targets, self.threshold)
        loss, parts = self.task.train_step(model, (images, targets), device)
        parts = dict(parts)
        parts["pseudo_labels"] = torch.tensor(float(added))
        return loss, parts
