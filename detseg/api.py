"""The Python API in one call, in Ultralytics' spirit: a model with its weights, images in, results out.

    import detseg
    model = detseg.load("ssd300_vgg16", pretrained="COCO_V1")   # or detseg.load("runs/x/best.pt")
    results = model.predict(["dog.jpg", "street.jpg"])
    r = results[0]
    r.boxes, r.labels, r.scores, r.names       # Tensor[N, 4] xyxy px, Tensor[N] 0-based, Tensor[N], list[str]
    r.plot("dog_boxes.png")                     # the image with boxes, names and scores (uint8 [H, W, 3])
    r.to_coco(image_id=1)                       # COCO results, the weights' own category ids (1..90)

An instance segmenter's (Mask R-CNN) also has ``instance_masks`` (``bool [N, H, W]``, one per detection:
``plot`` fills them, ``to_coco`` adds their RLE ``segmentation``).
A segmenter's result has ``masks`` (``Tensor[H, W]`` class indices) and its ``plot`` overlays them; a
classifier's has ``probs`` (``Tensor[K]``) and ``top5``. ``names`` are the weights' classes: COCO's,
VOC's, ImageNet's for torchvision's weights, the run's classes for a detseg checkpoint.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass
class Results:
    """What the model found in one image (``image``: ``uint8 [H, W, 3]``; ``path`` when read from a file).

    Detection: ``boxes`` ``float [N, 4]`` (x1, y1, x2, y2 pixels), ``labels`` ``int64 [N]`` indices into
    ``names``, ``scores`` ``float [N]``, sorted by score; an instance segmenter's ``instance_masks``
    ``bool [N, H, W]`` (its mask probabilities cut at 0.5). Segmentation: ``masks`` ``int64 [H, W]`` class
    indices. Classification: ``probs`` ``float [K]``."""

    image: np.ndarray
    names: list[str]
    task: str
    path: str | None = None
    boxes: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    masks: torch.Tensor | None = None
    instance_masks: torch.Tensor | None = None
    probs: torch.Tensor | None = None
    category_ids: list[int] = field(default_factory=list)

    @property
    def label_names(self) -> list[str]:
        """The name of each detection (detectors) in order."""
        return [self.names[i] for i in (self.labels.tolist() if self.labels is not None else [])]

    @property
    def top5(self) -> list[tuple[str, float]]:
        """A classifier's five best ``(name, probability)``."""
        if self.probs is None:
            return []
        scores, ids = self.probs.topk(min(5, len(self.probs)))
        return [(self.names[i], float(s)) for s, i in zip(scores.tolist(), ids.tolist(), strict=True)]

    def plot(self, path: str | Path | None = None) -> np.ndarray:
        """The image with the boxes (names and scores) or the mask overlay drawn, ``uint8 [H, W, 3]``;
        written to ``path`` when given."""
        from detseg.viz.draw import draw_detections, overlay_mask, save_image

        if self.instance_masks is not None:
            from detseg.viz.instances import draw_instances

            masks = self.instance_masks.numpy().astype(np.uint8)
            drawn = draw_instances(self.image, self.boxes, self.labels, masks, self.names, self.scores)
        elif self.boxes is not None:
            drawn = draw_detections(self.image, self.boxes, self.labels, self.names, self.scores)
        elif self.masks is not None:
            drawn = overlay_mask(self.image, self.masks.numpy(), len(self.names))
        else:
            drawn = self.image.copy()
        if path is not None:
            save_image(path, drawn)
        return drawn

    def to_coco(self, image_id: int = 1) -> list[dict[str, Any]]:
        """Detections in COCO's results format (``bbox`` as x, y, w, h) with the weights' own category
        ids (COCO's 1..90 for torchvision's COCO weights); with instance masks, each one's RLE
        ``segmentation`` too."""
        if self.boxes is None:
            raise ValueError(f"a {self.task} result has no boxes to write as COCO detections")
        from detseg.data.coco import mask_to_rle

        ids = self.category_ids or list(range(1, len(self.names) + 1))
        out = []
        for j, (box, label, score) in enumerate(
            zip(self.boxes.tolist(), self.labels.tolist(), self.scores.tolist(), strict=True)
        ):
            x1, y1, x2, y2 = box
            row = {"image_id": int(image_id), "category_id": int(ids[label]),
                   "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)}  # fmt: skip
            if self.instance_masks is not None:
                row["segmentation"] = mask_to_rle(self.instance_masks[j].numpy().astype(np.uint8))
            out.append(row)
        return out


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

    @torch.no_grad()
    def predict(self, images: Any, score_threshold: float = 0.25) -> list[Results]:
        """Run on ``images``: a path, a folder, or a list of paths / ``uint8 [H, W, 3]`` arrays / float
        ``Tensor[3, H, W]`` in [0, 1] / PIL images. Detections under ``score_threshold`` are left out."""
        out = []
        for image, path in _images(images):
            tensor = torch.from_numpy(image).permute(2, 0, 1).float().div(255.0).to(self.device)
            result = Results(image=image, names=self.names, task=self.task, path=path,
                             category_ids=list(self.meta.get("category_ids") or []))
            if self.task in ("detect", "instance"):
                det = self.module([tensor])[0]
                keep = det["scores"] >= score_threshold
                boxes, labels, scores = (det[k][keep].cpu() for k in ("boxes", "labels", "scores"))
                result.boxes, result.labels, result.scores = boxes, labels, scores
                if det.get("masks") is not None:  # Mask R-CNN: [N, 1, H, W] probabilities
                    probs = det["masks"][keep].cpu()
                    result.instance_masks = (probs[:, 0] if probs.dim() == 4 else probs).ge(0.5)
            elif self.task == "classify":
                result.probs = self.module(tensor[None])[0].float().softmax(0).cpu()
            else:
                from detseg.engine.tasks import class_logits

                result.masks = class_logits(self.module(tensor[None]).float())[0].argmax(0).cpu()
            out.append(result)
        return out


def _images(images: Any) -> list[tuple[np.ndarray, str | None]]:
    from detseg.data.masks import IMAGE_EXTENSIONS, read_image

    if isinstance(images, (str, Path)) and Path(images).is_dir():
        images = sorted(p for p in Path(images).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    elif not isinstance(images, (list, tuple)):
        images = [images]
    out = []
    for item in images:
        if isinstance(item, (str, Path)):
            if not Path(item).is_file():
                raise FileNotFoundError(f"image not found: {item}")
            out.append((read_image(item, channels=3), str(item)))
        elif isinstance(item, torch.Tensor):
            out.append(((item.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy(), None))
        else:
            array = np.asarray(item.convert("RGB") if hasattr(item, "convert") else item)
            if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
                raise ValueError(f"an image must be uint8 [H, W, 3], got {array.dtype} {array.shape}")
            out.append((array, None))
    return out


def load(
    model: str | Path,
    pretrained: Any = None,
    device: str | torch.device = "cpu",
    offline: bool | None = None,
) -> Model:
    """A model ready to :meth:`~Model.predict`: ``load("ssd300_vgg16", pretrained="COCO_V1")`` (a
    registered name and its weights: a torchvision weights name, a URL, a file, ``zoo:NAME``), or
    ``load("runs/x/best.pt")`` (a detseg checkpoint or run folder). ``offline=True`` never downloads
    (missing weights: one line saying which file to put where)."""
    from detseg.models.weights import offline_mode

    with offline_mode(offline) if offline is not None else contextlib.nullcontext():
        if pretrained is None and Path(model).exists():
            from detseg.engine.predict import load_model

            module, meta = load_model(model, device)
        else:
            from detseg.engine.pretrained import load_pretrained_model

            module, meta = load_pretrained_model(str(model), pretrained, device)
    return Model(module, meta, device)
