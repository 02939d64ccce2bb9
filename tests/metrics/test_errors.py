"""Detection confusion matrix and error breakdown on a hand-worked scene."""

from __future__ import annotations

import numpy as np

from detseg.metrics.errors import detection_confusion, error_breakdown

# Two classes (a, b). Objects: a1, a2 (class a), b1 (class b), a crowd region (class a).
GT = {
    "images": [{"id": 1, "width": 200, "height": 200}, {"id": 2, "width": 200, "height": 200}],
    "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20], "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [100, 100, 20, 20], "iscrowd": 0},
        {"id": 3, "image_id": 1, "category_id": 2, "bbox": [50, 0, 20, 20], "iscrowd": 0},
        {"id": 4, "image_id": 2, "category_id": 1, "bbox": [0, 0, 100, 100], "iscrowd": 1},
    ],
}
RESULTS = [
    {"image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20], "score": 0.9},  # TP on a1
    {"image_id": 1, "category_id": 1, "bbox": [1, 0, 20, 20], "score": 0.8},  # duplicate of a1
    {"image_id": 1, "category_id": 1, "bbox": [50, 0, 20, 20], "score": 0.7},  # class confusion with b1
    {
        "image_id": 1,
        "category_id": 1,
        "bbox": [110, 110, 20, 20],
        "score": 0.6,
    },  # poorly placed on a2 (IoU .14)
    {"image_id": 1, "category_id": 2, "bbox": [150, 150, 20, 20], "score": 0.5},  # background
    {"image_id": 2, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},  # inside the crowd: dropped
    {"image_id": 1, "category_id": 2, "bbox": [0, 150, 20, 20], "score": 0.1},  # below the score threshold
]


def test_confusion_matrix_rows_truth_columns_prediction():
    cm = detection_confusion(GT, RESULTS, score_threshold=0.3, iou=0.5)
    assert cm.labels == ["a", "b", "background"]
    expected = np.array(
        [
            [1, 0, 1],  # a1 found; a2 missed
            [1, 0, 0],  # b1 detected as a
            [2, 1, 0],  # false alarms: the duplicate and the misplaced a, the background b
        ]
    )
    np.testing.assert_array_equal(cm.matrix, expected)


def test_error_breakdown_kinds():
    e = error_breakdown(GT, RESULTS, score_threshold=0.3, fg_iou=0.5, bg_iou=0.1)
    assert e == {
        "tp": 1,
        "duplicate": 1,
        "classification": 1,
        "localization": 1,
        "both": 0,
        "background": 1,
        "missed": 2,
    }
