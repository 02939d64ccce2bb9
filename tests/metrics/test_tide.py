"""TIDE error analysis: one error kind planted at a time, dAP worked out by hand; base AP = COCO AP50."""

from __future__ import annotations

import numpy as np
import pytest

from detseg.metrics.coco import evaluate
from detseg.metrics.tide import TIDE_ERRORS, tide

# Two classes; image 1 holds a1, a2 (class a) and b1 (class b), 20 x 20 boxes far apart.
A1, A2, B1 = [0, 0, 20, 20], [100, 100, 20, 20], [50, 0, 20, 20]
GT = {
    "images": [{"id": 1, "width": 200, "height": 200}, {"id": 2, "width": 200, "height": 200}],
    "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": A1, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": A2, "iscrowd": 0},
        {"id": 3, "image_id": 1, "category_id": 2, "bbox": B1, "iscrowd": 0},
    ],
}


def det(cat, box, score, image=1):
    return {"image_id": image, "category_id": cat, "bbox": list(box), "score": score}


PERFECT = [det(1, A1, 0.9), det(1, A2, 0.8), det(2, B1, 0.7)]


def only(result, kind, count=1):
    """Exactly ``count`` errors of ``kind`` and none of any other kind."""
    assert result.counts == {k: (count if k == kind else 0) for k in TIDE_ERRORS}


def test_perfect_detections_have_no_errors():
    r = tide(GT, PERFECT)
    assert r.ap == 1.0
    only(r, None, 0)
    assert all(v == 0 for v in r.dap.values())


def test_background_error_planted_above_the_true_positives():
    # A false alarm of class a far from everything, scored highest: class a's PR goes FP, TP, TP:
    # precision 0, 1/2, 2/3 at recall 0, 1/2, 1 -> envelope 2/3 everywhere -> AP_a = 2/3.
    r = tide(GT, [det(1, [150, 0, 20, 20], 0.95), *PERFECT])
    only(r, "background")
    assert r.per_class_ap["a"] == pytest.approx(2 / 3)
    assert r.ap == pytest.approx((2 / 3 + 1) / 2)
    assert r.dap_per_class["a"]["background"] == pytest.approx(1 / 3)
    assert r.dap_per_class["b"]["background"] == 0
    assert r.dap["background"] == pytest.approx(1 / 6)
    assert all(r.dap[k] == 0 for k in TIDE_ERRORS if k != "background")
    assert r.dap["false_positives"] == pytest.approx(1 / 6)
    assert r.det_kind[0] == "background" and r.det_target[0] == -1


def test_localization_error_is_fixed_into_a_true_positive():
    # a2 found only by a box shifted by 10 px (IoU 200 / 600 = 1/3): class a PR TP, FP; recall stops at
    # 1/2 -> 51 of the 101 recall points at precision 1; fixed, the detection finds a2 -> AP 1. Not
    # missed: fixing the box finds it.
    shifted = [110, 100, 20, 20]
    r = tide(GT, [det(1, A1, 0.9), det(1, shifted, 0.8), det(2, B1, 0.7)])
    only(r, "localization")
    assert r.per_class_ap["a"] == pytest.approx(51 / 101)
    assert r.dap_per_class["a"]["localization"] == pytest.approx(50 / 101)
    assert r.dap["localization"] == pytest.approx(25 / 101)
    assert r.dap["missed"] == 0
    assert r.gt_kind[1] == "fixable" and r.det_target[1] == 1
    assert r.dap["false_negatives"] == pytest.approx(25 / 101)  # a2 untaken; without it class a is perfect


def test_classification_error_moves_ap_to_the_objects_class():
    # b1 detected as class a (same box): class a gets a false positive at 0.95 (AP 2/3) and class b finds
    # nothing (AP 0). Fixed: the detection is b's true positive -> both classes perfect.
    r = tide(GT, [det(1, B1, 0.95), det(1, A1, 0.9), det(1, A2, 0.8)])
    only(r, "classification")
    assert r.per_class_ap == pytest.approx({"a": 2 / 3, "b": 0.0})
    assert r.dap_per_class["a"]["classification"] == pytest.approx(1 / 3)
    assert r.dap_per_class["b"]["classification"] == pytest.approx(1.0)
    assert r.dap["classification"] == pytest.approx(1 - (2 / 3) / 2)
    assert r.counts_per_class["a"]["classification"] == 1


def test_duplicate_error():
    # A second box on a1, scored between the two true positives: PR TP, FP, TP -> P 1, 1/2, 2/3 at
    # R 1/2, 1/2, 1 -> envelope 1 up to recall 1/2, 2/3 above: AP = (51 + 50 * 2/3) / 101.
    r = tide(GT, [det(1, A1, 0.9), det(1, [1, 0, 20, 20], 0.85), det(1, A2, 0.8), det(2, B1, 0.7)])
    only(r, "duplicate")
    ap_a = (51 + 50 * 2 / 3) / 101
    assert r.per_class_ap["a"] == pytest.approx(ap_a)
    assert r.dap["duplicate"] == pytest.approx((1 - ap_a) / 2)
    assert r.det_target[1] == 0  # it points at a1, already taken


def test_both_error():
    # Class b's box shifted onto a2 by 10 px: other class, IoU 1/3 -> neither well placed nor right.
    r = tide(GT, [*PERFECT, det(2, [110, 100, 20, 20], 0.95)])
    only(r, "both")
    # class b: FP then TP -> AP 1/2 ... recall 1 at precision 1/2: envelope 1/2 everywhere.
    assert r.per_class_ap["b"] == pytest.approx(0.5)
    assert r.dap["both"] == pytest.approx(0.25)
    assert r.dap["localization"] == 0 and r.dap["classification"] == 0


def test_missed_object():
    # a2 not detected at all: class a recall stops at 1/2 -> AP 51 / 101; fixed (a2 out of the ground
    # truth) -> AP 1.
    r = tide(GT, [det(1, A1, 0.9), det(2, B1, 0.7)])
    only(r, "missed")
    assert r.per_class_ap["a"] == pytest.approx(51 / 101)
    assert r.dap["missed"] == pytest.approx((1 - 51 / 101) / 2)
    assert r.gt_kind == ["tp", "missed", "tp"]
    assert r.dap["false_negatives"] == pytest.approx(r.dap["missed"])


def test_only_the_highest_scored_error_on_an_object_is_fixed():
    # Two badly placed boxes on a2: fixing localization turns the 0.8 one into a2's match, removes the
    # 0.6 one; class a becomes perfect.
    r = tide(
        GT,
        [det(1, A1, 0.9), det(1, [110, 100, 20, 20], 0.8), det(1, [90, 100, 20, 20], 0.6), det(2, B1, 0.7)],
    )
    only(r, "localization", 2)
    assert r.dap_per_class["a"]["localization"] == pytest.approx(1 - r.per_class_ap["a"])


def test_crowd_and_difficult_objects_are_ignored():
    gt = {
        **GT,
        "annotations": [
            *GT["annotations"],
            {"id": 4, "image_id": 2, "category_id": 1, "bbox": [0, 0, 100, 100], "iscrowd": 1},
            {
                "id": 5,
                "image_id": 2,
                "category_id": 2,
                "bbox": [150, 150, 20, 20],
                "iscrowd": 0,
                "difficult": 1,
            },
        ],
    }
    r = tide(
        gt, [*PERFECT, det(1, [10, 10, 20, 20], 0.99, image=2), det(2, [150, 150, 20, 20], 0.99, image=2)]
    )
    assert r.det_kind[3:] == ["ignored", "ignored"]
    assert r.gt_kind[3:] == ["ignored", "ignored"]
    only(r, None, 0)
    assert r.ap == 1.0


def test_plus_one_changes_the_overlap_of_small_boxes():
    # Detection [0, 0, 2, 2] (x, y, w, h) on object [1, 1, 2, 2]: continuous IoU 1/7 (localization);
    # whole pixels 3x3 boxes overlapping 2x2: IoU 4/14 (still localization); with fg 0.25, only the
    # whole-pixel reading makes it a match.
    gt = {**GT, "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]}]}
    dets = [det(1, [0, 0, 2, 2], 0.9)]
    assert tide(gt, dets, fg_iou=0.25).det_kind == ["localization"]
    assert tide(gt, dets, fg_iou=0.25, plus_one=True).det_kind == ["tp"]


def test_base_ap_equals_coco_ap_at_the_same_iou():
    rng = np.random.default_rng(0)
    images = [{"id": i, "width": 100, "height": 100} for i in range(1, 9)]
    anns, dets = [], []
    for im in images:
        for _ in range(rng.integers(0, 5)):
            x, y = rng.uniform(0, 70, 2)
            w, h = rng.uniform(5, 30, 2)
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": int(rng.integers(1, 4)),
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})  # fmt: skip
            for _ in range(rng.integers(0, 3)):  # jittered copies, sometimes relabelled
                jit = rng.normal(0, 4, 4)
                cat = anns[-1]["category_id"] if rng.random() < 0.7 else int(rng.integers(1, 4))
                box = [x + jit[0], y + jit[1], max(w + jit[2], 1), max(h + jit[3], 1)]
                dets.append(det(cat, box, float(rng.random()), im["id"]))
        for _ in range(rng.integers(0, 3)):
            dets.append(
                det(int(rng.integers(1, 4)), [*rng.uniform(0, 80, 2), 15, 15], float(rng.random()), im["id"])
            )
    gt = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)],
    }
    r = tide(gt, dets)
    ref = evaluate(gt, dets, iou_thresholds=[0.5])
    for name, row in ref.per_category.items():
        assert r.per_class_ap[name] == pytest.approx(row["AP"], abs=1e-12)
    assert r.ap == pytest.approx(ref.stats["AP"], abs=1e-12)
    # Every false positive has one kind, every object is taken, fixable or missed.
    fp = sum(r.counts[k] for k in TIDE_ERRORS[:-1])
    assert fp + r.det_kind.count("tp") == len(dets)
    assert r.det_kind.count("tp") + r.gt_kind.count("fixable") + r.counts["missed"] == len(anns)
    # Fixing every false positive / negative is worth at least each kind of them.
    assert r.dap["false_positives"] >= max(r.dap[k] for k in ("duplicate", "background", "both")) - 1e-12
    assert all(v >= -1e-12 for v in r.dap.values())


def test_recall_grids_of_pycocotools_and_of_the_tide_toolbox():
    # 20 objects, 7 found (recall 7/20 = 0.35), then a false alarm. pycocotools' recall point 35 is
    # np.linspace(0, 1, 101)[35] = 0.35000000000000003 > 0.35: never reached, precision 0 there; the
    # TIDE toolbox's point 35 / 100 = 0.35 is reached, precision 1.
    boxes = [[30 * (i % 5), 30 * (i // 5), 20, 20] for i in range(20)]
    gt = {
        "images": [{"id": 1, "width": 200, "height": 200}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {"id": i + 1, "image_id": 1, "category_id": 1, "bbox": b, "area": 400.0, "iscrowd": 0}
            for i, b in enumerate(boxes)
        ],
    }
    dets = [det(1, boxes[i], 0.9 - 0.01 * i) for i in range(7)] + [det(1, [170, 170, 20, 20], 0.5)]
    assert tide(gt, dets).ap == pytest.approx(35 / 101, abs=1e-12)
    assert evaluate(gt, dets, iou_thresholds=[0.5]).stats["AP"] == pytest.approx(35 / 101, abs=1e-12)
    assert tide(gt, dets, recall_grid="tide").ap == pytest.approx(36 / 101, abs=1e-12)
