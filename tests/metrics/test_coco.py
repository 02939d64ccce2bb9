"""COCO evaluation: the 12 stats (and the full precision/recall arrays) equal pycocotools' exactly."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from detseg.data.errors import DataError
from detseg.metrics.coco import STAT_NAMES, evaluate

sys.path.insert(0, str(Path(__file__).parent))
from cocoref import pycocotools_eval, random_workload  # noqa: E402

PUBLISHED_SEGM = [
    0.6947194719471946,
    0.6947194719471946,
    0.6947194719471946,
    -1.0,
    0.7367986798679867,
    0.0,
    0.6666666666666666,
    0.75,
    0.75,
    -1.0,
    0.7916666666666666,
    0.0,
]


def _fixture(shared_data):
    d = shared_data / "coco_eval" / "faster_coco_eval_mini"
    return json.loads((d / "gt_dataset.json").read_text()), json.loads((d / "dt_dataset.json").read_text())


def _same(mine, ref):
    assert np.abs(np.array(mine.stats_list) - ref.stats).max() <= 1e-12
    assert mine.precision.shape == ref.eval["precision"].shape
    assert np.abs(mine.precision - ref.eval["precision"]).max() <= 1e-12
    assert np.abs(mine.recall - ref.eval["recall"]).max() <= 1e-12


def test_fixture_bbox_matches_pycocotools(shared_data):
    gt, dt = _fixture(shared_data)
    mine = evaluate(gt, dt, "bbox")
    _same(mine, pycocotools_eval(gt, dt, "bbox"))
    assert mine.stats["APm"] == pytest.approx(0.7920792079207921, abs=1e-12)  # PROVENANCE.md's bbox value


def test_fixture_segm_matches_published_values(shared_data):
    gt, dt = _fixture(shared_data)
    images = {im["id"]: im for im in gt["images"]}
    results = []
    for d in dt:  # PROVENANCE.md: each detection polygon merged into one RLE, the bbox dropped
        im = images[d["image_id"]]
        rle = mask_utils.merge(mask_utils.frPyObjects(d["segmentation"], im["height"], im["width"]))
        rle["counts"] = rle["counts"].decode()
        results.append(
            {
                "image_id": d["image_id"],
                "category_id": d["category_id"],
                "score": d["score"],
                "segmentation": rle,
            }
        )
    mine = evaluate(gt, results, "segm")
    assert np.abs(np.array(mine.stats_list) - PUBLISHED_SEGM).max() <= 1e-12
    _same(mine, pycocotools_eval(gt, results, "segm"))
    assert list(mine.stats) == list(STAT_NAMES)
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.695" in mine.summary()


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    seed=st.integers(0, 10**6),
    n_images=st.integers(1, 8),
    n_cats=st.integers(1, 4),
    max_dets=st.sampled_from([0, 5, 40, 250]),
)
def test_random_bbox_workloads_match_pycocotools(seed, n_images, n_cats, max_dets):
    gt, results = random_workload(seed, n_images, n_cats, segm=False, max_dets=max_dets)
    if not results:  # pycocotools' loadRes cannot take an empty list
        return
    _same(evaluate(gt, results, "bbox"), pycocotools_eval(gt, results, "bbox"))


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    seed=st.integers(0, 10**6),
    n_images=st.integers(1, 5),
    n_cats=st.integers(1, 3),
    max_dets=st.sampled_from([3, 30, 120]),
)
def test_random_segm_workloads_match_pycocotools(seed, n_images, n_cats, max_dets):
    gt, results = random_workload(seed, n_images, n_cats, segm=True, max_dets=max_dets)
    if not results:
        return
    _same(evaluate(gt, results, "segm"), pycocotools_eval(gt, results, "segm"))


def test_custom_parameters_match_pycocotools():
    gt, results = random_workload(7, 6, 3, max_dets=60)
    thr = [0.3, 0.5, 0.75, 0.9]
    ranges = {"all": (0, 1e10), "small": (0, 20**2), "medium": (20**2, 80**2), "large": (80**2, 1e10)}
    ref = pycocotools_eval(
        gt,
        results,
        "bbox",
        {"iouThrs": np.array(thr), "maxDets": [2, 20, 100], "areaRng": [list(v) for v in ranges.values()]},
    )
    _same(evaluate(gt, results, iou_thresholds=thr, max_dets=[2, 20, 100], area_ranges=ranges), ref)


def test_bug_flags_change_only_what_they_fix():
    gt = {
        "images": [{"id": 1, "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {"id": 0, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0}
        ],
    }
    results = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}]
    # pycocotools: the perfect detection of annotation id 0 counts as a false positive.
    default = evaluate(gt, results)
    assert default.stats["AP"] == pycocotools_eval(gt, results).stats[0] == 0.0
    assert evaluate(gt, results, fix_gt_id_zero=True).stats["AP"] == pytest.approx(1.0)
    # stat 0 reads maxDets=100, which custom maxDets [1, 5, 10] do not have: -1, unless fixed.
    ref = pycocotools_eval(gt, results, params={"maxDets": [1, 5, 10]})
    assert evaluate(gt, results, max_dets=[1, 5, 10]).stats["AP"] == ref.stats[0] == -1
    assert evaluate(gt, results, max_dets=[1, 5, 10], fix_stat0_maxdets=True, fix_gt_id_zero=True).stats[
        "AP"
    ] == pytest.approx(1.0)


def test_per_category_and_curves(shared_data):
    gt, dt = _fixture(shared_data)
    res = evaluate(gt, dt)
    ref = pycocotools_eval(gt, dt)
    for k, name in enumerate(res.category_names):
        p = ref.eval["precision"][:, :, k, 0, -1]
        expected = float(np.mean(p[p > -1])) if (p > -1).any() else -1.0
        assert res.per_category[name]["AP"] == pytest.approx(expected, abs=1e-12)
    curves = res.pr_curves(0.5)
    assert set(curves) == set(res.category_names)
    # coco101 AP of the curve at IoU 0.5 is pycocotools' per-category AP50
    for name in res.category_names:
        if res.per_category[name]["AP50"] >= 0:
            assert curves[name].average_precision("coco101") == pytest.approx(
                res.per_category[name]["AP50"], abs=1e-12
            )


# ---------------------------------------------------------------------------------------------- bad input

GT = {
    "images": [{"id": 1, "width": 50, "height": 50}],
    "categories": [{"id": 3, "name": "a"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 1, 10, 10], "area": 100, "iscrowd": 0}
    ],
}


@pytest.mark.parametrize(
    ("result", "words"),
    [
        (
            {"image_id": 9, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.5},
            ["image_id", "9", "result 1"],
        ),
        (
            {"image_id": 1, "category_id": 4, "bbox": [0, 0, 1, 1], "score": 0.5},
            ["category_id", "4", "result 1"],
        ),
        (
            {"image_id": 1, "category_id": 3, "bbox": [0, 0, -1, 1], "score": 0.5},
            ["negative width", "result 1"],
        ),
        (
            {"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1], "score": float("nan")},
            ["score", "nan", "result 1"],
        ),
        ({"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1]}, ["missing field 'score'", "result 1"]),
    ],
)
def test_bad_results_name_field_and_entry(result, words):
    good = {"image_id": 1, "category_id": 3, "bbox": [1, 1, 10, 10], "score": 0.9}
    with pytest.raises(DataError) as err:
        evaluate(GT, [good, result])
    for w in words:
        assert w in str(err.value)


def test_ground_truth_without_area_and_iscrowd_is_completed_with_one_warning():
    gt = json.loads(json.dumps(GT))
    gt["annotations"].append({"id": 2, "image_id": 1, "category_id": 3, "bbox": [20, 20, 40, 5]})
    del gt["annotations"][0]["iscrowd"]
    results = [{"image_id": 1, "category_id": 3, "bbox": [20, 20, 40, 5], "score": 0.9}]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = evaluate(gt, results)
    assert len(caught) == 1 and "iscrowd" in str(caught[0].message) and "area" in str(caught[0].message)
    full = json.loads(json.dumps(gt))
    full["annotations"][0]["iscrowd"] = 0
    full["annotations"][1].update(area=200.0, iscrowd=0)
    assert res.stats_list == pytest.approx(list(pycocotools_eval(full, results).stats), abs=1e-12)


def test_duplicate_ground_truth_ids_are_refused():
    gt = json.loads(json.dumps(GT))
    gt["annotations"].append(dict(gt["annotations"][0]))
    with pytest.raises(DataError, match="duplicate annotation id"):
        evaluate(gt, [])


def test_empty_results_give_zero_ap():
    res = evaluate(GT, [])
    assert res.stats["AP"] == 0.0 and res.stats["AR100"] == 0.0


def test_fixture_segm_with_box_and_polygon_results_matches_pycocotools(shared_data):
    # Results carrying both bbox and polygons: pycocotools' loadRes takes the bbox branch (area = w * h)
    # and converts the polygons for segm IoU; detseg does the same.
    gt, dt = _fixture(shared_data)
    _same(evaluate(gt, dt, "segm"), pycocotools_eval(gt, dt, "segm"))
