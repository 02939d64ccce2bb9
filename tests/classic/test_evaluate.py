"""Scoring pipelines on a data set: label maps fitted on train, applied to val (synthetic data)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from detseg.classic import Pipeline
from detseg.classic.evaluate import fit_label_map, score_pipeline

# grey level of each class: class 0 mid-grey, class 1 bright, class 2 dark
GREY = {0: 120, 1: 220, 2: 30}


def _write_split(folder, stems, rng):
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for stem in stems:
        truth = np.zeros((24, 32), np.uint8)
        truth[:, 10:20] = 1
        truth[rng.integers(0, 12) :, 20:] = 2
        truth[0, 0] = 255  # one void pixel
        image = np.vectorize(lambda c: GREY.get(int(c), 120))(truth).astype(np.uint8)
        cv2.imwrite(str(folder / "images" / f"{stem}.png"), image)
        cv2.imwrite(str(folder / "masks" / f"{stem}.png"), truth)


@pytest.fixture
def spec(tmp_path):
    rng = np.random.default_rng(0)
    _write_split(tmp_path, ["a", "b", "c", "d"], rng)
    path = tmp_path / "toy.yaml"
    path.write_text(
        "task: segment\nformat: masks\nroot: .\nclasses: [mid, bright, dark]\nignore_index: 255\n"
        "train: {images: images, masks: masks, list: [a, b]}\n"
        "val: {images: images, masks: masks, list: [c, d]}\n"
    )
    return path


def test_majority_map_learned_on_train_is_perfect_on_val(spec):
    scores = score_pipeline(Pipeline.from_string("multiotsu classes=3"), spec)
    # multi-Otsu labels dark=0, mid=1, bright=2; the majority map sends them to classes 2, 0, 1
    assert scores["label_map"] == "label -> class: 0->2, 1->0, 2->1"
    assert scores["miou"] == 1.0 and scores["num_images"] == 2 and scores["fit_split"] == "train"
    identity = score_pipeline(Pipeline.from_string("multiotsu classes=3"), spec, mapping="identity")
    assert identity["miou"] < 0.5 and identity["fit_split"] is None


def test_binary_masks_need_two_classes_and_identity_needs_class_indices(spec):
    with pytest.raises(ValueError, match="two-class spec"):
        score_pipeline(Pipeline.from_string("otsu"), spec)
    region = Pipeline.from_string("region seeds=[[1,1],[1,12],[23,25]] tolerance=0")  # labels 0..3
    with pytest.raises(ValueError, match=r"c.png: label 3 is not a class index \(3 classes\)"):
        score_pipeline(region, spec, mapping="identity")
    with pytest.raises(ValueError, match="no classes"):
        score_pipeline(Pipeline.from_string("sobel"), spec)


def test_fit_label_map_rules():
    counts = np.array([[5, 1], [2, 9]])  # label 0 mostly class 0, label 1 mostly class 1
    assert fit_label_map(counts, "mask")[0].tolist() == [0, 1]
    assert fit_label_map(counts[::-1], "mask")[0].tolist() == [1, 0]  # inverted polarity wins
    assert fit_label_map(counts, "mask", polarity="invert")[0].tolist() == [1, 0]
    unseen = np.array([[0, 0, 0], [1, 7, 2]])
    assert fit_label_map(unseen, "labels")[0].tolist() == [1, 1]  # an unseen label -> most frequent
