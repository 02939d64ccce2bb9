"""The task-specific glue between the trainer and a model: one training step, evaluation, the metric.

The trainer knows nothing of images or boxes. A task turns a batch into a loss (``train_step``) and a
stream of evaluation batches into metrics (``eval_begin`` / ``eval_step`` / ``eval_end``), with the
metric states summed over processes so DDP runs report the metrics of the whole validation set.

- :class:`SegmentationTask`: batches ``(Tensor[B,3,H,W], Tensor[B,H,W] int64)``; logits
  ``[B,K,H,W]`` and a segmentation loss; metrics from the summed confusion matrix (mIoU, Dice, pixel
  accuracy); main metric ``miou``.
- :class:`DetectionTask`: batches ``(list[Tensor[3,H,W]], list[dict])``; the model returns its loss dict
  in training and ``{boxes, labels, scores}`` in evaluation; COCO evaluation of the gathered
  predictions; main metric ``AP`` (COCO AP@[.5:.95]).
- :class:`InstanceTask`: the same with instance masks (Mask R-CNN): box and mask COCO evaluation, the
  mask figures prefixed ``mask_``; main metric ``mask_AP50``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from detseg.engine import distributed

SEGMENTATION_LOSSES = ("ce", "dice", "ce+dice", "lovasz", "ce+lovasz", "bce", "balanced-bce")


def class_logits(logits: torch.Tensor) -> torch.Tensor:
    """Two-class logits ``[B,2,H,W]`` from a binary model's ``[B,1,H,W]`` (softmax([0, l]) = sigmoid(l))."""
    if logits.shape[1] == 1:
        return torch.cat([torch.zeros_like(logits), logits], dim=1)
    return logits


class BinaryBCE(nn.Module):
    """BCE (optionally class-balanced) on a one-channel output ``[B,1,H,W]``, positive class 1, void left out.

    The formulas are ``detseg.losses``'; this adds the ignore index, which needs the per-pixel terms.
    """

    def __init__(self, ignore_index: int = 255, balanced: bool = False) -> None:
        super().__init__()
        self.ignore_index, self.balanced = ignore_index, balanced

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from detseg.losses import balanced_binary_cross_entropy, binary_cross_entropy

        valid = target != self.ignore_index
        y = (target == 1).to(logits.dtype)
        x = logits[:, 0]
        if self.balanced:
            # beta = the share of negative pixels among the valid ones (HED's balance).
            beta = float(1.0 - y[valid].mean()) if valid.any() else 0.5
            per_pixel = balanced_binary_cross_entropy(x, y, beta=beta, reduction="none")
        else:
            per_pixel = binary_cross_entropy(x, y, reduction="none")
        return (per_pixel * valid).sum() / valid.sum().clamp(min=1)


def build_segmentation_loss(
    name: str, num_classes: int, ignore_index: int = 255, class_weights: list[float] | None = None
) -> nn.Module:
    """A loss ``f(logits [B,K,H,W], target [B,H,W] int64) -> scalar`` by name (see ``SEGMENTATION_LOSSES``).

    ce, dice, ce+dice, lovasz, ce+lovasz come from ``detseg.losses.segmentation_loss``; bce and
    balanced-bce are for two classes with a one-channel model output (the task's ``out_channels``).
    """
    if name not in SEGMENTATION_LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(SEGMENTATION_LOSSES)}")
    if name in ("bce", "balanced-bce"):
        if num_classes != 2:
            raise ValueError(f"loss {name!r} is for two classes; the data has {num_classes}: use ce or dice")
        return BinaryBCE(ignore_index, balanced=name == "balanced-bce")
    from detseg.losses import segmentation_loss

    return segmentation_loss(name, ignore_index=ignore_index, class_weights=class_weights)


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int
) -> torch.Tensor:
    """``int64 [K, K]``, rows = true class, columns = predicted class; void pixels left out."""
    valid = target != ignore_index
    idx = target[valid] * num_classes + pred[valid]
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def metrics_from_confusion(confusion: np.ndarray, class_names: list[str] | None = None) -> dict[str, float]:
    """Scalar metrics of a summed confusion matrix (``detseg.metrics.segmentation``'s): miou, mdice,
    pixel_accuracy, mean_accuracy, fwiou, and per class iou_<class>, dice_<class>, accuracy_<class>."""
    from detseg.metrics.segmentation import segmentation_scores

    k = confusion.shape[0]
    names = class_names or [str(i) for i in range(k)]
    out: dict[str, float] = {}
    for key, value in segmentation_scores(np.asarray(confusion, dtype=np.int64)).items():
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim == 0:
            out[key] = float(arr)
        elif arr.ndim == 1 and len(arr) == k:
            out.update({f"{key}_{n}": float(v) for n, v in zip(names, arr, strict=True)})
    return out


class SegmentationTask:
    """Semantic segmentation: pixel-wise loss in training, confusion-matrix metrics in evaluation."""

    name = "segment"
    main_metric = "miou"

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        loss: str = "ce",
        class_weights: list[float] | None = None,
        class_names: list[str] | None = None,
    ) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.loss_name = loss
        self.class_names = class_names
        self.criterion = build_segmentation_loss(loss, num_classes, ignore_index, class_weights)
        # Cityscapes' iIoU beside IoU: (InstanceIoU, instanceIds file per image in loader order), set by
        # detseg.engine.run.run_evaluation (single process, images in order).
        self.instance_iou: tuple | None = None

    @property
    def out_channels(self) -> int:
        """Channels the model should output: one for the binary BCE losses, else one per class."""
        return 1 if self.loss_name in ("bce", "balanced-bce") else self.num_classes

    def train_step(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, dict]:
        images, targets = batch
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        logits = model(images)
        loss = self.criterion.to(device)(logits.float(), targets)
        return loss, {}

    def eval_begin(self) -> None:
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
        self.loss_sum = torch.zeros(2, dtype=torch.float64)  # sum of batch losses * images, images
        self.seen = 0
        if self.instance_iou is not None:
            self.instance_iou[0].reset()

    @torch.no_grad()
    def eval_step(self, model: nn.Module, batch: Any, device: torch.device) -> None:
        images, targets = batch
        images, targets = images.to(device), targets.to(device)
        logits = model(images).float()
        loss = self.criterion.to(device)(logits, targets)
        self.loss_sum += torch.tensor([float(loss) * len(images), len(images)], dtype=torch.float64)
        pred = class_logits(logits).argmax(1)
        self.confusion += confusion_matrix(pred, targets, self.num_classes, self.ignore_index).cpu()
        if self.instance_iou is not None:
            from detseg.metrics.evaluate import update_iiou

            iiou, files = self.instance_iou
            for p, t in zip(pred.cpu().numpy(), targets.cpu().numpy(), strict=True):
                update_iiou(iiou, p, t, files[self.seen])
                self.seen += 1
        if getattr(self, "kept", None) is not None:  # a report asked for every (prediction, truth) pair
            self.kept.extend(zip(pred.cpu().to(torch.int32).numpy(), targets.cpu().numpy(), strict=True))

    def eval_end(self) -> dict[str, float]:
        confusion = distributed.all_reduce_sum(self.confusion.clone())
        loss_sum = distributed.all_reduce_sum(self.loss_sum.clone())
        out = {"loss": float(loss_sum[0] / loss_sum[1].clamp(min=1))}
        out.update(metrics_from_confusion(confusion.numpy(), self.class_names))
        if self.instance_iou is not None:  # iIoU of the classes that have one, and their mean
            scores = self.instance_iou[0].compute()
            names = self.class_names or [str(c) for c in range(self.num_classes)]
            out.update({f"iiou_{n}": float(v) for n, v in zip(names, scores["iiou"], strict=True) if v == v})
            out["miiou"] = float(scores["miiou"])
        return out


def _to_device(target: dict, device: torch.device) -> dict:
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in target.items()}


class DetectionTask:
    """Object detection with torchvision's contract: loss dict in training, COCO AP in evaluation."""

    name = "detect"
    main_metric = "AP"
    with_masks = False  # InstanceTask: ground truth and predictions carry masks (COCO RLE)

    def __init__(self, num_classes: int, class_names: list[str] | None = None) -> None:
        self.num_classes = num_classes
        self.class_names = class_names or [str(i) for i in range(num_classes)]

    @property
    def out_channels(self) -> int:
        return self.num_classes

    def train_step(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, dict]:
        images, targets = batch
        images = [im.to(device, non_blocking=True) for im in images]
        targets = [_to_device(t, device) for t in targets]
        losses = model(images, targets)
        loss = sum(losses.values())
        return loss, {k: v.detach().float().reshape(()) for k, v in losses.items()}

    def eval_begin(self) -> None:
        self.gt_images: list[dict] = []
        self.gt_annotations: list[dict] = []
        self.results: list[dict] = []

    @torch.no_grad()
    def eval_step(self, model: nn.Module, batch: Any, device: torch.device) -> None:
        images, targets = batch
        outputs = model([im.to(device) for im in images])
        for image, target, output in zip(images, targets, outputs, strict=True):
            image_id = int(target["image_id"])
            self.gt_images.append(
                {"id": image_id, "height": int(image.shape[-2]), "width": int(image.shape[-1])}
            )
            boxes = torch.as_tensor(target["boxes"]).cpu().reshape(-1, 4)
            labels = torch.as_tensor(target["labels"]).cpu()
            crowd = target.get("iscrowd", torch.zeros(len(labels), dtype=torch.int64))
            gt_rles = self._rles(target.get("masks"), len(labels)) if self.with_masks else None
            for j, (box, label, c) in enumerate(
                zip(boxes.tolist(), labels.tolist(), torch.as_tensor(crowd).tolist(), strict=True)
            ):
                w, h = box[2] - box[0], box[3] - box[1]
                self.gt_annotations.append(
                    {
                        "image_id": image_id,
                        "category_id": int(label) + 1,
                        "bbox": [box[0], box[1], w, h],
                        "area": w * h,
                        "iscrowd": int(c),
                    }
                )
                if gt_rles is not None:
                    # COCO's area is the mask's for segm (it sets the small/medium/large ranges).
                    rle, area = gt_rles[j]
                    self.gt_annotations[-1].update(segmentation=rle, area=area)
            dt_rles = self._rles(output.get("masks"), len(output["scores"])) if self.with_masks else None
            for j, (box, label, score) in enumerate(
                zip(
                    output["boxes"].cpu().tolist(),
                    output["labels"].cpu().tolist(),
                    output["scores"].cpu().tolist(),
                    strict=True,
                )
            ):
                self.results.append(
                    {
                        "image_id": image_id,
                        "category_id": int(label) + 1,
                        "score": float(score),
                        "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                    }
                )
                if dt_rles is not None:
                    self.results[-1]["segmentation"] = dt_rles[j][0]

    @staticmethod
    def _rles(masks: Any, count: int) -> list[tuple[dict, float]]:
        """(COCO RLE with ``counts`` as str, pixel area) of each of ``[N, H, W]`` masks or ``[N, 1, H, W]``
        probabilities (thresholded at 0.5)."""
        from detseg.data.coco import mask_to_rle

        if masks is None:
            raise ValueError("instance evaluation needs masks in the targets and in the model's outputs")
        masks = torch.as_tensor(masks).as_subclass(torch.Tensor).cpu()
        if masks.dim() == 4:
            masks = masks[:, 0]
        binary = (masks >= 0.5 if masks.is_floating_point() else masks > 0).numpy().astype(np.uint8)
        if len(binary) != count:
            raise ValueError(f"{len(binary)} masks for {count} boxes")
        return [(mask_to_rle(m), float(m.sum())) for m in binary]

    def coco_inputs(self) -> tuple[dict, list[dict]]:
        """(COCO ground truth dict, COCO results list) of everything evaluated, gathered over processes.

        Boxes are in the evaluated images' frame (after the eval preset's resize)."""
        parts = distributed.all_gather_objects((self.gt_images, self.gt_annotations, self.results))
        images = [im for p in parts for im in p[0]]
        annotations = [dict(a, id=i + 1) for i, a in enumerate(a for p in parts for a in p[1])]
        results = [r for p in parts for r in p[2]]
        gt = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(self.class_names)],
        }
        return gt, results

    def eval_end(self) -> dict[str, float]:
        return coco_bbox_stats(*self.coco_inputs())


class InstanceTask(DetectionTask):
    """Instance segmentation (Mask R-CNN): the detection task plus COCO mask evaluation.

    Metrics: the box figures as :class:`DetectionTask` (``AP``, ``AP50``...) and the mask figures with
    a ``mask_`` prefix (``mask_AP``, ``mask_AP50``...), both on the evaluated images' frame; ``best.pt``
    follows ``mask_AP50``. ``coco_inputs()`` gives ground truth and results with RLE ``segmentation``.
    """

    name = "instance"
    main_metric = "mask_AP50"
    with_masks = True

    def eval_end(self) -> dict[str, float]:
        gt, results = self.coco_inputs()
        out = coco_bbox_stats(gt, results)
        out.update({f"mask_{k}": v for k, v in coco_bbox_stats(gt, results, iou_type="segm").items()})
        return out


def coco_bbox_stats(gt: dict, results: list[dict], iou_type: str = "bbox") -> dict[str, float]:
    """COCO AP/AR (the 12 named stats of ``detseg.metrics.coco.evaluate``) of ``results`` on ``gt``;
    ``iou_type="segm"`` scores their masks."""
    if not results:
        return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
    from detseg.metrics.coco import evaluate

    return {k: float(v) for k, v in evaluate(gt, results, iou_type=iou_type).stats.items()}
