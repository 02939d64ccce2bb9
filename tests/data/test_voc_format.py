"""detseg.data.voc: the raccoon set's counts, the 1-based box convention, round trips and bad XML."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from detseg.data.errors import DataError
from detseg.data.masks import read_mask
from detseg.data.voc import (
    coco_to_voc,
    read_split_list,
    read_voc_xml,
    voc_to_coco,
    voc_to_xyxy,
    write_voc_mask,
    xyxy_to_voc,
)


@pytest.fixture(scope="module")
def raccoon_coco(shared_data):
    root = shared_data / "raccoon"
    return voc_to_coco(root / "annotations", root / "images", ["raccoon"])


def test_raccoon_counts_and_boxes_agree_with_its_csv(raccoon_coco, shared_data):
    assert len(raccoon_coco["images"]) == 200
    assert len(raccoon_coco["annotations"]) == 217
    assert raccoon_coco["categories"] == [{"id": 1, "name": "raccoon", "supercategory": "none"}]
    # The author's CSV lists the same boxes in VOC integers: x1 = xmin - 1, x2 = xmax on read.
    with open(shared_data / "raccoon" / "labels" / "raccoon_labels.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 217
    names = {img["id"]: img["file_name"] for img in raccoon_coco["images"]}
    ours = sorted(
        (
            names[a["image_id"]],
            *xyxy_to_voc(
                [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
            ),
        )
        for a in raccoon_coco["annotations"]
    )
    theirs = sorted(
        (r["filename"], int(r["xmin"]), int(r["ymin"]), int(r["xmax"]), int(r["ymax"])) for r in rows
    )
    assert ours == theirs
    sizes = {r["filename"]: (int(r["width"]), int(r["height"])) for r in rows}
    for img in raccoon_coco["images"]:
        if img["file_name"] in sizes:
            assert (img["width"], img["height"]) == sizes[img["file_name"]]


def test_one_based_inclusive_convention():
    # VOC pixels 1..10 inclusive are 10 pixels wide: [0, 10) in detseg / COCO.
    assert voc_to_xyxy([1, 1, 10, 20]) == [0.0, 0.0, 10.0, 20.0]
    assert xyxy_to_voc([0.0, 0.0, 10.0, 20.0]) == [1, 1, 10, 20]


def test_voc_to_coco_to_voc_round_trip(shared_data, tmp_path):
    src = shared_data / "voc_toy" / "gts_vocpascal_format"
    coco = voc_to_coco(src, shared_data / "voc_toy" / "images")
    assert len(coco["images"]) == 10 and len(coco["annotations"]) == 12
    coco_to_voc(coco, tmp_path)
    for xml in sorted(src.glob("*.xml")):
        a, b = read_voc_xml(xml), read_voc_xml(tmp_path / xml.name)
        assert (a["filename"], a["width"], a["height"]) == (b["filename"], b["width"], b["height"])
        assert [(o["name"], o["bbox"], o["difficult"], o["truncated"]) for o in a["objects"]] == [
            (o["name"], o["bbox"], o["difficult"], o["truncated"]) for o in b["objects"]
        ]


def _xml(
    objects: str, size: str = "<size><width>50</width><height>40</height><depth>3</depth></size>"
) -> str:
    return f"<annotation><filename>a.jpg</filename>{size}{objects}</annotation>"


def _obj(name="cat", box=(1, 2, 30, 20), difficult=0):
    xmin, ymin, xmax, ymax = box
    return (
        f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{xmin}</xmin>"
        f"<ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
    )


def test_bad_xml_names_file_and_object(tmp_path):
    (tmp_path / "a.xml").write_text(_xml(_obj()).replace("</annotation>", ""))
    with pytest.raises(DataError, match=r"a\.xml: line \d+ column \d+: malformed XML"):
        voc_to_coco(tmp_path, classes=["cat"])
    (tmp_path / "a.xml").write_text(_xml(_obj() + _obj(box=(30, 2, 10, 20))))
    with pytest.raises(DataError, match=r"a\.xml: object 2: degenerate box"):
        voc_to_coco(tmp_path, classes=["cat"])
    (tmp_path / "a.xml").write_text(_xml(_obj() + _obj(name="dog")))
    with pytest.raises(DataError, match=r"a\.xml: object 2: unknown class 'dog'"):
        voc_to_coco(tmp_path, classes=["cat"])
    (tmp_path / "a.xml").write_text(_xml(_obj().replace("<xmax>30</xmax>", "<xmax>3O</xmax>")))
    with pytest.raises(DataError, match=r"object 1: <xmax> is not a number: '3O'"):
        voc_to_coco(tmp_path, classes=["cat"])
    problems = []
    (tmp_path / "a.xml").write_text(_xml(_obj(difficult=1) + _obj(name="dog")))
    coco = voc_to_coco(tmp_path, classes=["cat"], problems=problems)
    assert len(problems) == 1 and problems[0].image == "a"
    assert coco["annotations"][0]["difficult"] == 1 and coco["annotations"][0]["ignore"] == 1


def test_split_list_and_palette_mask(tmp_path):
    (tmp_path / "train.txt").write_text("2007_000032\n2007_000039 -1\n\n")
    assert read_split_list(tmp_path / "train.txt") == ["2007_000032", "2007_000039"]
    mask = np.zeros((8, 9), np.uint8)
    mask[2:5, 3:7] = 15
    mask[0] = 255
    write_voc_mask(tmp_path / "m.png", mask)
    with Image.open(tmp_path / "m.png") as im:
        assert im.mode == "P"
        assert im.getpalette()[15 * 3 : 15 * 3 + 3] == [192, 128, 128]  # VOC's colour for person
    assert np.array_equal(read_mask(tmp_path / "m.png"), mask)
