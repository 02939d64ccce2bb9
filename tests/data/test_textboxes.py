"""detseg.data.textboxes: Padilla's toy example in its six text layouts agrees with its VOC XML."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detseg.data.convert import load_detection_gt, load_detection_results
from detseg.data.errors import DataError
from detseg.data.textboxes import from_xyxy, read_text_boxes, text_to_coco, to_xyxy


@pytest.fixture(scope="module")
def toy(shared_data):
    return shared_data / "voc_toy"


@pytest.fixture(scope="module")
def gt(toy):
    return load_detection_gt(toy / "gts_vocpascal_format", image_dir=toy / "images")


def _boxes(results):
    return np.array(sorted((r["image_id"], r["score"], *r["bbox"]) for r in results))


@settings(max_examples=60, deadline=None)
@given(
    x1=st.floats(0, 400),
    y1=st.floats(0, 300),
    w=st.floats(1, 200),
    h=st.floats(1, 200),
    fmt=st.sampled_from(["xyxy", "xywh", "rel_xcycwh"]),
)
def test_box_formats_invert(x1, y1, w, h, fmt):
    box = [x1, y1, x1 + w, y1 + h]
    assert to_xyxy(from_xyxy(box, fmt, (500, 600)), fmt, (500, 600)) == pytest.approx(box, abs=1e-6)


def test_box_format_known_answers():
    # YOLO: centre (0.5, 0.5), size (0.2, 0.4) of a 200 x 100 (W x H) image.
    assert to_xyxy([0.5, 0.5, 0.2, 0.4], "rel_xcycwh", (100, 200)) == pytest.approx([80, 30, 120, 70])
    assert to_xyxy([10, 20, 30, 40], "xywh") == [10, 20, 40, 60]


def test_all_six_detection_layouts_agree(toy, gt):
    names = (toy / "voc.names").read_text().split()
    reference = _boxes(load_detection_results(toy / "dets_classname_abs_xyx2y2", gt))
    assert len(reference) == 12
    # Upstream wrote the A..L detections in every layout; the first line: cat 0.94 12 44 344 481,
    # read in the VOC XML ground truth's 1-based pixel frame: x = 12 - 1, w = 344 - 11 (bbox x, y, w, h).
    assert reference[0][2:].tolist() == [11.0, 43.0, 333.0, 438.0]
    for layout, fmt in (("abs_xyx2y2", "xyxy"), ("abs_xywh", "xywh"), ("rel_xcycwh", "rel_xcycwh")):
        for kind in ("classname", "classid"):
            results = load_detection_results(toy / f"dets_{kind}_{layout}", gt, fmt, id_names=names)
            assert {r["category_id"] for r in results} == {1}
            # Upstream's relative files disagree with its absolute ones by up to 0.63 px (its converter).
            tolerance = 0.7 if fmt == "rel_xcycwh" else 0
            np.testing.assert_allclose(_boxes(results), reference, atol=tolerance)


def test_ground_truth_text_files_round_trip(gt, tmp_path):
    from detseg.data.textboxes import coco_to_text

    coco_to_text(gt, tmp_path)
    assert len(list(tmp_path.glob("*.txt"))) == 10
    back = text_to_coco(tmp_path)
    assert [a["bbox"] for a in back["annotations"]] == [a["bbox"] for a in gt["annotations"]]
    (tmp_path / "2007_000549.txt").write_text("cat 1 2 30 40 difficult\n")
    rows = read_text_boxes(tmp_path / "2007_000549.txt")
    assert rows[0]["difficult"] == 1 and rows[0]["box"] == [1.0, 2.0, 30.0, 40.0]


def test_bad_lines_unknown_classes_and_images(gt, tmp_path):
    (tmp_path / "2007_000549.txt").write_text("cat 0.5 1 2 3\n")
    with pytest.raises(DataError, match=r"2007_000549\.txt: line 1: expected 'class score a b c d'"):
        load_detection_results(tmp_path, gt)
    (tmp_path / "2007_000549.txt").write_text("cat 0.5 1 2 3 4\ndog 0.4 1 2 3 4\n")
    with pytest.raises(DataError, match=r"2007_000549\.txt: line 2: unknown class 'dog'"):
        load_detection_results(tmp_path, gt)
    (tmp_path / "2007_000549.txt").unlink()
    (tmp_path / "nowhere.txt").write_text("cat 0.5 1 2 3 4\n")
    with pytest.raises(DataError, match=r"nowhere\.txt: no image with stem 'nowhere'"):
        load_detection_results(tmp_path, gt)
    (tmp_path / "nowhere.txt").write_text("cat 1 2 x 4\n")
    with pytest.raises(DataError, match=r"nowhere\.txt: line 1: not a number"):
        text_to_coco(tmp_path)
    (tmp_path / "nowhere.txt").write_text("cat 5 2 3 4\n")
    with pytest.raises(DataError, match=r"line 1: degenerate box"):
        text_to_coco(tmp_path)
    with pytest.raises(DataError, match="need the image size"):
        read_text_boxes(tmp_path / "nowhere.txt", box_format="rel_xcycwh")
