"""Drawing detections and masks onto images: boxes with class names and scores, class-coloured masks.

Images are ``uint8 [H, W, 3]`` RGB numpy arrays (``[H, W]`` greyscale, ``[H, W, 4]`` RGBA and
``[C, H, W]`` tensors are accepted and converted). Every function returns a new array.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torchvision.utils import draw_bounding_boxes

#: Colour of pixels outside [0, num_classes) that are not the ignore index: they should not exist.
UNEXPECTED_COLOR = (255, 0, 255)


def default_palette(n: int = 256) -> np.ndarray:
    """PASCAL VOC's colour map as ``uint8 [n, 3]``: 0 black, 1 (128, 0, 0), 2 (0, 128, 0), ...,
    255 (224, 224, 192), built from the bits of the class index."""
    index = np.arange(n)
    palette = np.zeros((n, 3), dtype=np.int64)
    for shift in range(8):
        for channel in range(3):
            bit = (index >> (3 * shift + channel)) & 1
            palette[:, channel] |= bit << (7 - shift)
    return palette.astype(np.uint8)


def class_colors(n: int, color_seed: int = 0) -> list[tuple[int, int, int]]:
    """``n`` bright, well-separated RGB colours (golden-ratio hue steps; the seed rotates the hues)."""
    offset = 0.0 if color_seed == 0 else float(np.random.default_rng(color_seed).random())
    colors = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((offset + i * 0.618033988749895) % 1.0, 0.85, 1.0)
        colors.append((round(r * 255), round(g * 255), round(b * 255)))
    return colors


def to_rgb_uint8(image: Any) -> np.ndarray:
    """Any image (numpy HWC/HW, tensor CHW/HW, uint8 or float in [0, 1]) as ``uint8 [H, W, 3]`` RGB."""
    if isinstance(image, torch.Tensor):
        array = image.detach().cpu()
        if array.ndim == 3:
            array = array.permute(1, 2, 0)
        array = array.numpy()
    else:
        array = np.asarray(image)
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"image must be uint8 or float in [0, 1], got dtype {array.dtype}")
        array = np.clip(np.round(array * 255), 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"image must be [H, W], [H, W, C] or [C, H, W] with C in 1..4, got {array.shape}")
    if array.shape[2] <= 2:  # grey (+ alpha)
        array = np.repeat(array[..., :1], 3, axis=2)
    return np.ascontiguousarray(array[..., :3])


def _numpy(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def draw_detections(
    image_uint8_hwc: np.ndarray,
    boxes: Any,
    labels: Any,
    class_names: Sequence[str],
    scores: Any = None,
    color_seed: int = 0,
    width: int = 2,
) -> np.ndarray:
    """Draw boxes ``[N, 4]`` (x1, y1, x2, y2 pixels) with "name score" captions, one colour per class.

    labels: ``[N]`` 0-based indices into ``class_names`` (an index outside it is written as a number).
    Returns ``uint8 [H, W, 3]``.
    """
    canvas = to_rgb_uint8(image_uint8_hwc)
    boxes_np = _numpy(boxes).astype(np.float32).reshape(-1, 4)
    labels_np = _numpy(labels).astype(np.int64).reshape(-1)
    if len(labels_np) != len(boxes_np):
        raise ValueError(f"draw_detections: {len(boxes_np)} boxes but {len(labels_np)} labels")
    scores_np = None if scores is None else _numpy(scores).astype(np.float64).reshape(-1)
    if scores_np is not None and len(scores_np) != len(boxes_np):
        raise ValueError(f"draw_detections: {len(boxes_np)} boxes but {len(scores_np)} scores")
    if len(boxes_np) == 0:
        return canvas
    palette = class_colors(max(len(class_names), int(labels_np.max()) + 1, 1), color_seed)
    captions, colors = [], []
    for i, label in enumerate(labels_np):
        name = class_names[label] if 0 <= label < len(class_names) else str(int(label))
        captions.append(name if scores_np is None else f"{name} {scores_np[i]:.2f}")
        colors.append(palette[label] if label >= 0 else (255, 255, 255))
    drawn = draw_bounding_boxes(
        torch.from_numpy(canvas).permute(2, 0, 1),
        torch.from_numpy(boxes_np),
        labels=captions,
        colors=colors,
        width=width,
        fill_labels=True,  # caption on a box-coloured band, in black or white, readable on any image
        label_colors=[_text_color(c) for c in colors],
    )
    return np.ascontiguousarray(drawn.permute(1, 2, 0).numpy())


def _text_color(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (0, 0, 0) if luma > 128 else (255, 255, 255)


def colorize_mask(mask_hw: Any, palette: np.ndarray | None = None) -> np.ndarray:
    """Class-index mask ``[H, W]`` as ``uint8 [H, W, 3]`` colours (VOC palette by default)."""
    mask = _numpy(mask_hw).astype(np.int64)
    if mask.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {mask.shape}")
    top = int(mask.max(initial=0))
    colors = default_palette(max(256, top + 1)) if palette is None else np.asarray(palette)
    if mask.size and (mask.min() < 0 or top >= len(colors)):
        raise ValueError(f"mask values {mask.min()}..{top} fall outside the {len(colors)}-colour palette")
    return colors[mask].astype(np.uint8)


def overlay_mask(
    image_uint8_hwc: np.ndarray,
    mask_hw: Any,
    num_classes: int,
    alpha: float = 0.5,
    ignore_index: int = 255,
    palette: np.ndarray | None = None,
) -> np.ndarray:
    """Blend a class-index mask over the image: class ``c`` in ``palette[c]``, the ignore index in the
    palette's colour for it (VOC: 255 -> cream) and any other value in magenta, with weight ``alpha``."""
    canvas = to_rgb_uint8(image_uint8_hwc)
    mask = _numpy(mask_hw).astype(np.int64)
    if mask.shape != canvas.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} differs from image size {canvas.shape[:2]}")
    size = max(256, num_classes, ignore_index + 1)
    colors = default_palette(size) if palette is None else np.asarray(palette)
    if len(colors) < num_classes:
        raise ValueError(f"palette has {len(colors)} colours for {num_classes} classes")
    color_img = np.empty_like(canvas)
    color_img[:] = UNEXPECTED_COLOR
    known = (mask >= 0) & (mask < num_classes)
    color_img[known] = colors[mask[known]]
    ignored = mask == ignore_index
    color_img[ignored] = colors[ignore_index] if 0 <= ignore_index < len(colors) else (255, 255, 255)
    blended = canvas.astype(np.float32) * (1 - alpha) + color_img.astype(np.float32) * alpha
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def save_image(path: str | Path, array: Any) -> Path:
    """Write an RGB(A) or greyscale ``uint8`` image (PNG, JPEG, ... by extension); makes the folder."""
    path = Path(path)
    image = _numpy(array)
    if image.dtype != np.uint8:
        raise ValueError(f"{path}: save_image needs uint8 pixels, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] in (3, 4):
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR if image.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    elif not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1)):
        raise ValueError(f"{path}: save_image needs [H, W] or [H, W, 3|4], got shape {image.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise ValueError(f"{path}: could not write the image (unknown extension?)")
    return path
