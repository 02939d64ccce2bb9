"""``detseg classic``: image mode writes files, --data scores a split, bad input is one clear line."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from skimage.filters import threshold_otsu

from detseg.cli import main


def _spec(tmp_path, shared_data, values="{0: 0, 255: 1}", classes="[membrane, cell]"):
    path = tmp_path / "membrane.yaml"
    root = shared_data / "membrane"
    path.write_text(
        f"task: segment\nformat: masks\nroot: {root}\nclasses: {classes}\nvalues: {values}\n"
        "train: {images: train/image, masks: train/label, list: ['0', '1']}\n"
        "val: {images: train/image, masks: train/label, list: ['18', '19']}\n"
    )
    return path


def _reference_iou(shared_data, stems, foreground_class):
    """IoU per class of 'grey > skimage Otsu' as class ``foreground_class``, counted by hand."""
    inter, union = np.zeros(2), np.zeros(2)
    for stem in stems:
        folder = shared_data / "membrane" / "train"
        gray = cv2.imread(str(folder / "image" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
        label = cv2.imread(str(folder / "label" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
        truth = (label == 255).astype(int)  # 255 = cell = class 1
        pred = np.where(gray > threshold_otsu(gray), foreground_class, 1 - foreground_class)
        for c in (0, 1):
            inter[c] += np.sum((pred == c) & (truth == c))
            union[c] += np.sum((pred == c) | (truth == c))
    return inter / union


def test_scoring_mode_matches_a_hand_count(tmp_path, shared_data, capsys):
    out = tmp_path / "scores.json"
    assert main(["classic", "otsu", "--data", str(_spec(tmp_path, shared_data)), "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    expected = _reference_iou(shared_data, ["18", "19"], foreground_class=1)  # bright = cell
    assert scores["iou"]["membrane"] == pytest.approx(expected[0])
    assert scores["iou"]["cell"] == pytest.approx(expected[1])
    assert scores["miou"] == pytest.approx(expected.mean())
    assert scores["num_images"] == 2 and scores["fit_split"] == "train"
    assert "polarity keep" in scores["label_map"]
    printed = capsys.readouterr().out
    assert "IoU membrane" in printed and "mIoU" in printed


def test_polarity_is_chosen_on_the_training_split(tmp_path, shared_data):
    # the same data with the class order swapped: now the bright foreground must become class 0
    spec = _spec(tmp_path, shared_data, values="{0: 1, 255: 0}", classes="[cell, membrane]")
    out = tmp_path / "scores.json"
    assert main(["classic", "otsu", "--data", str(spec), "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert "polarity invert" in scores["label_map"]
    expected = _reference_iou(shared_data, ["18", "19"], foreground_class=1)
    assert scores["iou"]["cell"] == pytest.approx(expected[1])
    itself = tmp_path / "itself.json"
    main(["classic", "otsu", "--data", str(spec), "--fit-split", "none", "--json", str(itself)])
    assert json.loads(itself.read_text())["fit_split"] == "val (the scored split itself)"
    forced = tmp_path / "forced.json"
    main(["classic", "otsu", "--data", str(spec), "--polarity", "keep", "--json", str(forced)])
    assert json.loads(forced.read_text())["miou"] < scores["miou"]


def test_edge_scoring_mode(tmp_path, shared_data):
    from detseg.classic import boundaries_from_labels, canny, evaluate_edges

    out = tmp_path / "edges.json"
    spec = _spec(tmp_path, shared_data)
    args = ["classic", "canny", "--data", str(spec), "--edges", "--tolerance-px", "2", "--json", str(out)]
    assert main(args) == 0
    scores = json.loads(out.read_text())
    folder = shared_data / "membrane" / "train"
    edges, truths = [], []
    for stem in ("18", "19"):
        image = cv2.imread(str(folder / "image" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
        label = cv2.imread(str(folder / "label" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
        edges.append(canny(image))
        truths.append(boundaries_from_labels(label))  # 0/255 labels: the same borders as classes 0/1
    expected = evaluate_edges(edges, truths, tolerance_px=2)
    assert scores["ods_f"] == pytest.approx(expected["ods_f"]) and 0 < scores["ods_f"] < 1


def test_image_mode_writes_results_and_overlays(tmp_path, shared_data, capsys):
    src = shared_data / "membrane" / "train" / "image" / "3.png"
    assert main(["classic", "otsu", str(src), "--out", str(tmp_path), "--post", "open radius=1"]) == 0
    mask = cv2.imread(str(tmp_path / "3_mask.png"), cv2.IMREAD_GRAYSCALE)
    assert set(np.unique(mask)) <= {0, 255} and (tmp_path / "3_overlay.png").is_file()
    rgb = shared_data / "camvid" / "val" / "0016E5_07959.png"
    assert main(["classic", "kmeans", str(rgb), "-k", "4", "--out", str(tmp_path)]) == 0
    quantized = cv2.imread(str(tmp_path / "0016E5_07959_quantized.png"))
    assert len(np.unique(quantized.reshape(-1, 3), axis=0)) == 4
    assert main(["classic", "sobel", str(src), "--out", str(tmp_path)]) == 0
    assert cv2.imread(str(tmp_path / "3_magnitude.png"), cv2.IMREAD_GRAYSCALE).max() == 255
    assert "3_mask.png" in capsys.readouterr().out


def test_bad_input_is_one_clear_line(tmp_path, shared_data, capsys):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG broken")
    assert main(["classic", "otsu", str(junk), "--out", str(tmp_path)]) == 2
    assert "junk.png: cannot read image" in capsys.readouterr().err
    src = str(shared_data / "membrane" / "train" / "image" / "3.png")
    assert main(["classic", "region", src, "--seeds", "10,600", "--out", str(tmp_path)]) == 2
    assert "outside the image of 512 rows x 512 cols" in capsys.readouterr().err
    assert main(["classic", "otsu", src]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["classic", "threshold", src, "--out", str(tmp_path)]) == 2
    assert "--threshold is required" in capsys.readouterr().err
    spec = _spec(tmp_path, shared_data)
    assert main(["classic", "kmeans", "--data", str(spec), "--edges"]) == 2
    assert "edge map" in capsys.readouterr().err
