"""Post-processing of binary masks: opening, closing, hole filling, small components, instances.

Masks are ``bool [H, W]`` (anything non-zero counts as foreground). Structuring elements are
OpenCV's: ``shape`` "ellipse" (a disc), "rect" or "cross" of side ``2 * radius + 1``.
"""

from __future__ import annotations

import cv2
import numpy as np

_SHAPES = {"ellipse": cv2.MORPH_ELLIPSE, "rect": cv2.MORPH_RECT, "cross": cv2.MORPH_CROSS}


def _as_u8(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D mask [H, W], got shape {list(mask.shape)}")
    if mask.size == 0:
        raise ValueError(f"{name}: empty mask of shape {list(mask.shape)}")
    if mask.dtype == np.bool_:
        return mask.view(np.uint8)
    return (mask != 0).view(np.uint8)


def structuring_element(radius: int, shape: str = "ellipse") -> np.ndarray:
    """``uint8 [2r+1, 2r+1]`` structuring element (OpenCV's ``getStructuringElement``)."""
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    if shape not in _SHAPES:
        raise ValueError(f"shape must be one of {sorted(_SHAPES)}, got {shape!r}")
    return cv2.getStructuringElement(_SHAPES[shape], (2 * radius + 1, 2 * radius + 1))


def _morph(mask: np.ndarray, op: int, radius: int, shape: str) -> np.ndarray:
    kernel = structuring_element(radius, shape)
    m = _as_u8(mask)
    if op == cv2.MORPH_OPEN:  # a constant background border is exact for an opening: no copy needed
        out = cv2.morphologyEx(m, op, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        return out.view(bool)
    # the mask lies on an infinite background: pad with background so that neither the erosion nor
    # the dilation sees OpenCV's default border (which would neither erode nor dilate there)
    padded = cv2.copyMakeBorder(m, radius, radius, radius, radius, cv2.BORDER_CONSTANT, value=0)
    out = cv2.morphologyEx(padded, op, kernel)
    return out[radius : radius + m.shape[0], radius : radius + m.shape[1]].view(bool)


def opening(mask: np.ndarray, radius: int = 1, shape: str = "ellipse") -> np.ndarray:
    """Erosion then dilation: removes foreground parts the element does not fit in. ``bool [H, W]``.

    The mask is treated as lying on an infinite background (outside the image is background), as
    ``scipy.ndimage.binary_opening`` of the zero-padded mask.
    """
    return _morph(mask, cv2.MORPH_OPEN, radius, shape)


def closing(mask: np.ndarray, radius: int = 1, shape: str = "ellipse") -> np.ndarray:
    """Dilation then erosion: fills background gaps the element does not fit in. ``bool [H, W]``.

    Outside the image is background, as for :func:`opening`; so closing never adds foreground along
    the border that the mask does not support.
    """
    return _morph(mask, cv2.MORPH_CLOSE, radius, shape)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Set to foreground every background pixel not 4-connected to the image border. ``bool [H, W]``.

    Same as ``scipy.ndimage.binary_fill_holes`` with its default (cross-shaped) structure.
    """
    m = _as_u8(mask)
    h, w = m.shape
    padded = np.zeros((h + 2, w + 2), np.uint8)
    padded[1:-1, 1:-1] = m
    flood_mask = np.zeros((h + 4, w + 4), np.uint8)
    # flood the background from outside the image: whatever it cannot reach is a hole
    cv2.floodFill(padded, flood_mask, (0, 0), 1, 0, 0, 4 | cv2.FLOODFILL_MASK_ONLY | (1 << 8))
    return flood_mask[2:-2, 2:-2] == 0


def connected_components(mask: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, int]:
    """Label the foreground's connected components: ``int32 [H, W]`` (0 = background) and their count."""
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    n, labels = cv2.connectedComponents(_as_u8(mask), connectivity=connectivity, ltype=cv2.CV_32S)
    return labels, n - 1


def remove_small_components(mask: np.ndarray, min_size: int, connectivity: int = 8) -> np.ndarray:
    """Drop foreground components with fewer than ``min_size`` pixels. ``bool [H, W]``."""
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    m = _as_u8(mask)
    try:  # 16-bit labels are about twice as fast; OpenCV raises past 65535 components
        _, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=connectivity, ltype=cv2.CV_16U)
    except cv2.error:
        _, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=connectivity, ltype=cv2.CV_32S)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_size
    keep[0] = False
    return np.take(keep, labels)  # faster than keep[labels]


def remove_small_holes(mask: np.ndarray, min_size: int, connectivity: int = 4) -> np.ndarray:
    """Fill background components (holes or not) with fewer than ``min_size`` pixels. ``bool [H, W]``."""
    return ~remove_small_components(~_as_u8(mask).view(bool), min_size, connectivity)


def invert(mask: np.ndarray) -> np.ndarray:
    """Swap foreground and background. ``bool [H, W]``."""
    return ~_as_u8(mask).view(bool)


def instances(mask: np.ndarray, connectivity: int = 8, min_size: int = 1) -> np.ndarray:
    """Connected components as instance masks ``uint8 [N, H, W]`` (detseg's target ``masks`` format),
    in the order of OpenCV's labels; components under ``min_size``
    pixels are dropped."""
    labels, n = connected_components(mask, connectivity)
    if n == 0:
        return np.zeros((0, *labels.shape), np.uint8)
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    ids = [i for i in range(1, n + 1) if areas[i] >= min_size]
    return (labels[None] == np.array(ids, np.int32)[:, None, None]).astype(np.uint8)
