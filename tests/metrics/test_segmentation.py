"""Segmentation metrics against torchmetrics, hand-worked values and the NaN rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassJaccardIndex

from detseg.metrics.segmentation import SegmentationMetrics, segmentation_scores


def _masks(seed, c=5, shape=(3, 24, 32), ignore=255):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, c, shape, generator=g)
    pred = torch.where(torch.rand(shape, generator=g) < 0.6, target, torch.randint(0, c, shape, generator=g))
    target[torch.rand(shape, generator=g) < 0.1] = ignore
    return pred, target


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_torchmetrics_with_ignore_pixels(seed):
    c = 5
    pred, target = _masks(seed, c)
    m = SegmentationMetrics(c, ignore_index=255)
    for b in range(pred.shape[0]):  # streaming: one image at a time
        m.update(pred[b], target[b].numpy())
    out = m.compute()
    kw = {"num_classes": c, "ignore_index": 255}
    assert out["miou"] == pytest.approx(
        MulticlassJaccardIndex(average="macro", **kw)(pred, target).item(), abs=1e-6
    )
    np.testing.assert_allclose(
        out["iou"], MulticlassJaccardIndex(average=None, **kw)(pred, target).numpy(), atol=1e-6
    )
    np.testing.assert_allclose(
        out["dice"], MulticlassF1Score(average=None, **kw)(pred, target).numpy(), atol=1e-6
    )
    assert out["pixel_accuracy"] == pytest.approx(
        MulticlassAccuracy(average="micro", **kw)(pred, target).item(), abs=1e-6
    )
    assert out["mean_accuracy"] == pytest.approx(
        MulticlassAccuracy(average="macro", **kw)(pred, target).item(), abs=1e-6
    )
    assert m.confusion.dtype == np.int64 and m.confusion.sum() == int((target != 255).sum())


def test_absent_class_is_nan_and_left_out_of_the_mean():
    # class 2 appears nowhere; torchmetrics' macro mean also leaves it out (its per-class value is 0).
    pred = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 3]])
    target = torch.tensor([[0, 0, 1, 1], [1, 1, 3, 3]])
    m = SegmentationMetrics(4, ignore_index=None)
    m.update(pred, target)
    out = m.compute()
    assert np.isnan(out["iou"][2]) and np.isnan(out["dice"][2]) and np.isnan(out["accuracy"][2])
    assert out["miou"] == pytest.approx(np.mean([2 / 3, 3 / 5, 1 / 2]))
    tm = MulticlassJaccardIndex(num_classes=4, average="macro")(pred, target).item()
    assert out["miou"] == pytest.approx(tm, abs=1e-6)


def test_hand_worked_confusion():
    conf = np.array([[3, 1], [0, 4]])  # truth 0: 3 right, 1 as class 1; truth 1: 4 right
    s = segmentation_scores(conf)
    assert s["iou"] == pytest.approx([3 / 4, 4 / 5])
    assert s["dice"] == pytest.approx([6 / 7, 8 / 9])
    assert s["pixel_accuracy"] == pytest.approx(7 / 8)
    assert s["mean_accuracy"] == pytest.approx((3 / 4 + 1) / 2)
    assert s["fwiou"] == pytest.approx(0.5 * 3 / 4 + 0.5 * 4 / 5)
    assert s["confusion"] == [[3, 1], [0, 4]]


def test_reset_and_bad_input():
    m = SegmentationMetrics(3)
    m.update(np.zeros((2, 2), np.int64), np.zeros((2, 2), np.int64))
    m.reset()
    assert m.confusion.sum() == 0
    with pytest.raises(ValueError, match="outside"):
        m.update(np.full((2, 2), 3), np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="shape"):
        m.update(np.zeros((2, 3), np.int64), np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="integer"):
        m.update(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.int64))
    assert np.isnan(m.compute()["miou"])
