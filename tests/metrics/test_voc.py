"""VOC evaluation: the published values of Padilla's toy example, the devkit's rules."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from detseg.cli import main
from detseg.metrics.voc import evaluate_voc

PUBLISHED = {(0.5, "voc07"): 88.64, (0.5, "voc12"): 89.58, (0.75, "voc07"): 49.24, (0.75, "voc12"): 50.97}


@pytest.mark.parametrize(("iou", "method"), list(PUBLISHED))
def test_voc_toy_published_values_through_the_cli(shared_data, tmp_path, iou, method, capsys):
    d = shared_data / "voc_toy"
    out = tmp_path / "m.json"
    # COCO json ground truth (boxes in the same pixel frame as the text detections) + text detections.
    rc = main(
        [
            "eval",
            "det",
            "--gt",
            str(d / "gts_coco_format" / "toy_example_coco.JSON"),
            "--dt",
            str(d / "dets_classname_abs_xyx2y2"),
            "--metric",
            method,
            "--iou",
            str(iou),
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    m = json.loads(out.read_text())
    assert round(m["mAP"] * 100, 2) == PUBLISHED[(iou, method)]
    assert set(m["per_class"]) == {"cat"}
    assert f"{PUBLISHED[(iou, method)]:.2f}%" in capsys.readouterr().out


@pytest.mark.parametrize(("iou", "method"), list(PUBLISHED))
def test_voc_toy_from_voc_xml(shared_data, tmp_path, iou, method):
    # Text detections against VOC XML are read in the XML's 1-based pixel frame; at 0.75 a one-pixel
    # frame mismatch would give 49.79 / 51.70 instead of the published values.
    d = shared_data / "voc_toy"
    out = tmp_path / "m.json"
    assert (
        main(
            [
                "eval",
                "det",
                "--gt",
                str(d / "gts_vocpascal_format"),
                "--dt",
                str(d / "dets_classname_abs_xyx2y2"),
                "--metric",
                method,
                "--iou",
                str(iou),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    assert round(json.loads(out.read_text())["mAP"] * 100, 2) == PUBLISHED[(iou, method)]


def _gt(boxes, difficult=None):
    anns = [
        {
            "id": i + 1,
            "image_id": 1,
            "category_id": 1,
            "bbox": b,
            "area": b[2] * b[3],
            "iscrowd": 0,
            "difficult": int(bool(difficult and difficult[i])),
        }
        for i, b in enumerate(boxes)
    ]
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "x"}, {"id": 2, "name": "y"}],
    }


def _dt(*rows):
    return [{"image_id": 1, "category_id": 1, "bbox": b, "score": s} for s, b in rows]


def test_devkit_rules_difficult_duplicates_and_strict_threshold():
    gt = _gt([[0, 0, 10, 10], [50, 50, 10, 10]], difficult=[False, True])
    # det on the difficult box: neither TP nor FP; a duplicate of the first box: FP.
    res = evaluate_voc(gt, _dt((0.9, [0, 0, 10, 10]), (0.8, [50, 50, 10, 10]), (0.7, [0, 0, 10, 10])))
    c = res.curves["x"]
    assert c.num_gt == 1 and list(c.precision) == [1.0, 0.5]
    assert res.per_class["x"] == 1.0 and res.mAP == 1.0  # class y has no ground truth: NaN, left out
    assert res.per_class["y"] != res.per_class["y"]
    # IoU exactly 0.5: FP for the devkit (>), TP for the lecture's rule (>=)
    half = _dt((0.9, [0, 0, 10, 20]))
    assert evaluate_voc(_gt([[0, 0, 10, 10]]), half, 0.5, "voc12").mAP == 0.0
    assert evaluate_voc(_gt([[0, 0, 10, 10]]), half, 0.5, "lecture").mAP == 1.0


def test_devkit_takes_the_best_box_even_when_taken():
    # The second detection's best box is already taken: FP, even though another box overlaps it enough.
    gt = _gt([[0, 0, 10, 10], [2, 0, 10, 10]])
    res = evaluate_voc(gt, _dt((0.9, [1, 0, 10, 10]), (0.8, [1, 0, 10, 10])), 0.5)
    assert list(res.curves["x"].precision) == [1.0, 0.5]


def _devkit_reference(gt, results, iou, plus_one):
    """The devkit's voc_eval loop, written plainly: per class, detections by score, best box per detection."""
    from detseg.metrics.boxes import box_iou

    out = {}
    for cat in gt["categories"]:
        c = cat["id"]
        objs = {}
        for a in gt["annotations"]:
            if a["category_id"] == c:
                b = a["bbox"]
                objs.setdefault(a["image_id"], []).append(
                    ([b[0], b[1], b[0] + b[2], b[1] + b[3]], a["difficult"] or a["iscrowd"])
                )
        taken = {img: [False] * len(v) for img, v in objs.items()}
        dets = [r for r in results if r["category_id"] == c]
        dets = [dets[i] for i in np.argsort([-r["score"] for r in dets], kind="stable")]
        tp, ign = [], []
        for r in dets:
            b = r["bbox"]
            boxes = objs.get(r["image_id"], [])
            ov = box_iou([[b[0], b[1], b[0] + b[2], b[1] + b[3]]], [o[0] for o in boxes], plus_one=plus_one)[
                0
            ]
            t = i = False
            if len(ov) and ov.max() > iou:
                k = int(np.argmax(ov))
                if boxes[k][1]:
                    i = True
                elif not taken[r["image_id"]][k]:
                    t = taken[r["image_id"]][k] = True
            tp.append(t)
            ign.append(i)
        n = sum(
            1 for a in gt["annotations"] if a["category_id"] == c and not (a["difficult"] or a["iscrowd"])
        )
        out[c] = (np.array(tp, bool), np.array(ign, bool), n)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_compiled_matching_equals_the_plain_devkit_loop(seed):
    from detseg.metrics.voc import match_detections

    sys.path.insert(0, str(Path(__file__).parent))
    from cocoref import random_workload

    gt, results = random_workload(seed, 8, 3, max_dets=60)
    rng = np.random.default_rng(seed)
    for a in gt["annotations"]:
        a["difficult"] = int(rng.random() < 0.15)
    for plus_one in (False, True):
        mine = match_detections(gt, results, 0.5, plus_one)
        ref = _devkit_reference(gt, results, 0.5, plus_one)
        for c, (_, tp, ign, n) in mine.items():
            assert np.array_equal(tp, ref[c][0]) and np.array_equal(ign, ref[c][1]) and n == ref[c][2]
