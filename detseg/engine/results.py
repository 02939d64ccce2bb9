"""What a model found in one image, and the one place its pictures, text box files, masks and COCO rows
are made: ``detseg predict`` is a loop over :class:`Results` calling :meth:`Results.save` and
:meth:`Results.to_coco`, so the command line and the Python API write the same files, byte for byte.

Files (:meth:`Results.save`, ``<stem>`` the image's file stem):

- detection: ``<dir>/<stem>.png``, the image enlarged to >= 512 px with boxes, "name score" captions
  and a legend (a mask model: each instance's mask in its box's colour), and ``<dir>/labels/<stem>.txt``
  (``name score x1 y1 x2 y2``), both with the detections scoring ``score_threshold`` or more;
- segmentation: ``<dir>/<stem>.png``, the class-index mask in the data set's pixel values (membrane:
  class 1 -> 255), and ``<dir>/overlay/<stem>.png``, the colour overlay with a legend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: Detections scoring at least this are drawn and written to text box files, by ``detseg predict`` and
#: by ``detseg.load(...).predict`` alike (COCO results keep every detection).
SCORE_THRESHOLD = 0.3


@dataclass
class Results:
    """What the model found in one image (``image``: ``uint8 [H, W, C]``; ``path`` when read from a file;
    ``file_name`` names the files :meth:`save` writes).

    Detection: ``boxes`` ``float [N, 4]`` (x1, y1, x2, y2 pixels), ``labels`` ``int64 [N]`` indices into
    ``names``, ``scores`` ``float [N]``; an instance segmenter's ``instance_masks`` ``bool [N, H, W]`` (its
    mask probabilities cut at 0.5). Pictures and text box files show those scoring ``score_threshold`` or
    more; :meth:`to_coco` writes them all. Segmentation: ``masks`` ``int64 [H, W]`` class indices,
    ``values`` the pixel value each class is written as. Classification: ``probs`` ``float [K]``.
    ``speed``: this image's milliseconds of preprocess, inference and postprocess."""

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
    score_threshold: float = 0.0
    values: np.ndarray | None = None
    file_name: str | None = None
    speed: dict[str, float] = field(default_factory=dict)

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

    @property
    def stem(self) -> str:
        """The stem of the files :meth:`save` writes."""
        return Path(self.file_name or self.path or "image").stem

    def _shown(self) -> torch.Tensor:
        """Which detections pictures and text box files show (``scores >= score_threshold``)."""
        return self.scores >= self.score_threshold

    def plot(self, path: str | Path | None = None) -> np.ndarray:
        """The picture :meth:`save` writes (``uint8 [H', W', 3]``, enlarged to >= 512 px with a legend; a
        mask model's at the image's size), written to ``path`` when given."""
        from detseg.viz.draw import render_detections, render_segmentation, save_image, to_rgb_uint8

        if self.boxes is not None:
            keep = self._shown()
            boxes, labels, scores = self.boxes[keep], self.labels[keep], self.scores[keep]
            if self.instance_masks is not None:
                from detseg.viz.instances import draw_instances

                masks = self.instance_masks[keep].numpy().astype(np.uint8)
                drawn = draw_instances(self.image, boxes, labels, masks, self.names, scores)
            else:
                drawn = render_detections(self.image, boxes, labels, self.names, scores)
        elif self.masks is not None:
            drawn = render_segmentation(self.image, self.masks.numpy(), self.names)
        else:
            drawn = to_rgb_uint8(self.image)
        if path is not None:
            save_image(path, drawn)
        return drawn

    def text_rows(self) -> list[dict[str, Any]]:
        """The rows of the text box file: ``{"name", "score", "box"}`` per detection shown."""
        rows = []
        for box, label, score in zip(self.boxes.tolist(), self.labels.tolist(), self.scores.tolist(),
                                     strict=True):
            if score >= self.score_threshold:
                rows.append({"name": self.names[label], "score": round(score, 5), "box": box})
        return rows

    def save(self, directory: str | Path, picture: bool = True) -> np.ndarray | None:
        """Write this image's files into ``directory`` (see the module docstring); ``picture=False``
        leaves the picture out (a video's frames go into the video). Returns the picture drawn."""
        from PIL import Image

        from detseg.data.textboxes import write_text_boxes
        from detseg.viz.draw import save_image

        directory = Path(directory)
        drawn = self.plot() if picture else None
        if self.boxes is not None:
            if drawn is not None:
                save_image(directory / f"{self.stem}.png", drawn)
            write_text_boxes(directory / "labels" / f"{self.stem}.txt", self.text_rows())
        elif self.masks is not None:
            classes = self.masks.numpy()
            table = self.values if self.values is not None else np.arange(len(self.names), dtype=np.uint16)
            directory.mkdir(parents=True, exist_ok=True)
            Image.fromarray(table[classes]).save(directory / f"{self.stem}.png")
            if drawn is not None:
                save_image(directory / "overlay" / f"{self.stem}.png", drawn)
        elif drawn is not None:
            save_image(directory / f"{self.stem}.png", drawn)
        return drawn

    def to_coco(self, image_id: int = 1) -> list[dict[str, Any]]:
        """Every detection in COCO's results format (``bbox`` as x, y, w, h to 2 decimals, ``score`` to
        5) with the weights' own category ids (COCO's 1..90 for torchvision's COCO weights); with
        instance masks, each one's RLE ``segmentation`` too."""
        if self.boxes is None:
            raise ValueError(f"a {self.task} result has no boxes to write as COCO detections")
        from detseg.data.coco import mask_to_rle

        ids = self.category_ids or list(range(1, len(self.names) + 1))
        out = []
        for j, (box, label, score) in enumerate(
            zip(self.boxes.tolist(), self.labels.tolist(), self.scores.tolist(), strict=True)
        ):
            x1, y1, x2, y2 = box
            bbox = [round(v, 2) for v in (x1, y1, x2 - x1, y2 - y1)]
            row = {"image_id": int(image_id), "category_id": int(ids[label]), "bbox": bbox,
                   "score": round(score, 5)}  # fmt: skip
            if self.instance_masks is not None:
                row["segmentation"] = mask_to_rle(self.instance_masks[j].numpy().astype(np.uint8))
            out.append(row)
        return out
