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


def _detection_arrays(
    boxes: Any, labels: Any, scores: Any, who: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Boxes ``float32 [N, 4]``, labels ``int64 [N]`` and scores ``float64 [N]`` (or None), their
    lengths checked against each other (``who`` names the caller in the error)."""
    boxes_np = _numpy(boxes).astype(np.float32).reshape(-1, 4)
    labels_np = _numpy(labels).astype(np.int64).reshape(-1)
    if len(labels_np) != len(boxes_np):
        raise ValueError(f"{who}: {len(boxes_np)} boxes but {len(labels_np)} labels")
    scores_np = None if scores is None else _numpy(scores).astype(np.float64).reshape(-1)
    if scores_np is not None and len(scores_np) != len(boxes_np):
        raise ValueError(f"{who}: {len(boxes_np)} boxes but {len(scores_np)} scores")
    return boxes_np, labels_np, scores_np


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
    boxes_np, labels_np, scores_np = _detection_arrays(boxes, labels, scores, "draw_detections")
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


# ---------------------------------------------------------------- pictures people can read
#: Images whose shorter side is below this are enlarged (whole-pixel factor, nearest neighbour).
MIN_SIDE = 512


def upscale_factor(height: int, width: int, min_side: int = MIN_SIDE, max_side: int = 2048) -> int:
    """Whole-number factor that brings the shorter side to at least ``min_side`` pixels without taking
    the longer one past ``max_side`` (1 for images already large enough)."""
    short, long = min(height, width), max(height, width)
    if short <= 0 or short >= min_side:
        return 1
    return max(1, min(-(-min_side // short), max_side // max(long, 1)))


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """``[H, W, ...]`` -> ``[H * factor, W * factor, ...]`` by repeating pixels (labels stay exact)."""
    if factor == 1:
        return image
    return np.ascontiguousarray(image.repeat(factor, axis=0).repeat(factor, axis=1))


def _font(canvas: np.ndarray) -> tuple[float, int]:
    """(cv2 font scale, stroke) for captions about 1/35 of the shorter side tall (16 px at 512)."""
    scale = max(0.5, min(canvas.shape[:2]) / 900)
    return scale, 1 if scale < 0.9 else 2


def caption_box(
    box: Sequence[float], size: tuple[int, int], image_hw: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Where a caption of ``size`` (w, h) goes for ``box`` (x1, y1, x2, y2): on a band above the box,
    else below it, else inside its top edge; always inside the image. Returns (x1, y1, x2, y2)."""
    w, h = size
    height, width = image_hw
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    left = int(np.clip(x1, 0, max(width - w, 0)))
    if y1 - h >= 0:
        top = y1 - h  # above: the object stays uncovered
    elif y2 + h <= height:
        top = y2  # below
    else:
        top = int(np.clip(y1, 0, max(height - h, 0)))
    return left, top, left + w, top + h


def draw_captioned_boxes(
    canvas: np.ndarray,
    boxes: np.ndarray,
    captions: Sequence[str],
    colors: Sequence[tuple[int, int, int]],
) -> np.ndarray:
    """Boxes ``[N, 4]`` (pixels of ``canvas``) in their colours, each caption on a coloured band placed
    by ``caption_box``; line width and font follow the image size. Returns a new ``uint8 [H, W, 3]``."""
    out = canvas.copy()
    scale, stroke = _font(out)
    thick = max(2, round(min(out.shape[:2]) / 256))
    pad = max(2, round(4 * scale))
    for box, color in zip(boxes, colors, strict=True):
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), tuple(int(c) for c in color), thick, cv2.LINE_AA)
    for box, caption, color in zip(boxes, captions, colors, strict=True):
        (tw, th), base = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, scale, stroke)
        cx1, cy1, cx2, cy2 = caption_box(box, (tw + 2 * pad, th + base + 2 * pad), out.shape[:2])
        cv2.rectangle(out, (cx1, cy1), (cx2 - 1, cy2 - 1), tuple(int(c) for c in color), -1)
        cv2.putText(
            out, caption, (cx1 + pad, cy2 - pad - base), cv2.FONT_HERSHEY_SIMPLEX, scale,
            _text_color(color), stroke, cv2.LINE_AA,
        )  # fmt: skip
    return out


def legend_strip(
    names: Sequence[str], colors: Sequence[tuple[int, int, int]], width: int, scale: float | None = None
) -> np.ndarray:
    """A white strip ``uint8 [h, width, 3]`` with a colour swatch and the name of every class, wrapped
    over as many rows as needed."""
    scale = scale or float(np.clip(width / 900, 0.5, 0.8))
    stroke = 1 if scale < 0.9 else 2
    (_, th), base = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, stroke)
    row_h, pad = th + base + 12, 10
    items, x, rows = [], pad, 0
    for name, color in zip(names, colors, strict=True):
        tw = cv2.getTextSize(str(name), cv2.FONT_HERSHEY_SIMPLEX, scale, stroke)[0][0]
        item_w = row_h + 6 + tw + 2 * pad
        if x + item_w > width and x > pad:
            x, rows = pad, rows + 1
        items.append((x, rows, str(name), color))
        x += item_w
    strip = np.full(((rows + 1) * row_h + pad, width, 3), 255, np.uint8)
    for x, row, name, color in items:
        y = pad // 2 + row * row_h
        sw = row_h - 8
        cv2.rectangle(strip, (x, y + 4), (x + sw, y + 4 + sw), tuple(int(c) for c in color), -1)
        cv2.rectangle(strip, (x, y + 4), (x + sw, y + 4 + sw), (0, 0, 0), 1)
        cv2.putText(
            strip, name, (x + sw + 6, y + 4 + sw - base // 2 - 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
            (0, 0, 0), stroke, cv2.LINE_AA,
        )  # fmt: skip
    return strip


def with_legend(
    canvas: np.ndarray, names: Sequence[str], colors: Sequence[tuple[int, int, int]]
) -> np.ndarray:
    """``canvas`` with ``legend_strip`` below it (unchanged when there are no names)."""
    if not len(names):
        return canvas
    return np.concatenate([canvas, legend_strip(names, colors, canvas.shape[1])], axis=0)


def render_detections(
    image: Any,
    boxes: Any,
    labels: Any,
    class_names: Sequence[str],
    scores: Any = None,
    legend: bool = True,
    min_side: int = MIN_SIDE,
    color_seed: int = 0,
) -> np.ndarray:
    """A detection picture people can read: the image enlarged to ``min_side`` (``upscale_factor``),
    boxes ``[N, 4]`` (x1, y1, x2, y2 in the original image's pixels) in class colours with "name score"
    captions above them, and a legend of every class colour below. Returns ``uint8 [H', W', 3]``."""
    canvas = to_rgb_uint8(image)
    boxes_np, labels_np, scores_np = _detection_arrays(boxes, labels, scores, "render_detections")
    factor = upscale_factor(*canvas.shape[:2], min_side=min_side)
    canvas = upscale(canvas, factor)
    palette = class_colors(max(len(class_names), int(labels_np.max(initial=-1)) + 1, 1), color_seed)
    captions, colors = [], []
    for i, label in enumerate(labels_np):
        name = class_names[label] if 0 <= label < len(class_names) else str(int(label))
        captions.append(name if scores_np is None else f"{name} {scores_np[i]:.2f}")
        colors.append(palette[label] if label >= 0 else (255, 255, 255))
    canvas = draw_captioned_boxes(canvas, boxes_np * factor, captions, colors)
    return with_legend(canvas, class_names, palette[: len(class_names)]) if legend else canvas


def render_segmentation(
    image: Any,
    mask_hw: Any,
    class_names: Sequence[str],
    ignore_index: int = 255,
    alpha: float = 0.6,
    legend: bool = True,
    min_side: int = MIN_SIDE,
) -> np.ndarray:
    """A mask overlay people can read: ``overlay_mask`` (VOC palette) enlarged to ``min_side``, a class
    named background left untinted, every class region outlined in its colour, and a legend of the
    class colours (and the void colour) below it. Returns ``uint8 [H', W', 3]``."""
    rgb = to_rgb_uint8(image)
    mask = _numpy(mask_hw).astype(np.int64)
    canvas = overlay_mask(rgb, mask, len(class_names), alpha=alpha, ignore_index=ignore_index)
    background = [
        i for i, n in enumerate(class_names) if str(n).lower() in ("background", "bg", "_background_")
    ]
    canvas = np.where(np.isin(mask, background)[..., None], rgb, canvas)
    factor = upscale_factor(*canvas.shape[:2], min_side=min_side)
    canvas, mask = upscale(canvas, factor), upscale(mask, factor)
    palette = default_palette(max(256, len(class_names), ignore_index + 1))
    thick = max(1, round(min(canvas.shape[:2]) / 300))
    for c in np.unique(mask):
        if c in background or not 0 <= c < len(palette):
            continue
        contours, _ = cv2.findContours((mask == c).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, contours, -1, tuple(int(v) for v in palette[c]), thick, cv2.LINE_AA)
    if not legend:
        return canvas
    names = list(class_names)
    colors = [tuple(int(v) for v in palette[i]) for i in range(len(names))]
    if (mask == ignore_index).any():
        names.append("ignore")
        colors.append(tuple(int(v) for v in palette[ignore_index]))
    return with_legend(canvas, names, colors)


def thumbnail(picture: np.ndarray, side: int = 384) -> np.ndarray:
    """A copy at most ``side`` pixels on its longer side (a contact sheet's tile; keeps memory small)."""
    f = side / max(picture.shape[:2])
    if f >= 1:
        return picture
    size = (max(1, round(picture.shape[1] * f)), max(1, round(picture.shape[0] * f)))
    return cv2.resize(picture, size, interpolation=cv2.INTER_AREA)


def contact_sheet(
    images: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    tile: int = 384,
    columns: int | None = None,
    legend: tuple[Sequence[str], Sequence[tuple[int, int, int]]] | None = None,
) -> np.ndarray:
    """A grid of ``images`` (each fitted into ``tile`` x ``tile``, aspect kept, with its title below),
    ``columns`` wide (about square by default), and one legend ``(names, colours)`` at the bottom."""
    if not len(images):
        raise ValueError("contact_sheet: no images")
    columns = columns or max(1, int(np.ceil(np.sqrt(len(images)))))
    rows = -(-len(images) // columns)
    scale, stroke = 0.55, 1
    (_, th), base = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, stroke)
    title_h, gap = (th + base + 8) if titles else 0, 6
    cell_h = tile + title_h
    sheet = np.full((rows * (cell_h + gap) + gap, columns * (tile + gap) + gap, 3), 255, np.uint8)
    for i, image in enumerate(images):
        image = to_rgb_uint8(image)
        r, c = divmod(i, columns)
        f = tile / max(image.shape[:2])
        h, w = max(1, round(image.shape[0] * f)), max(1, round(image.shape[1] * f))
        interp = cv2.INTER_AREA if f < 1 else cv2.INTER_NEAREST
        fitted = cv2.resize(image, (w, h), interpolation=interp)
        y0, x0 = gap + r * (cell_h + gap), gap + c * (tile + gap)
        sheet[
            y0 + (tile - h) // 2 : y0 + (tile - h) // 2 + h, x0 + (tile - w) // 2 : x0 + (tile - w) // 2 + w
        ] = fitted
        if titles:
            text = str(titles[i])
            while (
                len(text) > 4 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, stroke)[0][0] > tile
            ):
                text = text[:-4] + "..."
            cv2.putText(
                sheet, text, (x0 + 2, y0 + tile + th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                stroke, cv2.LINE_AA,
            )  # fmt: skip
    if legend is not None:
        sheet = with_legend(sheet, *legend)
    return sheet
