"""Gallery pictures for the reports: find an image by the name the ground truth gives, crop around a
box with some context, draw boxes with captions, save small JPEGs.

Images are ``uint8 [H, W, 3]`` RGB; boxes ``[x1, y1, x2, y2]`` in the image's pixels (COCO's
continuous convention, as everywhere in detseg).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class ImageSource:
    """Images of an evaluation, found in ``image_dir`` by the file name the ground truth gives
    (as a relative path, then by base name, then by stem with any image suffix).

    ``load(name, size)`` returns the RGB image, resized to ``size = (width, height)`` when the ground
    truth's frame differs from the file's (a model evaluated at another size), or None when it is
    not found; ``missing`` holds the names not found."""

    def __init__(self, image_dir: str | Path | None, cache: int = 8):
        self.image_dir = Path(image_dir) if image_dir is not None else None
        self.missing: set[str] = set()
        self._cache: OrderedDict = OrderedDict()
        self._size = cache
        self._by_stem: dict[str, Path] | None = None

    def find(self, name: str) -> Path | None:
        if self.image_dir is None or not name:
            return None
        for candidate in (self.image_dir / name, self.image_dir / Path(name).name):
            if candidate.is_file():
                return candidate
        if self._by_stem is None:
            self._by_stem = {}
            if self.image_dir.is_dir():
                for p in sorted(self.image_dir.iterdir()):
                    if p.suffix.lower() in IMAGE_SUFFIXES:
                        self._by_stem.setdefault(p.stem, p)
        return self._by_stem.get(Path(name).stem)

    def load_file(self, path: str | Path) -> np.ndarray | None:
        """An image file as RGB, or None (and its name in ``missing``) when it cannot be read."""
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR) if Path(path).is_file() else None
        if bgr is None:
            self.missing.add(str(path))
            return None
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def load(self, name: str, size: tuple[int, int] | None = None) -> np.ndarray | None:
        key = (name, size)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        path = self.find(name)
        image = None
        if path is not None:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is not None:
                image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                if size and size[0] > 0 and size[1] > 0 and (image.shape[1], image.shape[0]) != tuple(size):
                    image = cv2.resize(image, tuple(int(v) for v in size), interpolation=cv2.INTER_AREA)
        if image is None:
            self.missing.add(name)
        self._cache[key] = image
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return image


def crop_window(box, width: int, height: int, context: float = 0.6, min_side: int = 48) -> tuple[int, ...]:
    """Integer window ``(x0, y0, x1, y1)`` around ``box`` grown by ``context`` of its size on each side
    (at least ``min_side`` pixels across), clipped to the image."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    half_w = max(w * (0.5 + context), min_side / 2)
    half_h = max(h * (0.5 + context), min_side / 2)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    x0, x1_ = int(max(0, np.floor(cx - half_w))), int(min(width, np.ceil(cx + half_w)))
    y0, y1_ = int(max(0, np.floor(cy - half_h))), int(min(height, np.ceil(cy + half_h)))
    if x1_ <= x0 or y1_ <= y0:  # a box outside the image: show the whole image
        return 0, 0, width, height
    return x0, y0, x1_, y1_


def fit(image: np.ndarray, max_w: int, max_h: int, upscale: float = 4.0) -> tuple[np.ndarray, float]:
    """Resize to fit ``max_w x max_h`` (small crops grow up to ``upscale`` times); returns (image, scale)."""
    h, w = image.shape[:2]
    scale = min(max_w / w, max_h / h, upscale)
    if abs(scale - 1) < 1e-3:
        return image, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interp), scale


def draw_box(
    image: np.ndarray, box, color, caption: str = "", thickness: int = 2, dashed: bool = False
) -> None:
    """Draw one box (in place) with its caption on a band of its colour above (or inside) it."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    x1, x2 = max(min(x1, w - 1), 0), max(min(x2 - 1, w - 1), 0)
    y1, y2 = max(min(y1, h - 1), 0), max(min(y2 - 1, h - 1), 0)
    color = tuple(int(c) for c in color)
    if dashed:
        for (ax, ay), (bx, by) in (
            ((x1, y1), (x2, y1)),
            ((x2, y1), (x2, y2)),
            ((x2, y2), (x1, y2)),
            ((x1, y2), (x1, y1)),
        ):
            n = max(int(np.hypot(bx - ax, by - ay) // 8), 1)
            for k in range(0, n, 2):
                p = (int(ax + (bx - ax) * k / n), int(ay + (by - ay) * k / n))
                q = (int(ax + (bx - ax) * min(k + 1, n) / n), int(ay + (by - ay) * min(k + 1, n) / n))
                cv2.line(image, p, q, color, thickness, cv2.LINE_AA)
    else:
        cv2.rectangle(image, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
    if caption:
        font, fs = cv2.FONT_HERSHEY_SIMPLEX, 0.42
        (tw, th), base = cv2.getTextSize(caption, font, fs, 1)
        ty = y1 - 3 if y1 - th - base - 3 >= 0 else min(y1 + th + 3, h - base - 1)
        tx = max(min(x1, w - tw - 2), 0)
        cv2.rectangle(image, (tx, ty - th - 2), (tx + tw + 2, ty + base - 1), color, -1)
        luma = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
        text = (0, 0, 0) if luma > 140 else (255, 255, 255)
        cv2.putText(image, caption, (tx + 1, ty - 1), font, fs, text, 1, cv2.LINE_AA)


def save_jpeg(path: str | Path, image: np.ndarray, quality: int = 88) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(
        str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    ):
        raise ValueError(f"{path}: could not write the image")
    return path
