"""IoU: against torchvision and pycocotools (bit for bit), crowds and the VOC '+1' convention."""

from __future__ import annotations

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torchvision.ops import box_iou as tv_box_iou

from detseg.metrics.boxes import box_iou, box_iou_xywh, mask_iou, xywh_to_xyxy


def _boxes(rng, n):
    xy = rng.uniform(0, 80, (n, 2))
    return np.round(np.c_[xy, rng.uniform(0, 40, (n, 2))], 2)  # xywh, some zero-ish sizes


def test_box_iou_matches_torchvision():
    rng = np.random.default_rng(0)
    a, b = xywh_to_xyxy(_boxes(rng, 30)), xywh_to_xyxy(_boxes(rng, 20))
    ref = tv_box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(box_iou(a, b), np.nan_to_num(ref), atol=1e-12)


def test_xywh_iou_is_pycocotools_bit_for_bit_with_crowds():
    rng = np.random.default_rng(1)
    d, g = _boxes(rng, 40), _boxes(rng, 25)
    crowd = rng.random(25) < 0.3
    ref = np.asarray(mask_utils.iou(d.tolist(), g.tolist(), crowd.astype(int).tolist()))
    assert np.array_equal(box_iou_xywh(d, g, crowd), ref)
    # crowd: intersection over the detection's area
    inside = box_iou_xywh([[2, 2, 4, 4]], [[0, 0, 10, 10]], crowd=[True])
    assert inside[0, 0] == 1.0


def test_plus_one_convention():
    # VOC pixels 1..10 inclusive are 10 wide: with +1 two such boxes overlapping on 5 columns give 5/15.
    a, b = np.array([[1, 1, 10, 10]]), np.array([[6, 1, 15, 10]])
    assert box_iou(a, b, plus_one=True)[0, 0] == 50 / 150
    assert box_iou(a, b)[0, 0] == 36 / 126


def test_mask_iou_on_rle():
    m1 = np.zeros((20, 20), np.uint8)
    m1[:10, :10] = 1
    m2 = np.zeros((20, 20), np.uint8)
    m2[5:15, :10] = 1
    r = mask_utils.encode(np.asfortranarray(np.stack([m1, m2], -1)))
    assert mask_iou(r[:1], r[1:])[0, 0] == 50 / 150
    assert mask_iou(r[1:], r[:1], crowd=[1])[0, 0] == 0.5
