"""Mosaic, mixup and copy-paste: training samples made of several samples of one data set.

    train_set = MixDataset(build_dataset(spec, "train"), train_preset, size=256, mosaic=1.0, copy_paste=0.5)

:class:`MixDataset` reads the samples of a data set as they are (its own transforms left None), mixes
them, then applies the per-sample train preset to the mix: a mosaic is then still scaled, cropped,
flipped and resized to ``img_size`` by the preset, as any sample. Samples are those of DEVELOPING.md:
boxes, instance masks and semantic masks move with the image.

- **mosaic** (YOLOv4, Ultralytics' way): four samples (this one and three drawn at random) around a
  join point drawn uniformly in the ``size`` canvas, each scaled to fit the canvas (long side = size)
  and placed with a corner on the join point: top-left, top-right, bottom-left, bottom-right. This is the
  central ``size`` window of Ultralytics' 2 x size canvas, which its random affine crops back to size.
  Uncovered pixels are grey (114) in the image and ``ignore_index`` in a semantic mask. An object cut by
  the window is kept if at least :data:`MIN_VISIBLE` (10 %) of its box stays visible and both sides of
  what is visible are at least :data:`MIN_SIDE` (2) pixels; otherwise it is dropped with its label and mask.
- **mixup** (Zhang et al. 2018, Ultralytics): another sample, resized to this one's size, blended in:
  ``lam * this + (1 - lam) * other`` with ``lam ~ Beta(32, 32)`` (about 0.5); the objects of both are kept.
  A semantic mask is the dominant image's (``lam >= 0.5``: this one's) whole.
- **copy-paste** (Ghiasi et al. 2021): another sample, resized to this one's size and flipped
  horizontally half the time, gives objects (each with probability 0.5, at least one; crowd regions
  never) that are pasted by their instance masks. A segmentation sample's objects are the connected
  components of each class but background (the class named ``background``, else class 0) and void, up
  to a quarter of the image each (things, not stuff). The pasted pixels replace what was under them:
  the image, the semantic mask, and the instance masks below, which lose them; an object left with no
  pixel is dropped. Box-only data (no masks) are refused.

With instance masks every box is, after any of these, the tight box of its mask. Randomness comes only
from torch's global generator (as in :mod:`detseg.data.transforms`): the same seed gives the same mix.
``set_epoch(epoch, total_epochs)`` turns mosaic and mixup off for the last ``close_mosaic`` epochs (the
trainer calls it before every epoch).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from detseg.data.errors import DataError
from detseg.data.masks import semantic_to_instances
from detseg.data.transforms import ZOOM_FILL, Resize

Sample = tuple[tv_tensors.Image, dict[str, Any]]
#: A mosaic keeps an object if this fraction of its box is visible, and both visible sides are MIN_SIDE px.
MIN_VISIBLE = 0.1
MIN_SIDE = 2.0
#: Copy-paste: a semantic mask's connected component is an object up to this fraction of the image.
MAX_OBJECT_FRACTION = 0.25
#: Per-object entries, indexed together with the boxes.
_PER_OBJECT = ("labels", "iscrowd", "difficult", "area")


class MixDataset(Dataset):
    """``dataset``'s samples mixed (mosaic, mixup, copy-paste with probabilities ``mosaic``, ``mixup``,
    ``copy_paste``), then ``transforms`` applied. ``size``: the mosaic's (H, W) or side; ``keep_masks``
    False: instance masks (read for copy-paste) are dropped after mixing. Other attributes (classes...)
    are ``dataset``'s."""

    def __init__(
        self,
        dataset: Any,
        transforms: Any = None,
        *,
        size: int | tuple[int, int],
        mosaic: float = 0.0,
        mixup: float = 0.0,
        copy_paste: float = 0.0,
        close_mosaic: int = 0,
        keep_masks: bool = True,
        ignore_index: int = 255,
    ) -> None:
        for name, p in (("mosaic", mosaic), ("mixup", mixup), ("copy-paste", copy_paste)):
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"--{name} must be a probability in [0, 1], got {p}")
        self.dataset, self.transforms = dataset, transforms
        self.size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.mosaic, self.mixup, self.copy_paste = float(mosaic), float(mixup), float(copy_paste)
        self.close_mosaic, self.keep_masks = int(close_mosaic or 0), keep_masks
        self.ignore_index = ignore_index
        self.semantic = not hasattr(dataset, "has_masks")  # a segmentation data set
        if self.copy_paste and not self.semantic and not dataset.has_masks:
            spec = getattr(dataset, "spec", None)
            raise DataError(
                getattr(spec, "path", None) or "the data set",
                f"--copy-paste cuts objects out by their masks, and this {getattr(spec, 'task', 'detect')} "
                "data set has boxes only (give every object a 'segmentation', or use a segment spec)",
            )
        classes = [str(c).lower() for c in getattr(dataset, "classes", [])]
        self.background = classes.index("background") if "background" in classes else 0
        self.mixing = True  # mosaic and mixup (off for the last close_mosaic epochs)

    def set_epoch(self, epoch: int, total_epochs: int) -> None:
        """Mosaic and mixup for epochs before the last ``close_mosaic`` ones (0-based ``epoch``)."""
        self.mixing = epoch < total_epochs - self.close_mosaic

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def _other(self) -> Sample:
        return self.dataset[int(torch.randint(len(self.dataset), ()))]

    def __getitem__(self, index: int) -> Sample:
        image, target = self.dataset[index]
        if self.mixing and self.mosaic and float(torch.rand(())) < self.mosaic:
            h, w = self.size
            center = (int(torch.randint(h + 1, ())), int(torch.randint(w + 1, ())))
            samples = [(image, target), *(self._other() for _ in range(3))]
            image, target = mosaic(samples, self.size, center, self.ignore_index)
        if self.mixing and self.mixup and float(torch.rand(())) < self.mixup:
            lam = float(torch.distributions.Beta(32.0, 32.0).sample())
            image, target = mixup((image, target), self._other(), lam)
        if self.copy_paste and float(torch.rand(())) < self.copy_paste:
            source = _resize(*self._other(), tuple(image.shape[-2:]))
            if float(torch.rand(())) < 0.5:
                source = v2.RandomHorizontalFlip(p=1.0)(*source)
            objects = self._objects(source)
            chosen = torch.rand(len(objects)) < 0.5
            if len(objects) and not chosen.any():
                chosen[int(torch.randint(len(objects), ()))] = True
            image, target = copy_paste((image, target), source, chosen, self.background, self.ignore_index)
        if not self.keep_masks:
            target.pop("masks", None)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def _objects(self, source: Sample) -> torch.Tensor:
        """The objects copy-paste may take from ``source``: its instance masks, or semantic components."""
        if "masks" in source[1]:
            return source[1]["masks"]
        return semantic_objects(source[1]["semantic"], self.background, self.ignore_index)[0]


def mosaic(
    samples: list[Sample], size: tuple[int, int], center: tuple[int, int], ignore_index: int = 255
) -> Sample:
    """Four samples around ``center`` (y, x) on a ``size`` (H, W) canvas: see the module's docstring."""
    H, W = size
    cy, cx = center
    image = torch.full((samples[0][0].shape[0], H, W), ZOOM_FILL, dtype=samples[0][0].dtype)
    semantic = torch.full((H, W), ignore_index, dtype=torch.int64) if "semantic" in samples[0][1] else None
    parts = []
    for k, (img, tgt) in enumerate(samples):
        h, w = img.shape[-2:]
        scale = min(H / h, W / w)
        img, tgt = _resize(img, tgt, (max(1, round(h * scale)), max(1, round(w * scale))))
        h, w = img.shape[-2:]
        oy, ox = (cy - h if k < 2 else cy), (cx - w if k % 2 == 0 else cx)
        y0, x0 = max(oy, 0), max(ox, 0)
        y1, x1 = max(min(oy + h, H), y0), max(min(ox + w, W), x0)
        src = (slice(y0 - oy, y1 - oy), slice(x0 - ox, x1 - ox))
        image[:, y0:y1, x0:x1] = img[:, src[0], src[1]]
        tgt = dict(tgt)
        if semantic is not None:
            semantic[y0:y1, x0:x1] = torch.as_tensor(tgt["semantic"])[src]
        if "masks" in tgt:
            masks = torch.zeros((len(tgt["masks"]), H, W), dtype=torch.uint8)
            masks[:, y0:y1, x0:x1] = torch.as_tensor(tgt["masks"])[:, src[0], src[1]]
            tgt["masks"] = masks
        if "boxes" in tgt:
            boxes = tgt["boxes"].as_subclass(torch.Tensor) + torch.tensor([ox, oy, ox, oy]).float()
            visible = torch.stack([boxes[:, 0].clamp(x0, x1), boxes[:, 1].clamp(y0, y1),
                                   boxes[:, 2].clamp(x0, x1), boxes[:, 3].clamp(y0, y1)], 1)  # fmt: skip
            sides = visible[:, 2:] - visible[:, :2]
            keep = (_area(visible) >= MIN_VISIBLE * _area(boxes)) & (sides >= MIN_SIDE).all(1)
            tgt["boxes"] = visible
            tgt = _select(tgt, keep)
        parts.append(tgt)
    target = _concat(parts, samples[0][1])
    if semantic is not None:
        target["semantic"] = tv_tensors.Mask(semantic)
    return _finish(tv_tensors.Image(image), target)


def mixup(sample: Sample, other: Sample, lam: float) -> Sample:
    """``lam * sample + (1 - lam) * other`` (``other`` resized to ``sample``'s size), both samples' objects;
    the semantic mask of the one with the larger weight."""
    image, target = sample
    other_image, other_target = _resize(*other, tuple(image.shape[-2:]))
    blend = image.float() * lam + other_image.float() * (1.0 - lam)
    mixed = _concat([dict(target), dict(other_target)], target)
    if "semantic" in target:
        mixed["semantic"] = target["semantic"] if lam >= 0.5 else other_target["semantic"]
    return _finish(tv_tensors.Image(blend.round().clamp(0, 255).to(image.dtype)), mixed)


def copy_paste(
    sample: Sample, source: Sample, chosen: torch.Tensor, background: int = 0, ignore_index: int = 255
) -> Sample:
    """``source``'s ``chosen`` objects (a bool per instance mask, or per :func:`semantic_objects`
    component) pasted on ``sample`` (the same size): image, semantic mask and the instance masks below
    updated, pasted objects appended (crowd regions are never pasted)."""
    image, target = sample
    src_image, src_target = source
    target = dict(target)
    if "masks" in src_target:
        chosen = chosen & (torch.as_tensor(src_target.get("iscrowd", torch.zeros(len(chosen)))) == 0)
        objects = _select(dict(src_target), chosen)
        alpha = torch.as_tensor(objects["masks"]).bool().any(0)
    else:
        masks, _ = semantic_objects(src_target["semantic"], background, ignore_index)
        alpha = masks[chosen].bool().any(0)
        objects = None
    image = tv_tensors.Image(torch.where(alpha, src_image, image))
    if "semantic" in target:
        target["semantic"] = tv_tensors.Mask(torch.where(alpha, src_target["semantic"], target["semantic"]))
    if "masks" in target:
        target["masks"] = tv_tensors.Mask(torch.as_tensor(target["masks"]) * ~alpha)
    if objects is not None and "masks" in target:
        target = _concat([target, objects], target)
    return _finish(image, target)


def semantic_objects(
    semantic: torch.Tensor, background: int = 0, ignore_index: int = 255
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(masks uint8 [K, H, W], classes int64 [K])``: the 8-connected components of each class of a
    semantic mask but ``background`` and ``ignore_index``, each at most :data:`MAX_OBJECT_FRACTION`
    of the image."""
    values = np.asarray(torch.as_tensor(semantic))
    masks, classes = [], []
    for c, component in semantic_to_instances(values, ignore_index, (background,)):
        if component.sum() <= MAX_OBJECT_FRACTION * values.size:
            masks.append(component)
            classes.append(c)
    if not masks:
        return torch.zeros((0, *values.shape), dtype=torch.uint8), torch.zeros(0, dtype=torch.int64)
    return torch.from_numpy(np.stack(masks).astype(np.uint8)), torch.tensor(classes, dtype=torch.int64)


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """The tight XYXY box of each mask ``[N, H, W]`` (COCO convention: pixels 0..9 are 0 to 10)."""
    masks = torch.as_tensor(masks).bool()
    h, w = masks.shape[-2:]
    if len(masks) == 0:
        return torch.zeros((0, 4), dtype=torch.float32)
    rows, cols = masks.any(2), masks.any(1)
    ys, xs = torch.arange(h), torch.arange(w)
    x1, x2 = torch.where(cols, xs, w).amin(1), torch.where(cols, xs, -1).amax(1) + 1
    y1, y2 = torch.where(rows, ys, h).amin(1), torch.where(rows, ys, -1).amax(1) + 1
    return torch.stack([x1, y1, x2, y2], 1).to(torch.float32)


def _resize(image: Any, target: dict[str, Any], size: tuple[int, int]) -> Sample:
    if tuple(image.shape[-2:]) == tuple(size):
        return image, dict(target)
    return Resize(list(size))(image, dict(target))


def _area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def _select(target: dict[str, Any], keep: torch.Tensor) -> dict[str, Any]:
    """``target`` with only the objects ``keep`` marks (boxes, masks and per-object entries)."""
    out, keep = dict(target), torch.as_tensor(keep).bool()
    for key in ("boxes", "masks", *_PER_OBJECT):
        if key in out:
            out[key] = torch.as_tensor(out[key]).as_subclass(torch.Tensor)[keep]
    return out


def _concat(targets: list[dict[str, Any]], like: dict[str, Any]) -> dict[str, Any]:
    """The objects of every target in one (the entries ``like`` has); its other entries are ``like``'s."""
    out = {k: v for k, v in like.items() if k not in ("boxes", "masks", *_PER_OBJECT)}
    for key in ("boxes", "masks", *_PER_OBJECT):
        if key in like:
            out[key] = torch.cat([torch.as_tensor(t[key]).as_subclass(torch.Tensor) for t in targets])
    return out


def _finish(image: tv_tensors.Image, target: dict[str, Any]) -> Sample:
    """Objects consistent with the new image: masks without pixels dropped, boxes tight to the masks
    (when there are masks), ``area`` recomputed, boxes and masks wrapped as tv_tensors."""
    canvas = tuple(image.shape[-2:])
    if "masks" in target:
        masks = torch.as_tensor(target["masks"]).to(torch.uint8)
        target = _select({**target, "masks": masks}, masks.flatten(1).any(1))
        target["boxes"] = mask_boxes(target["masks"])
        target["area"] = target["masks"].flatten(1).sum(1).to(torch.float32)
        target["masks"] = tv_tensors.Mask(target["masks"])
    elif "boxes" in target:
        target["area"] = _area(torch.as_tensor(target["boxes"]).as_subclass(torch.Tensor).float())
    if "boxes" in target:
        boxes = torch.as_tensor(target["boxes"]).as_subclass(torch.Tensor).to(torch.float32).reshape(-1, 4)
        target["boxes"] = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=canvas)
    return image, target
