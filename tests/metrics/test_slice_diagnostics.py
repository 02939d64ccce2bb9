"""Slice diagnostics: objects placed on the slice grid by hand, recall per place and the duplicates that
survive the merge (TIDE's duplicate dAP worked out by hand)."""

import math

import pytest

from detseg.metrics.slice_diagnostics import object_places, slice_diagnostics, summary
from detseg.metrics.tide import tide

# A 100 x 100 image, tile 60, overlap 0.2: stride 60 - int(12.0) = 48, starts [0, 40] on both sides, so
# the four slices span x (and y) 0..60 and 40..100.
A = [10, 10, 30, 30]  # in slice (0, 0) alone: inside
B = [45, 10, 55, 20]  # in the overlap, held whole by (0, 0) and (40, 0): inside
C = [50, 10, 70, 20]  # (0, 0) ends at x 60 and cuts it, (40, 0) holds it: border
D = [30, 10, 70, 20]  # (0, 0) cuts it at x 60, (40, 0) at x 40: cut
E = [60, 10, 70, 20]  # touches (0, 0)'s border x 60 with zero area: inside (40, 0)
F = [30, 30, 70, 70]  # every slice cuts it: cut


def test_places_on_the_grid_by_hand():
    assert object_places([A, B, C, D, E, F], 100, 100, 60, 0.2) == [
        "inside", "inside", "border", "cut", "inside", "cut"]  # fmt: skip
    # A side no longer than the tile is one window: 100 wide, 50 high -> slices x 0..60 and 40..100.
    assert object_places([[30, 10, 70, 20], [50, 10, 70, 20]], 50, 100, 60, 0.2) == ["cut", "border"]
    assert object_places([D, F], 100, 100, 128, 0.2) == ["inside", "inside"]  # run whole
    assert object_places([D], 100, 100, 60, 0.5) == ["border"]  # stride 30: slice x 30..90 holds it
    assert object_places([], 100, 100, 60, 0.2) == []


def _xywh(box):
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


GT = {
    "images": [{"id": 1, "height": 100, "width": 100}, {"id": 2, "height": 50, "width": 50}],
    "categories": [{"id": 1, "name": "a"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": _xywh(A), "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": _xywh(C), "iscrowd": 0},
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": _xywh(D), "iscrowd": 0},
        {"id": 4, "image_id": 1, "category_id": 1, "bbox": _xywh(F), "iscrowd": 1},  # left out
    ],
}


def _det(box, score, image=1):
    return {"image_id": image, "category_id": 1, "bbox": _xywh(box), "score": score}


def test_recall_per_place_and_the_duplicates_left_by_the_merge():
    # C found at 0.9; the unmerged part of C, x 52..70 (IoU 18/20 with C), at 0.85 is a duplicate; A found
    # at 0.8; D (cut by every slice) missed. Three objects: PR = TP, FP, TP at recall 1/3, 1/3, 2/3,
    # precision 1, 1/2, 2/3; the envelope is 1 up to recall 1/3 (34 of the 101 recall points), 2/3 up to
    # 2/3 (33 points): AP = (34 + 33 * 2/3) / 101 = 56/101. Without the duplicate: 67/101.
    results = [_det(C, 0.9), _det([52, 10, 70, 20], 0.85), _det(A, 0.8)]
    d = slice_diagnostics(GT, tide(GT, results), tile=60, overlap=0.2)
    assert d["objects"] == {"inside": 1, "border": 1, "cut": 1}
    assert d["found"] == {"inside": 1, "border": 1, "cut": 0}
    assert d["recall"] == {"inside": 1.0, "border": 1.0, "cut": 0.0}
    assert d["duplicates"] == {"inside": 0, "border": 1, "cut": 0, "all": 1}
    assert d["duplicate_dAP"] == pytest.approx(11 / 101)
    text = summary(d)
    assert "cut by every slice that sees it" in text and "duplicates surviving the merge: 1" in text
    assert "TIDE duplicate dAP 10.89" in text


def test_a_place_without_objects_has_no_recall_and_sizes_are_needed():
    gt = {**GT, "annotations": GT["annotations"][:1]}
    d = slice_diagnostics(gt, tide(gt, []), tile=60, overlap=0.2)
    assert d["objects"] == {"inside": 1, "border": 0, "cut": 0} and d["recall"]["inside"] == 0.0
    assert math.isnan(d["recall"]["cut"]) and d["duplicate_dAP"] == 0.0
    cut_line = next(line for line in summary(d).splitlines() if "every slice" in line)
    assert cut_line.split()[-4:] == ["0", "0", "-", "0"]  # objects, found, recall, duplicates
    no_size = {**gt, "images": [{"id": 1}]}
    with pytest.raises(ValueError, match="no height and width"):
        slice_diagnostics(no_size, tide(no_size, []), tile=60, overlap=0.2)


def test_eval_det_on_slices_prints_them_and_reports_them(tmp_path, capsys):
    import json

    import torch

    from detseg.cli import main
    from detseg.data.synthetic import SynthConfig, generate
    from detseg.engine.checkpoint import save_checkpoint
    from detseg.models.zoo import create_model

    root = generate(SynthConfig(seed=1, num_train=1, num_val=2, image_size=(80, 96)), tmp_path / "shapes")
    kwargs = {"num_classes": 3, "size": 32, "score_thresh": 0.0}
    torch.manual_seed(0)
    model = create_model("ssdlite320_mobilenet_v3_large", **kwargs)
    meta = {"task": "detect", "model": "ssdlite320_mobilenet_v3_large", "model_kwargs": kwargs,
            "classes": ["circle", "square", "triangle"], "img_size": 32}  # fmt: skip
    save_checkpoint({"meta": meta, "model": model.state_dict()}, tmp_path / "det.pt")
    args = ["eval", "det", "--weights", str(tmp_path / "det.pt"), "--data", str(root / "detect.yaml"),
            "--tile", "48", "--overlap", "0.25", "--report", str(tmp_path / "report"),
            "--json", str(tmp_path / "m.json")]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Slices (48 px, overlap 0.25)" in out and "duplicates surviving the merge" in out
    saved = json.loads((tmp_path / "m.json").read_text())["slices"]
    assert sum(saved["objects"].values()) > 0 and saved["tile"] == 48
    page = (tmp_path / "report" / "index.html").read_text()
    assert 'id="slices"' in page and "cut by every slice that sees it" in page
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["slices"] == saved
