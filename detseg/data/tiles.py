"""Tiles of large images: the window grid sliced inference runs the detector on
(:mod:`detseg.engine.slicing`), and :class:`TiledDataset`, a detection data set cut into tiles for
``detseg train --tile``.

The grid is SAHI's (``get_slice_bboxes``): windows of ``size`` pixels every ``size - int(overlap * size)``
pixels from the top-left corner; the last row and column, which would reach past the border, are moved
back to end exactly at it. An image side shorter than ``size`` gets one window over the whole side.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors


def check_overlap(overlap: float, what: str = "overlap") -> float:
    """``overlap`` if it is in [0, 1), else a ValueError saying so."""
    if not 0.0 <= float(overlap) < 1.0:
        raise ValueError(f"{what} must be in [0, 1) (a fraction of the tile), not {overlap}")
    return float(overlap)


def slice_starts(length: int, size: int, overlap: float) -> list[int]:
    """Starts of the ``size``-long windows along a side of ``length`` pixels (see the module docstring)."""
    check_overlap(overlap)
    if size < 1:
        raise ValueError(f"the tile size must be a positive number of pixels, not {size}")
    if length <= size:
        return [0]
    stride = size - int(overlap * size)
    starts = list(range(0, length - size, stride))
    return [*starts, length - size]


def iter_windows(height: int, width: int, size: int, overlap: float) -> Iterator[tuple[int, int, int, int]]:
    """The windows ``(x, y, w, h)`` over an image, row by row, made one at a time."""
    h, w = min(size, height), min(size, width)
    xs = slice_starts(width, size, overlap)
    for y in slice_starts(height, size, overlap):
        for x in xs:
            yield x, y, w, h


def crop_detection_sample(
    image: torch.Tensor,
    target: dict[str, Any],
    window: tuple[int, int, int, int],
    min_visibility: float = 0.5,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The part of a sample (image ``[C, H, W]``, target as :mod:`detseg.data.dataset` makes it) inside
    ``window`` ``(x, y, w, h)``: boxes clipped and shifted, masks cropped. An object keeps its place if at
    least ``min_visibility`` of its area is inside (its mask's pixels where it has a mask, else its box's
    area), else it is dropped; ``area`` becomes what is left of it."""
    x, y, w, h = window
    crop = image[..., y : y + h, x : x + w]
    boxes = torch.as_tensor(target["boxes"]).as_subclass(torch.Tensor).float().reshape(-1, 4)
    shifted = boxes - torch.tensor([x, y, x, y], dtype=boxes.dtype)
    clipped = torch.stack([shifted[:, 0].clamp(0, w), shifted[:, 1].clamp(0, h),
                           shifted[:, 2].clamp(0, w), shifted[:, 3].clamp(0, h)], dim=1)  # fmt: skip
    masks = target.get("masks")
    if masks is not None:
        masks = torch.as_tensor(masks).as_subclass(torch.Tensor)
        whole = masks.flatten(1).sum(1).float()
        cropped = masks[:, y : y + h, x : x + w]
        inside = cropped.flatten(1).sum(1).float()
    else:
        whole = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(1)
        inside = (clipped[:, 2:] - clipped[:, :2]).clamp(min=0).prod(1)
    keep = (inside > 0) & (inside >= min_visibility * whole)
    out = {k: v for k, v in target.items() if k not in ("boxes", "masks")}
    out["boxes"] = tv_tensors.BoundingBoxes(clipped[keep], format="XYXY", canvas_size=(h, w))
    for key in ("labels", "iscrowd", "difficult"):
        if key in target:
            out[key] = torch.as_tensor(target[key])[keep]
    if "area" in target:
        area = torch.as_tensor(target["area"]).float()
        out["area"] = (area * inside / whole.clamp(min=1e-12))[keep]
    if masks is not None:
        out["masks"] = tv_tensors.Mask(cropped[keep].contiguous())
    crop = crop.contiguous()
    return (tv_tensors.Image(crop) if isinstance(image, tv_tensors.Image) else crop), out


class TiledDataset(Dataset):
    """A detection data set (:class:`~detseg.data.dataset.DetectionDataset`) cut into ``tile`` x ``tile``
    tiles sharing ``overlap``: one sample per tile (:func:`crop_detection_sample`), the data set's own
    transforms applied to the tile. Its other attributes (``classes``, ``coco_gt``...) are the data set's."""

    def __init__(self, dataset: Any, tile: int, overlap: float = 0.25, min_visibility: float = 0.5) -> None:
        check_overlap(overlap, "--tile-overlap")
        if not 0.0 <= min_visibility <= 1.0:
            raise ValueError(f"--tile-min-visibility must be in [0, 1], not {min_visibility}")
        self.dataset, self.tile, self.overlap, self.min_visibility = dataset, tile, overlap, min_visibility
        self.transforms, dataset.transforms = dataset.transforms, None
        self.windows: list[tuple[int, tuple[int, int, int, int]]] = []
        for index in range(len(dataset)):
            height, width = _image_size(dataset, index)
            self.windows += [(index, window) for window in iter_windows(height, width, tile, overlap)]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int):
        index, window = self.windows[i]
        image, target = crop_detection_sample(*self.dataset[index], window, self.min_visibility)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)


def _image_size(dataset: Any, index: int) -> tuple[int, int]:
    """(H, W) of sample ``index``: its annotation's size, else its target's canvas."""
    images = getattr(dataset, "images", None)
    info = images[index] if images is not None else {}
    if info.get("height") and info.get("width"):
        return int(info["height"]), int(info["width"])
    return tuple(dataset.target(index)["boxes"].canvas_size)
