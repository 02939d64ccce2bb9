"""Prediction: tiling that changes nothing for a pointwise model, value mapping, detection outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from engine_toys import PointwiseSegmenter, ToySegmenter
from PIL import Image
from torch import nn

from detseg.engine.predict import (
    class_to_value_table,
    predict_detection,
    predict_segmentation,
    segment_probabilities,
    tile_starts,
)


@pytest.mark.parametrize(
    "length,tile,overlap", [(100, 32, 0.25), (64, 32, 0.0), (33, 32, 0.5), (20, 32, 0.25)]
)
def test_tiles_cover_with_the_overlap_asked(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s : s + tile] = True
    assert covered.all() and starts[0] == 0
    assert min(starts[-1] + tile, length) == length
    steps = np.diff(starts)
    assert (steps <= tile * (1 - overlap)).all() and (steps > 0).all()


def test_tiling_equals_whole_image_for_a_pointwise_model():
    torch.manual_seed(0)
    model = PointwiseSegmenter(3).eval()
    image = torch.rand(3, 70, 45)
    whole = segment_probabilities(model, image)
    tiled = segment_probabilities(model, image, tile=16, overlap=0.3, batch_size=5)
    torch.testing.assert_close(tiled, whole)
    assert tiled.shape == (3, 70, 45)


def test_tiling_with_context_stays_close_inside():
    # A 3x3-conv model sees zero padding at tile borders; averaging overlapping tiles keeps it close.
    torch.manual_seed(0)
    model = ToySegmenter(2).eval()
    image = torch.rand(3, 48, 48)
    whole = segment_probabilities(model, image).argmax(0)
    tiled = segment_probabilities(model, image, tile=24, overlap=0.5).argmax(0)
    assert (whole == tiled).float().mean() > 0.95


def test_class_indices_map_back_to_data_values():
    meta = {"classes": ["membrane", "cell"], "values": {0: 0, 255: 1}}
    assert class_to_value_table(meta).tolist() == [0, 255]
    assert class_to_value_table({"classes": ["a", "b", "c"]}).tolist() == [0, 1, 2]
    # Several raw values for one class (e.g. 254 and 255 both cells): the smallest is written.
    assert class_to_value_table({"classes": ["a", "b"], "values": {0: 0, 255: 1, 128: 1}}).tolist() == [
        0,
        128,
    ]


def test_segmentation_files_keep_the_stem(tmp_path):
    Image.fromarray((np.random.default_rng(0).random((20, 30)) * 255).astype(np.uint8)).save(
        tmp_path / "slice_7.png"
    )
    model = PointwiseSegmenter(2, in_channels=1).eval()
    with torch.no_grad():  # class 1 wherever the pixel is brighter than 0.5
        model.head.weight.zero_()
        model.head.weight[1, 0] = 10.0
        model.head.bias.copy_(torch.tensor([0.0, -5.0]))
    meta = {"classes": ["membrane", "cell"], "values": {0: 0, 255: 1}, "channels": 1}
    out = tmp_path / "out"
    predict_segmentation(model, meta, [tmp_path / "slice_7.png"], out, tile=8)
    pred = np.asarray(Image.open(out / "slice_7.png"))
    src = np.asarray(Image.open(tmp_path / "slice_7.png"))
    np.testing.assert_array_equal(pred, np.where(src / 255.0 > 0.5, 255, 0))
    assert (out / "overlay" / "slice_7.png").is_file()


class FixedDetector(nn.Module):
    """Returns the same two detections for any image (torchvision's eval contract)."""

    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(1))

    def forward(self, images):
        return [
            {
                "boxes": torch.tensor([[2.0, 3.0, 12.0, 13.0], [5.0, 5.0, 9.0, 8.0]]),
                "labels": torch.tensor([1, 0]),
                "scores": torch.tensor([0.9, 0.1]),
            }
            for _ in images
        ]


def test_detection_outputs(tmp_path):
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(tmp_path / "raccoon-1.jpg")
    meta = {"task": "detect", "classes": ["cat", "raccoon"], "category_ids": [3, 7]}
    out = tmp_path / "out"
    summary = predict_detection(FixedDetector(), meta, [tmp_path / "raccoon-1.jpg"], out, score_threshold=0.5)
    assert summary == {"task": "detect", "images": 1, "detections": 2, "drawn": 1}
    results = json.loads((out / "results.json").read_text())
    assert results[0] == {"image_id": 1, "category_id": 7, "bbox": [2.0, 3.0, 10.0, 10.0], "score": 0.9}
    assert results[1]["category_id"] == 3  # all detections go to the json, for evaluation
    assert (out / "labels" / "raccoon-1.txt").read_text() == "raccoon 0.9 2 3 12 13\n"
    drawn = np.asarray(Image.open(out / "raccoon-1.png"))
    assert drawn.shape[1:] == (24 * 26, 3) and drawn.shape[0] > 20 * 26 and drawn.any()  # >= 512 px, legend
    images = json.loads((out / "images.json").read_text())
    assert images["images"][0]["file_name"] == "raccoon-1.jpg"
