"""Image classification for the trainer: :class:`ClassificationTask` and :func:`build_classification`.

Batches are ``(Tensor[B, 3, H, W] float in [0, 1], Tensor[B] int64)``
(:func:`detseg.data.classification.collate_classification`); the model maps them to logits
``[B, K]``. Training minimises cross-entropy; evaluation sums a confusion matrix over the split (and
over processes under DDP) and reports ``accuracy`` (the main metric, which picks ``best.pt``),
``balanced_accuracy``, ``macro_f1`` and per class ``precision_<class>``, ``recall_<class>``,
``f1_<class>``; ``task.confusion`` holds the matrix after ``eval_end()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from detseg.engine import distributed
from detseg.metrics.classification import classification_scores, confusion_matrix


def metrics_from_confusion(confusion: np.ndarray, class_names: list[str] | None = None) -> dict[str, float]:
    """Scalar metrics of a summed confusion matrix ``[K, K]`` (see ``detseg.metrics.classification``)."""
    scores = classification_scores(confusion)
    names = class_names or [str(i) for i in range(confusion.shape[0])]
    out = {k: float(scores[k]) for k in ("accuracy", "balanced_accuracy", "macro_f1")}
    for key in ("precision", "recall", "f1"):
        out.update({f"{key}_{n}": float(v) for n, v in zip(names, scores[key], strict=True)})
    return out


class ClassificationTask:
    """Whole-image classification: cross-entropy in training, confusion-matrix metrics in evaluation."""

    name = "classify"
    main_metric = "accuracy"

    def __init__(
        self, num_classes: int, class_names: list[str] | None = None, label_smoothing: float = 0.0
    ) -> None:
        self.num_classes = num_classes
        self.class_names = class_names or [str(i) for i in range(num_classes)]
        self.label_smoothing = label_smoothing
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    @property
    def out_channels(self) -> int:
        return self.num_classes

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)

    def train_step(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, dict]:
        images, labels = batch
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        return self.loss(model(images), labels), {}

    def eval_begin(self) -> None:
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
        self.loss_sum = torch.zeros(2, dtype=torch.float64)  # sum of losses * images, images

    @torch.no_grad()
    def eval_step(self, model: nn.Module, batch: Any, device: torch.device) -> None:
        images, labels = batch
        images, labels = images.to(device), labels.to(device)
        logits = model(images).float()
        self.loss_sum += torch.tensor([float(self.loss(logits, labels)) * len(labels), len(labels)])
        self.confusion += confusion_matrix(logits.argmax(1), labels, self.num_classes).cpu()

    def eval_end(self) -> dict[str, float]:
        self.confusion = distributed.all_reduce_sum(self.confusion.clone())
        loss_sum = distributed.all_reduce_sum(self.loss_sum.clone())
        out = {"loss": float(loss_sum[0] / loss_sum[1].clamp(min=1))}
        out.update(metrics_from_confusion(self.confusion.numpy(), self.class_names))
        return out


def build_classification(
    spec: Any,
    train_split: str = "train",
    val_split: str | None = "val",
    img_size: int | None = None,
) -> tuple[Any, Any, ClassificationTask, Any, dict[str, Any]]:
    """Everything ``detseg train`` needs for a ``task: classify`` spec (a path or a loaded spec):
    ``(train_set, val_set, task, collate_fn, model_kwargs)``.

    The training set has the random-resized-crop preset, the validation set (None when ``val_split``
    is None, ``"none"`` or not in the spec) resize + centre crop, both at ``img_size`` (default 224) and
    both labelled by the training split's classes. ``model_kwargs`` is ``{"num_classes": K}``.
    """
    from detseg.data.classification import (
        classification_dataset,
        classification_eval_preset,
        classification_train_preset,
        collate_classification,
    )
    from detseg.data.spec import load_spec

    if isinstance(spec, str | Path):
        spec = load_spec(spec)
    size = int(img_size or 224)
    train_set = classification_dataset(spec, train_split, classification_train_preset(size))
    val_set = None
    if val_split and val_split != "none" and val_split in spec.splits:
        val_set = classification_dataset(
            spec, val_split, classification_eval_preset(size), classes=train_set.classes
        )
    task = ClassificationTask(train_set.num_classes, list(train_set.classes))
    return train_set, val_set, task, collate_classification, {"num_classes": train_set.num_classes}


def evaluation_set(spec: Any, split: str, classes: list[str], img_size: int | None = None):
    """``(dataset, task, collate_fn)`` to evaluate a saved classifier on ``split`` (for
    ``detseg eval``): the eval preset at the training ``img_size``, labels by the checkpoint's ``classes``."""
    from detseg.data.classification import (
        classification_dataset,
        classification_eval_preset,
        collate_classification,
    )

    size = int(img_size or 224)
    dataset = classification_dataset(spec, split, classification_eval_preset(size), classes=classes)
    return dataset, ClassificationTask(len(classes), list(classes)), collate_classification
