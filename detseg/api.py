"""The Python API in one call, in Ultralytics' spirit: a model with its weights, images in, results out.

    import detseg
    model = detseg.load("ssd300_vgg16", pretrained="COCO_V1")   # or detseg.load("runs/x/best.pt")
    results = model.predict(["dog.jpg", "street.jpg"])
    r = results[0]
    r.boxes, r.labels, r.scores, r.names       # Tensor[N, 4] xyxy px, Tensor[N] 0-based, Tensor[N], list[str]
    r.plot("dog_boxes.png")                     # the picture `detseg predict` draws (uint8 [H', W', 3])
    r.save("out")                               # out/dog.png, out/labels/dog.txt: as `detseg predict`
    r.to_coco(image_id=1)                       # COCO results, the weights' own category ids (1..90)
    for r in model.predict("frames/", stream=True, batch=8):   # one at a time, for folders and videos
        r.save("out")

An instance segmenter's (Mask R-CNN) also has ``instance_masks`` (``bool [N, H, W]``, one per detection:
``plot`` fills them, ``to_coco`` adds their RLE ``segmentation``).
A segmenter's result has ``masks`` (``Tensor[H, W]`` class indices) and its ``plot`` overlays them; a
classifier's has ``probs`` (``Tensor[K]``) and ``top5``. ``names`` are the weights' classes: COCO's,
VOC's, ImageNet's for torchvision's weights, the run's classes for a detseg checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detseg.engine.results import SCORE_THRESHOLD, Results

__all__ = ["Model", "Results", "load"]


class Model:
    """A model and its ``meta`` (task, classes...), ready to predict; ``model.module`` is the network."""

    def __init__(self, module: nn.Module, meta: dict[str, Any], device: str | torch.device = "cpu") -> None:
        self.module, self.meta, self.device = module.eval(), meta, torch.device(device)

    @property
    def task(self) -> str:
        return str(self.meta.get("task", "segment"))

    @property
    def names(self) -> list[str]:
        return list(self.meta.get("classes") or [])

    def __repr__(self) -> str:
        return f"detseg.Model({self.meta.get('model')}, {self.task}, {len(self.names)} classes)"

    def predict(
        self,
        images: Any,
        score_threshold: float = SCORE_THRESHOLD,
        stream: bool = False,
        batch: int = 1,
        tta: str | None = None,
        tile: int | None = None,
        overlap: float = 0.25,
        keep_all: bool = False,
        workers: int = 0,
        full_image: bool = False,
        merge: str | None = None,
        match: str | None = None,
        merge_threshold: float | None = None,
        tile_batch: int | None = None,
    ) -> list[Results] | Iterator[Results]:
        """Run on ``images``: a path, a folder, a video, or a list of paths / ``uint8 [H, W, 3]`` arrays /
        float ``Tensor[3, H, W]`` in [0, 1] / PIL images. ``stream=True`` yields the results one by one
        (any number of images), else returns their list. ``batch`` images per model call (``workers``
        processes decode files ahead); ``tta``: a segmenter's test-time augmentation ("hflip", "flips",
        "d4"); ``tile``/``overlap``: a segmenter's windows (default: its training size), or a detector's
        slices (sliced inference, default none: :mod:`detseg.engine.slicing`) with ``full_image`` (also the
        whole image), ``merge`` ("greedy-nmm", "nmm", "nms"), ``match`` ("ios", "iou"),
        ``merge_threshold`` (0.5); ``tile_batch`` slices or windows per model call. Detections under
        ``score_threshold`` are left out, unless ``keep_all`` (then only pictures and text files leave
        them out: ``to_coco`` has every one, as ``detseg predict``'s results.json)."""
        from detseg.engine.predict import iter_results
        from detseg.engine.slicing import with_slicing
        from detseg.engine.sources import open_source
        from detseg.engine.tta import with_tta

        pin = self.device.type == "cuda" and torch.cuda.is_available()
        batches, _, _ = open_source(images, int(self.meta.get("channels", 3)), batch, workers, pin)
        module = with_slicing(self.module, self.task, tile, overlap, full_image, merge, match,
                              merge_threshold, tile_batch)  # fmt: skip
        module = with_tta(module, tta, self.task)
        results = iter_results(module, self.meta, batches, score_threshold, keep_all, tile, overlap,
                               tile_batch=tile_batch)  # fmt: skip
        return results if stream else list(results)


def load(
    model: str | Path,
    pretrained: Any = None,
    device: str | torch.device = "cpu",
    offline: bool | None = None,
) -> Model:
    """A model ready to :meth:`~Model.predict`: ``load("ssd300_vgg16", pretrained="COCO_V1")`` (a
    registered or ``timm:`` name and its weights: a torchvision weights name, a URL, a file, ``zoo:NAME``,
    a timm tag), or ``load("runs/x/best.pt")`` (a detseg checkpoint, run folder or ``.onnx`` export).
    ``offline=True`` never downloads (missing weights: one line saying which file to put where).
    The same loader as ``detseg predict``, ``eval`` and ``export`` (:func:`detseg.engine.loader.load`)."""
    from detseg.engine.loader import load as load_module

    module, meta = load_module(model, pretrained, device, offline=offline)
    return Model(module, meta, device)
