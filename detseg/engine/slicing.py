"""Sliced inference for detectors (SAHI, Akyon et al. 2022): small objects in large images are found on
overlapping ``tile`` x ``tile`` slices at the detector's own input scale, and the slices' detections,
moved into the image's coordinates, are merged into one set.

    model = with_slicing(model, "detect", tile=512, overlap=0.25, tile_batch=4)
    dets = model([image])          # [{"boxes", "labels", "scores"(, "masks")}], the detector contract

:class:`SlicedDetector` wraps any detector detseg loads (torchvision-style modules, Mask R-CNN, an
:class:`~detseg.engine.onnx_runtime.OnnxModel`) and is called like it. The windows are SAHI's grid
(:func:`detseg.data.tiles.iter_windows`), made lazily: ``tile_batch`` slices at a time go through the
model in one call, so an image of any size holds at most ``tile_batch`` slices at once. ``full_image``
also runs the whole image (resized by the model as without slicing) and merges its boxes with the
slices'. The merge (:func:`detseg.metrics.box_merge.merge_detections`) is ``greedy-nmm`` matched by
``ios`` at 0.5 by default, SAHI's defaults: a box cut by a slice border covers part of the object, so its
IoU with the whole object's box is small while its intersection over its own (smaller) area is near 1;
in dense scenes, where neighbouring objects overlap, IoU (``match="iou"``) merges fewer distinct objects.
A Mask R-CNN's masks are kept as crops of their pixels and pasted into the image (merged masks: the
union), returned as ``uint8 [N, 1, H, W]`` 0/1 masks.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

import torch
from torch import Tensor, nn

from detseg.data.tiles import check_overlap, iter_windows, slice_starts
from detseg.metrics.box_merge import MATCHES, MERGES, merge_detections

DETECTORS = ("detect", "instance")


@dataclass(frozen=True)
class SliceOptions:
    """How :class:`SlicedDetector` slices and merges (see the module docstring)."""

    tile: int
    overlap: float = 0.25
    full_image: bool = False
    merge: str = "greedy-nmm"
    match: str = "ios"
    threshold: float = 0.5
    batch: int = 1

    def __post_init__(self) -> None:
        check_overlap(self.overlap)
        if self.tile < 1:
            raise ValueError(f"--tile must be a positive number of pixels, not {self.tile}")
        if self.merge not in MERGES:
            raise ValueError(f"--merge must be one of {', '.join(MERGES)}, not {self.merge!r}")
        if self.match not in MATCHES:
            raise ValueError(f"--match must be one of {', '.join(MATCHES)}, not {self.match!r}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"--merge-threshold must be in [0, 1], not {self.threshold}")
        if self.batch < 1:
            raise ValueError(f"--tile-batch must be at least 1, not {self.batch}")


def with_slicing(
    model: nn.Module,
    task: str,
    tile: int | None = None,
    overlap: float = 0.25,
    full_image: bool = False,
    merge: str | None = None,
    match: str | None = None,
    merge_threshold: float | None = None,
    tile_batch: int | None = None,
) -> nn.Module:
    """``model`` wrapped in a :class:`SlicedDetector` when it is a detector and ``tile`` is given, else as
    it is. The merge options on a segmenter or a classifier, or on a detector without ``tile``, are refused
    (a ValueError: one line on the command line)."""
    check_overlap(overlap)
    given = {"--full-image": full_image, "--merge": merge, "--match": match,
             "--merge-threshold": merge_threshold}  # fmt: skip
    named = [flag for flag, value in given.items() if value not in (None, False)]
    if task not in DETECTORS:
        if named:
            raise ValueError(f"{', '.join(named)} apply to detectors (sliced inference), not to a {task} "
                             "model")  # fmt: skip
        return model
    if tile is None:
        if named or tile_batch is not None:
            raise ValueError(f"{', '.join(named or ['--tile-batch'])} go with --tile SIZE (sliced inference)")
        return model
    threshold = 0.5 if merge_threshold is None else float(merge_threshold)
    options = SliceOptions(int(tile), float(overlap), bool(full_image), merge or "greedy-nmm", match or "ios",
                           threshold, int(tile_batch or 1))  # fmt: skip
    return SlicedDetector(model, options)


class SlicedDetector(nn.Module):
    """A detector run on slices of each image, its detections merged (see the module docstring)."""

    def __init__(self, model: nn.Module, options: SliceOptions) -> None:
        super().__init__()
        self.model, self.options = model, options
        self.calls = 0  # model calls made (tests count them)
        self._said = False

    def forward(self, images: list[Tensor], targets: Any = None) -> list[dict[str, Tensor]]:
        if targets is not None:
            raise ValueError("sliced inference only predicts (train on tiles with detseg train --tile)")
        return [self.detect(image) for image in images]

    def _call(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        self.calls += 1
        return self.model(images)

    def detect(self, image: Tensor) -> dict[str, Tensor]:
        """The merged detections of one image ``[C, H, W]``."""
        height, width = image.shape[-2:]
        tile = self.options.tile
        if tile >= height and tile >= width:
            if not self._said:
                print(f"warning: --tile {tile} is not smaller than the image ({width}x{height}): it is run "
                      "whole, without slicing", file=sys.stderr)  # fmt: skip
                self._said = True
            return self._call([image])[0]
        found = _Found((height, width))
        windows = iter_windows(height, width, tile, self.options.overlap)
        for chunk in chunks(windows, self.options.batch):
            outputs = self._call([image[:, y : y + h, x : x + w] for x, y, w, h in chunk])
            for (x, y, _, _), output in zip(chunk, outputs, strict=True):
                found.add(output, x, y)
        if self.options.full_image:
            found.add(self._call([image])[0], 0, 0)
        return found.merged(self.options)


def chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in lists of ``size`` (the last may be shorter), drawn lazily."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class _Found:
    """The detections of one image's slices, in its coordinates; masks as crops of their pixels."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size
        self.boxes: list[Tensor] = []
        self.labels: list[Tensor] = []
        self.scores: list[Tensor] = []
        self.masks: list[tuple[int, int, Tensor]] | None = None  # (x, y, bool [h, w]) per detection

    def add(self, output: dict[str, Tensor], x: int, y: int) -> None:
        boxes = output["boxes"].detach().float().cpu().reshape(-1, 4)
        self.boxes.append(boxes + torch.tensor([x, y, x, y], dtype=boxes.dtype))
        self.labels.append(output["labels"].detach().cpu().long().reshape(-1))
        self.scores.append(output["scores"].detach().float().cpu().reshape(-1))
        masks = output.get("masks")
        if masks is None:
            return
        self.masks = self.masks if self.masks is not None else []
        masks = masks.detach().cpu()
        masks = masks[:, 0] if masks.dim() == 4 else masks
        binary = masks >= 0.5 if masks.is_floating_point() else masks > 0
        for mask in binary:
            self.masks.append(_pixels(mask, x, y))

    def merged(self, options: SliceOptions) -> dict[str, Tensor]:
        boxes = torch.cat(self.boxes) if self.boxes else torch.zeros(0, 4)
        labels = torch.cat(self.labels) if self.labels else torch.zeros(0, dtype=torch.int64)
        scores = torch.cat(self.scores) if self.scores else torch.zeros(0)
        boxes, scores, labels, groups = merge_detections(boxes, scores, labels, options.merge, options.match,
                                                         options.threshold)  # fmt: skip
        out = {"boxes": boxes, "labels": labels, "scores": scores}
        if self.masks is not None:
            height, width = self.size
            masks = torch.zeros(len(groups), 1, height, width, dtype=torch.uint8)
            for k, group in enumerate(groups):
                for j in group:
                    x, y, pixels = self.masks[j]
                    h, w = pixels.shape
                    masks[k, 0, y : y + h, x : x + w] |= pixels.to(torch.uint8)
            out["masks"] = masks
        return out


def _pixels(mask: Tensor, x: int, y: int) -> tuple[int, int, Tensor]:
    """A slice's ``bool [h, w]`` mask as (x, y, its pixels' bounding crop) in the image's coordinates."""
    rows, cols = torch.nonzero(mask.any(1)).flatten(), torch.nonzero(mask.any(0)).flatten()
    if len(rows) == 0:
        return x, y, mask[:0, :0]
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return x + x0, y + y0, mask[y0:y1, x0:x1].clone()


def slice_count(height: int, width: int, tile: int, overlap: float) -> int:
    """How many slices :class:`SlicedDetector` runs on an image of ``height`` x ``width`` (1: run whole)."""
    if tile >= height and tile >= width:
        return 1
    return len(slice_starts(height, tile, overlap)) * len(slice_starts(width, tile, overlap))
