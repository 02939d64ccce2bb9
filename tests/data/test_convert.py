"""detseg convert and the evaluator loaders: round trips through COCO agree with sources and pycocotools."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from detseg.cli import main
from detseg.data.coco import segmentation_to_mask
from detseg.data.convert import load_detection_gt, load_detection_results
from detseg.data.errors import DataError
from detseg.data.masks import read_mask
from detseg.data.voc import read_voc_xml


@pytest.fixture(scope="module")
def toy(shared_data):
    return shared_data / "voc_toy"


def test_voc_to_coco_to_voc_with_the_cli(toy, tmp_path, capsys):
    xml_dir = toy / "gts_vocpascal_format"
    assert (
        main(
            [
                "convert",
                str(xml_dir),
                str(tmp_path / "gt.json"),
                "--from",
                "voc",
                "--to",
                "coco",
                "--images",
                str(toy / "images"),
                "--classes",
                "cat",
            ]
        )
        == 0
    )
    assert "10 images, 12 annotations, 1 categories" in capsys.readouterr().out
    coco = COCO(str(tmp_path / "gt.json"))  # pycocotools reads what we wrote
    assert len(coco.getImgIds()) == 10 and len(coco.getAnnIds()) == 12
    for ann in coco.anns.values():
        assert ann["area"] == ann["bbox"][2] * ann["bbox"][3] and "source" not in ann
    assert (
        main(["convert", str(tmp_path / "gt.json"), str(tmp_path / "xml"), "--from", "coco", "--to", "voc"])
        == 0
    )
    for xml in xml_dir.glob("*.xml"):
        a, b = read_voc_xml(xml), read_voc_xml(tmp_path / "xml" / xml.name)
        assert [(o["name"], o["bbox"]) for o in a["objects"]] == [
            (o["name"], o["bbox"]) for o in b["objects"]
        ]
        assert (a["width"], a["height"]) == (b["width"], b["height"])


def test_text_results_to_coco_and_back(toy, tmp_path):
    gt_dir = str(toy / "gts_vocpascal_format")
    assert (
        main(
            [
                "convert",
                str(toy / "dets_classname_abs_xywh"),
                str(tmp_path / "dets.json"),
                "--from",
                "text",
                "--to",
                "coco",
                "--gt",
                gt_dir,
                "--box-format",
                "xywh",
            ]
        )
        == 0
    )
    results = json.loads((tmp_path / "dets.json").read_text())
    gt = load_detection_gt(gt_dir)
    expected = load_detection_results(toy / "dets_classname_abs_xyx2y2", gt)
    key = lambda r: (r["image_id"], r["score"])  # noqa: E731
    assert sorted(results, key=key) == sorted(expected, key=key)
    assert (
        main(
            [
                "convert",
                str(tmp_path / "dets.json"),
                str(tmp_path / "txt"),
                "--from",
                "coco",
                "--to",
                "text",
                "--gt",
                gt_dir,
            ]
        )
        == 0
    )
    for path in (toy / "dets_classname_abs_xyx2y2").glob("*.txt"):
        ours = [line.split() for line in (tmp_path / "txt" / path.name).read_text().splitlines()]
        theirs = [line.split() for line in path.read_text().splitlines()]
        assert [[w[0]] + [float(v) for v in w[1:]] for w in ours] == [
            [w[0]] + [float(v) for v in w[1:]] for w in theirs
        ]


def test_coco_dict_style_results_match_the_text_ones(toy):
    gt = load_detection_gt(toy / "gts_coco_format" / "toy_example_coco.JSON")
    assert gt["categories"][0]["id"] == 0 and min(a["id"] for a in gt["annotations"]) == 1
    from_dict = load_detection_results(toy / "dets_coco_format" / "coco_dets.json", gt)
    from_text = load_detection_results(toy / "dets_classname_abs_xyx2y2", gt)
    key = lambda r: (r["image_id"], r["score"])  # noqa: E731
    assert sorted(from_dict, key=key) == sorted(from_text, key=key)
    assert {r["category_id"] for r in from_dict} == {0}


def test_coco_results_list_and_unknown_ids(shared_data, tmp_path):
    folder = shared_data / "coco_eval" / "faster_coco_eval_mini"
    gt = load_detection_gt(folder / "gt_dataset.json")
    results = load_detection_results(folder / "dt_dataset.json", gt)
    assert len(results) == 9 and all("segmentation" in r and "bbox" in r for r in results)
    (tmp_path / "bad.json").write_text(
        json.dumps([{"image_id": 1, "category_id": 9, "bbox": [0, 0, 1, 1], "score": 0.5}])
    )
    with pytest.raises(DataError, match=r"bad\.json: detection 0: unknown category id 9"):
        load_detection_results(tmp_path / "bad.json", gt)
    (tmp_path / "bad.json").write_text(
        json.dumps([{"image_id": 42, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}])
    )
    with pytest.raises(DataError, match="unknown image id 42"):
        load_detection_results(tmp_path / "bad.json", gt)
    # Some tools write the image's file name as its id: image 1 is img_3.jpg in this ground truth.
    by_name = [{"image_id": "img_3.jpg", "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]
    (tmp_path / "named.json").write_text(json.dumps(by_name))
    assert load_detection_results(tmp_path / "named.json", gt)[0]["image_id"] == 1


@pytest.mark.parametrize("segmentation", ["rle", "polygon"])
def test_mask_folder_to_coco(shared_data, tmp_path, segmentation):
    membrane = shared_data / "membrane" / "train"
    for sub in ("image", "label"):
        (tmp_path / sub).mkdir()
        for stem in ("0", "1"):
            (tmp_path / sub / f"{stem}.png").symlink_to(membrane / sub / f"{stem}.png")
    out = tmp_path / "cells.json"
    assert (
        main(
            [
                "convert",
                str(tmp_path / "label"),
                str(out),
                "--from",
                "masks",
                "--to",
                "coco",
                "--images",
                str(tmp_path / "image"),
                "--classes",
                "membrane,cell",
                "--values",
                "0:0,255:1",
                "--segmentation",
                segmentation,
            ]
        )
        == 0
    )
    coco = COCO(str(out))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["membrane", "cell"]
    for img in coco.imgs.values():
        truth = read_mask(tmp_path / "label" / img["file_name"]) == 255
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"], catIds=[2]))
        assert len(anns) > 50  # many cells per slice
        union = np.zeros_like(truth)
        for ann in anns:
            mask = segmentation_to_mask(ann["segmentation"], img["height"], img["width"]).astype(bool)
            assert np.array_equal(mask, coco.annToMask(ann).astype(bool))  # agrees with pycocotools
            union |= mask
        if segmentation == "rle":
            assert np.array_equal(union, truth)
            assert sum(a["area"] for a in anns) == truth.sum()
            assert all(a["area"] == float(mask_utils.area(coco.annToRLE(a))) for a in anns)
        else:  # polygons trace pixel centres and drop holes: close, not equal
            iou = (union & truth).sum() / (union | truth).sum()
            assert iou > 0.85


def test_cli_prints_bad_input_as_one_line(tmp_path, capsys):
    (tmp_path / "a.xml").write_text("<annotation><object>")
    assert main(["convert", str(tmp_path), str(tmp_path / "o.json"), "--from", "voc", "--to", "coco"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "a.xml: line 1 column" in err and "malformed XML" in err
