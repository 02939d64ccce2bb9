"""Instance segmentation drawn as the lecture draws it: every object its own colour, mask and box.

Semantic segmentation colours pixels by class (``overlay_mask``); instance segmentation separates the
objects, so two touching circles get two colours here. Each instance's mask is blended in its colour
and its box drawn in the same colour with a "name score" caption.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from detseg.viz.draw import _numpy, _text_color, class_colors, to_rgb_uint8


def draw_instances(
    image_uint8_hwc: np.ndarray,
    boxes: Any,
    labels: Any,
    masks: Any,
    class_names: Sequence[str],
    scores: Any = None,
    alpha: float = 0.5,
    width: int = 2,
) -> np.ndarray:
    """Blend binary ``masks`` ``[N, H, W]`` (or Mask R-CNN's ``[N, 1, H, W]`` probabilities, cut at 0.5)
    over the image and draw ``boxes`` ``[N, 4]`` (x1, y1, x2, y2), instance ``i`` in colour ``i``.

    ``labels``: ``[N]`` 0-based indices into ``class_names``. Returns ``uint8 [H, W, 3]``.
    """
    canvas = to_rgb_uint8(image_uint8_hwc)
    masks_np = _numpy(masks)
    if masks_np.ndim == 4:
        masks_np = masks_np[:, 0]
    boxes_np = _numpy(boxes).astype(np.float32).reshape(-1, 4)
    labels_np = _numpy(labels).astype(np.int64).reshape(-1)
    n = len(boxes_np)
    if len(labels_np) != n or len(masks_np) != n:
        raise ValueError(f"draw_instances: {n} boxes, {len(labels_np)} labels and {len(masks_np)} masks")
    if n == 0:
        return canvas
    if masks_np.shape[1:] != canvas.shape[:2]:
        raise ValueError(f"masks are {masks_np.shape[1:]} but the image is {canvas.shape[:2]}")
    binary = masks_np >= 0.5 if masks_np.dtype.kind == "f" else masks_np > 0
    colors = class_colors(n)
    image = torch.from_numpy(canvas).permute(2, 0, 1)
    image = draw_segmentation_masks(image, torch.from_numpy(binary), alpha=alpha, colors=colors)
    scores_np = None if scores is None else _numpy(scores).astype(np.float64).reshape(-1)
    captions = []
    for i, label in enumerate(labels_np):
        name = class_names[label] if 0 <= label < len(class_names) else str(int(label))
        captions.append(name if scores_np is None else f"{name} {scores_np[i]:.2f}")
    image = draw_bounding_boxes(
        image, torch.from_numpy(boxes_np), labels=captions, colors=colors, width=width, fill_labels=True,
        label_colors=[_text_color(c) for c in colors],
    )
    return np.ascontiguousarray(image.permute(1, 2, 0).numpy())
