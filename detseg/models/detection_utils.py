"""What every detseg detector shares: input checks, 0-based labels, offline pre-trained weights.

torchvision's detectors reserve label 0 for the background (SSD, Faster R-CNN) and raise a bare
``AssertionError`` on a zero-area box. detseg's data has 0-based labels and no background class, so
:class:`ZeroBasedLabels` sits in front of each detector: it checks the inputs with precise messages,
clips boxes to the image, drops degenerate ones with a warning, shifts labels up on the way in and
down on the way out. ``model.num_classes`` is always the number of the user's classes.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.ops import clip_boxes_to_image

from detseg.data.errors import DataError
from detseg.models import backbones
from detseg.models.backbones import LoadReport, cached_weights_path  # noqa: F401 (re-exported)


def check_images(images: Any) -> list[Tensor]:
    """Check ``images`` is a list of float ``Tensor[3, H, W]`` (values in [0, 1]) and return it as a list."""
    if isinstance(images, Tensor) and images.dim() == 4:
        images = list(images.unbind(0))
    if not isinstance(images, (list, tuple)) or not images:
        raise ValueError(f"images must be a non-empty list of Tensor[3, H, W], got {type(images).__name__}")
    for i, image in enumerate(images):
        if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
            shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise ValueError(f"images[{i}] must be a Tensor[3, H, W], got {shape}")
        if not image.is_floating_point():
            raise ValueError(
                f"images[{i}] has dtype {image.dtype}; detectors take floats in [0, 1] "
                "(end the transforms with ToDtype(torch.float32, scale=True))"
            )
    return [image.as_subclass(Tensor) for image in images]


def prepare_targets(
    images: list[Tensor],
    targets: Any,
    num_classes: int,
    label_offset: int = 1,
    min_box_size: float = 1.0,
    masks: bool = False,
) -> list[dict[str, Tensor]]:
    """Check and clean training targets; return new ``{"boxes", "labels": labels + label_offset}`` dicts.

    Boxes (``FloatTensor[N, 4]`` XYXY absolute pixels) are clipped to the image; boxes narrower or
    lower than ``min_box_size`` pixels after clipping are dropped with one warning (torchvision would
    raise, and a zero-area box gives a NaN loss). Labels outside ``[0, num_classes)`` and non-finite
    coordinates raise :class:`DataError` naming the image and the entry.

    ``masks=True`` (Mask R-CNN): each target's instance ``masks`` (``uint8 [N, H, W]``, the image's
    size) go on too, dropped with their boxes; a target without them raises DataError.
    """
    if targets is None:
        raise ValueError("training mode needs targets: a list of {'boxes', 'labels'} dicts, one per image")
    if len(targets) != len(images):
        raise ValueError(f"got {len(images)} images but {len(targets)} targets")
    out: list[dict[str, Tensor]] = []
    dropped: list[str] = []
    for i, (image, target) in enumerate(zip(images, targets, strict=True)):
        # Name the sample by its file when the dataset gave one.
        named = isinstance(target, dict) and "file_name" in target
        where = f"targets[{i}]" + (f" ({target['file_name']})" if named else "")
        if not isinstance(target, dict) or "boxes" not in target or "labels" not in target:
            raise DataError(where, "must be a dict with 'boxes' and 'labels'")
        boxes = torch.as_tensor(target["boxes"]).as_subclass(Tensor).to(image.device, torch.float32)
        labels = torch.as_tensor(target["labels"]).as_subclass(Tensor).to(image.device)
        if boxes.numel() == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.dim() != 2 or boxes.shape[1] != 4:
            raise DataError(where, f"boxes must be FloatTensor[N, 4] (XYXY), got {tuple(boxes.shape)}")
        if labels.dim() != 1 or labels.shape[0] != boxes.shape[0]:
            raise DataError(where, f"{boxes.shape[0]} boxes but labels of shape {tuple(labels.shape)}")
        if labels.is_floating_point():
            raise DataError(where, f"labels must be integers (int64), got {labels.dtype}")
        if not torch.isfinite(boxes).all():
            j = int((~torch.isfinite(boxes)).any(1).nonzero()[0])
            raise DataError(where, f"non-finite coordinate {boxes[j].tolist()}", entry=f"box {j}")
        bad = (labels < 0) | (labels >= num_classes)
        if bad.any():
            j = int(bad.nonzero()[0])
            raise DataError(
                where,
                f"label {int(labels[j])} is outside 0..{num_classes - 1} (the model was built with "
                f"num_classes={num_classes}; labels are 0-based, no background)",
                entry=f"box {j}",
            )
        height, width = image.shape[-2:]
        boxes = torch.stack(
            [boxes[:, 0].clamp(0, width), boxes[:, 1].clamp(0, height),
             boxes[:, 2].clamp(0, width), boxes[:, 3].clamp(0, height)], dim=1
        )
        keep = ((boxes[:, 2] - boxes[:, 0]) >= min_box_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_box_size)
        if not keep.all():
            dropped += [f"{where} box {j}" for j in (~keep).nonzero().flatten().tolist()]
        # Only boxes and labels go on (and masks for a mask model): torchvision's transform would also
        # resize masks and keypoints.
        out.append({"boxes": boxes[keep], "labels": labels[keep].long() + label_offset})
        if masks:
            out[-1]["masks"] = _instance_masks(target, image, boxes.shape[0], where)[keep]
    if dropped:
        warnings.warn(
            f"dropped {len(dropped)} box(es) smaller than {min_box_size} px after clipping to the image "
            f"({', '.join(dropped[:5])}{', ...' if len(dropped) > 5 else ''})",
            stacklevel=3,
        )
    return out


def _instance_masks(target: dict, image: Tensor, count: int, where: str) -> Tensor:
    """A target's ``masks`` checked against its boxes and image: ``uint8 [N, H, W]``."""
    if "masks" not in target:
        raise DataError(where, "has no 'masks': a mask model trains on instance masks (a spec with "
                        "task: instance), or on boxes alone after model.train_boxes_only() (task: detect)")
    masks = torch.as_tensor(target["masks"]).as_subclass(Tensor).to(image.device)
    if masks.numel() == 0:
        masks = masks.reshape(0, *image.shape[-2:])
    if masks.dim() != 3 or masks.shape[0] != count or masks.shape[-2:] != image.shape[-2:]:
        raise DataError(where, f"masks must be [N, H, W] = [{count}, {image.shape[-2]}, {image.shape[-1]}] "
                        f"(one per box, the image's size), got {tuple(masks.shape)}")
    return (masks > 0).to(torch.uint8)


class ZeroBasedLabels:
    """Mixin placed before a torchvision detector class: detseg's input checks and 0-based labels.

    The detector sets ``self.num_classes`` (the user's classes) and ``self.label_offset`` (1 where
    torchvision keeps label 0 for the background, 0 for sigmoid heads such as RetinaNet's).
    """

    num_classes: int
    label_offset: int = 1
    min_box_size: float = 1.0
    min_train_batch: int = 1  # BatchNorm on a 1x1 map needs 2 images (SSDLite)
    uses_masks: bool = False  # Mask R-CNN: targets carry instance masks
    train_masks: bool = False

    def forward(self, images, targets=None):  # type: ignore[override]
        images = check_images(images)
        if self.training:
            if len(images) < self.min_train_batch:
                raise ValueError(
                    f"{type(self).__name__} trains on batches of at least {self.min_train_batch} images "
                    f"(its BatchNorm sees 1x1 maps), got {len(images)}"
                )
            targets = prepare_targets(images, targets, self.num_classes, self.label_offset, self.min_box_size,
                                      masks=self.uses_masks and self.train_masks)
            return super().forward(images, targets)  # type: ignore[misc]
        detections = super().forward(images)  # type: ignore[misc]
        for det, image in zip(detections, images, strict=True):
            det["labels"] = det["labels"] - self.label_offset
            # Scaling back from the network's input size can overshoot the border by a rounding error.
            det["boxes"] = clip_boxes_to_image(det["boxes"], image.shape[-2:])
        return detections


def load_pretrained(
    module: nn.Module, pretrained: bool | str | os.PathLike | None, weights: Any
) -> LoadReport | None:
    """Load pre-trained weights into a detector's backbone network without the network, through detseg's
    one loader (:func:`detseg.models.backbones.load_pretrained`: weights_only, SHA-256, the report).

    ``pretrained``: ``False``/``None`` (or :class:`~detseg.models.backbones.WeightsDeferred`) does
    nothing; ``True`` (or "imagenet") loads torchvision's ``weights`` (a ``WeightsEnum`` member) from the
    torch.hub cache, or raises a :class:`~detseg.models.backbones.WeightsNotFoundError` (a
    ``FileNotFoundError``) saying which file to put where; another torchvision name of the same enum
    (``"IMAGENET1K_V2"``), a path (``"w.pth#sha256=..."``), a detseg checkpoint or ``"zoo:NAME"`` load
    that. Tensors that fit by name and shape load (a classifier's extra keys are reported unexpected).
    """
    return backbones.load_pretrained(module, pretrained, weights=weights)


def trainable_layers(value: int | None, pretrained: object, max_value: int, default_pretrained: int) -> int:
    """How many backbone stages train, counted from the top: ``value`` if given (0..max_value), else
    ``default_pretrained`` with pre-trained weights and all of them from scratch (torchvision's rule,
    except that an explicit value is honoured from scratch too, e.g. to train fast)."""
    if value is None:
        return default_pretrained if pretrained else max_value
    if not 0 <= value <= max_value:
        raise ValueError(f"trainable_backbone_layers must be in 0..{max_value}, got {value}")
    return value


def size_to_min_max(kwargs: dict[str, Any]) -> None:
    """Turn the common ``size=N`` (what ``detseg train --img-size`` passes) into ``min_size = max_size = N``
    for detectors that rescale their input themselves (R-FCN, Faster R-CNN, RetinaNet)."""
    size = kwargs.pop("size", None)
    if size is not None:
        kwargs["min_size"] = kwargs["max_size"] = int(size)
