"""PR curves and AP definitions: the lecture's worked example and hand-worked values."""

from __future__ import annotations

import numpy as np
import pytest

from detseg.metrics.detection import average_precision, pool_curves, pr_curve

# LECTURE.md section 3: 3 objects, detections A..F by score, correct = yes/yes/no/yes/no/no.
SCORES = np.array([0.95, 0.85, 0.70, 0.50, 0.30, 0.20])
CORRECT = np.array([1, 1, 0, 1, 0, 0], bool)


def test_lecture_table_precision_and_recall():
    c = pr_curve(SCORES[::-1], CORRECT[::-1], num_gt=3)  # any input order: sorted by score
    np.testing.assert_allclose(c.precision, [1, 1, 2 / 3, 3 / 4, 3 / 5, 1 / 2])
    np.testing.assert_allclose(c.recall, [1 / 3, 2 / 3, 2 / 3, 1, 1, 1])


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("lecture", 1 / 3 + 1 / 3 + 0.75 / 3),  # 0.91667, the lecture's value
        ("voc12", 1 / 3 + 1 / 3 + 0.75 / 3),  # the envelope changes nothing here
        ("voc07", (7 * 1 + 4 * 0.75) / 11),  # recall >= 0..0.6 -> 1; >= 0.7..1.0 -> 0.75
        ("coco101", (34 + 33 + 34 * 0.75) / 101),  # points 0..0.33 -> 1, 0.34..0.66 -> 1, 0.67..1 -> 0.75
    ],
)
def test_lecture_example_ap_by_method(method, expected):
    c = pr_curve(SCORES, CORRECT, num_gt=3)
    assert c.average_precision(method) == pytest.approx(expected, abs=1e-12)


def test_lecture_value_rounded():
    c = pr_curve(SCORES, CORRECT, num_gt=3)
    assert round(c.average_precision("lecture"), 5) == 0.91667


def test_interpolation_matters_when_precision_rises():
    # TP, FP, TP with 2 objects: P = 1, 1/2, 2/3; R = 1/2, 1/2, 1.
    r, p = np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])
    assert average_precision(r, p, "lecture") == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert average_precision(r, p, "voc12") == pytest.approx(0.5 + 0.5 * 2 / 3)
    # 11-point: t = 0..0.5 -> 1 (6 points), t = 0.6..1.0 -> 2/3 (5 points)
    assert average_precision(r, p, "voc07") == pytest.approx((6 + 5 * 2 / 3) / 11)
    # missed objects: recall stops at 0.5; voc12 integrates to 0.5 only
    assert average_precision(np.array([0.5]), np.array([1.0]), "voc12") == pytest.approx(0.5)
    assert average_precision(np.array([0.5]), np.array([1.0]), "coco101") == pytest.approx(51 / 101)


def test_best_f1_threshold_and_ties():
    c = pr_curve(SCORES, CORRECT, num_gt=3)
    thr, f1, p, r = c.best_f1()
    # F1 per prefix: 0.5, 0.8, 0.667, 0.857, 0.75, 0.667 -> keep scores >= 0.50
    assert (thr, p, r) == (0.5, 0.75, 1.0) and f1 == pytest.approx(6 / 7)
    assert c.at_threshold(0.5) == pytest.approx((0.75, 1.0, 6 / 7))
    # equal scores cannot be split by a threshold: the best is taken at the end of the tie
    tied = pr_curve(np.array([0.9, 0.9, 0.1]), np.array([1, 0, 1], bool), num_gt=2)
    assert tied.best_f1()[0] == 0.1


def test_ignored_detections_are_neither_tp_nor_fp_and_pooling():
    c = pr_curve(SCORES, CORRECT, 3, ignore=np.array([0, 0, 1, 0, 0, 0], bool))
    np.testing.assert_allclose(c.precision, [1, 1, 1, 3 / 4, 3 / 5])
    np.testing.assert_allclose(c.recall, [1 / 3, 2 / 3, 1, 1, 1])
    pooled = pool_curves(
        {"a": pr_curve(SCORES, CORRECT, 3), "b": pr_curve(np.array([0.6]), np.array([True]), 2)}
    )
    assert pooled.num_gt == 5 and pooled.recall[-1] == pytest.approx(4 / 5)


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="method"):
        average_precision(np.array([1.0]), np.array([1.0]), "voc2099")
