"""Intersection over union for boxes and masks.

Boxes are ``float [N, 4]``; ``box_iou`` takes (x1, y1, x2, y2) and ``box_iou_xywh`` takes COCO's
(x, y, w, h). ``crowd`` marks ground-truth boxes whose IoU is measured as COCO does for crowds:
intersection over the *detection's* area, so a detection inside a crowd region overlaps it fully.
``plus_one`` is the PASCAL VOC devkit's convention for 1-based inclusive integer pixel boxes:
a box from pixel 1 to pixel 10 is 10 pixels wide (width = x2 - x1 + 1).
"""

from __future__ import annotations

import numpy as np


def box_area(boxes: np.ndarray, plus_one: bool = False) -> np.ndarray:
    """Areas ``float64 [N]`` of (x1, y1, x2, y2) boxes ``[N, 4]``."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    one = 1.0 if plus_one else 0.0
    return (b[:, 2] - b[:, 0] + one) * (b[:, 3] - b[:, 1] + one)


def box_iou(
    boxes1: np.ndarray, boxes2: np.ndarray, crowd: np.ndarray | None = None, plus_one: bool = False
) -> np.ndarray:
    """Pairwise IoU ``float64 [N, M]`` of (x1, y1, x2, y2) boxes ``[N, 4]`` (detections) and ``[M, 4]``.

    ``crowd``: ``bool [M]``; for a crowd box the union is the area of the box from ``boxes1``.
    """
    a = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    one = 1.0 if plus_one else 0.0
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + one
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + one
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = box_area(a, plus_one)[:, None]
    union = area_a + box_area(b, plus_one)[None, :] - inter
    if crowd is not None:
        union = np.where(np.asarray(crowd, dtype=bool)[None, :], np.broadcast_to(area_a, union.shape), union)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return iou


def box_iou_xywh(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray | None = None) -> np.ndarray:
    """Pairwise IoU ``[N, M]`` of COCO (x, y, w, h) boxes, bit for bit as ``pycocotools.mask.iou``.

    The operations follow pycocotools' C code in the same order (so float rounding is the same).
    """
    d = np.asarray(dt, dtype=np.float64).reshape(-1, 4)
    g = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    w = np.minimum(d[:, None, 2] + d[:, None, 0], g[None, :, 2] + g[None, :, 0]) - np.maximum(
        d[:, None, 0], g[None, :, 0]
    )
    h = np.minimum(d[:, None, 3] + d[:, None, 1], g[None, :, 3] + g[None, :, 1]) - np.maximum(
        d[:, None, 1], g[None, :, 1]
    )
    inter = w * h
    da = (d[:, 2] * d[:, 3])[:, None]
    union = da + (g[:, 2] * g[:, 3])[None, :] - inter
    if crowd is not None:
        union = np.where(np.asarray(crowd, dtype=bool)[None, :], np.broadcast_to(da, union.shape), union)
    valid = (w > 0) & (h > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(valid, inter / np.where(valid, union, 1.0), 0.0)


def mask_iou(dt_rles: list, gt_rles: list, crowd: list[int] | np.ndarray | None = None) -> np.ndarray:
    """Pairwise IoU ``[N, M]`` of COCO RLE masks (pycocotools' own RLE code); crowd as for boxes."""
    from pycocotools import mask as mask_utils

    if len(dt_rles) == 0 or len(gt_rles) == 0:
        return np.zeros((len(dt_rles), len(gt_rles)))
    flags = [0] * len(gt_rles) if crowd is None else [int(c) for c in crowd]
    return np.asarray(mask_utils.iou(list(dt_rles), list(gt_rles), flags), dtype=np.float64)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """COCO (x, y, w, h) ``[N, 4]`` to (x1, y1, x2, y2)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    b[:, 2:] += b[:, :2]
    return b
