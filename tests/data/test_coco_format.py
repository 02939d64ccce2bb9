"""detseg.data.coco: segmentation helpers agree with pycocotools; bad COCO input names file and entry."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from detseg.data.coco import (
    category_map,
    check_coco,
    ensure_annotation_ids,
    load_coco,
    mask_to_box,
    mask_to_polygons,
    mask_to_rle,
    rle_to_mask,
    segmentation_area,
    segmentation_to_mask,
    segmentation_to_rle,
)
from detseg.data.errors import DataError


@pytest.fixture(scope="module")
def coco_eval_gt(shared_data):
    return shared_data / "coco_eval" / "faster_coco_eval_mini" / "gt_dataset.json"


def test_coco_eval_polygons_decode_to_pycocotools_areas(coco_eval_gt):
    reference = COCO(str(coco_eval_gt))
    data = load_coco(coco_eval_gt)
    assert len(data["images"]) == 3 and len(data["annotations"]) == 9
    sizes = {img["id"]: (img["height"], img["width"]) for img in data["images"]}
    for ann in data["annotations"]:
        h, w = sizes[ann["image_id"]]
        ours = segmentation_to_mask(ann["segmentation"], h, w)
        theirs = reference.annToMask(reference.anns[ann["id"]])
        assert ours.shape == (h, w)
        assert np.array_equal(ours, theirs)
        assert segmentation_area(ann["segmentation"], h, w) == float(mask_utils.area(reference.annToRLE(ann)))
        assert ours.sum() > 100  # real shapes, not empty masks


def test_polygon_to_rle_to_area_matches_pycocotools_and_hand_count():
    # A 10 x 6 axis-aligned rectangle polygon covers exactly 60 pixels in pycocotools' rasteriser.
    polygon = [[2.0, 3.0, 12.0, 3.0, 12.0, 9.0, 2.0, 9.0]]
    rle = segmentation_to_rle(polygon, 20, 20)
    assert float(mask_utils.area(rle)) == segmentation_area(polygon, 20, 20) == 60.0
    mask = rle_to_mask(rle)
    assert mask[3:9, 2:12].all() and mask.sum() == 60
    # mask -> RLE (JSON-ready str counts) -> mask is lossless, uncompressed RLE reads too.
    back = mask_to_rle(mask)
    assert isinstance(back["counts"], str)
    assert np.array_equal(segmentation_to_mask(back, 20, 20), mask)
    # Uncompressed RLE runs alternate zeros / ones in column-major order: rows 5..14 of column 0.
    uncompressed = segmentation_to_mask({"size": [20, 20], "counts": [5, 10, 385]}, 20, 20)
    assert uncompressed.sum() == 10 and uncompressed[5:15, 0].all()
    assert mask_to_box(mask) == [2.0, 3.0, 10.0, 6.0]


def test_mask_to_polygons_rasterises_close_to_the_mask():
    mask = np.zeros((64, 64), np.uint8)
    yy, xx = np.mgrid[:64, :64]
    mask[(yy - 30) ** 2 + (xx - 28) ** 2 <= 15**2] = 1
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 1
    area = segmentation_area(polygons, 64, 64)
    # Contours run through pixel centres: the polygon loses about half a pixel along the border.
    assert abs(area - mask.sum()) < 0.1 * mask.sum()
    iou = mask_utils.iou(
        [segmentation_to_rle(polygons, 64, 64)], [mask_utils.encode(np.asfortranarray(mask))], [0]
    )
    assert iou[0, 0] > 0.9


def test_category_map_keeps_category_id_zero(shared_data):
    data = load_coco(shared_data / "voc_toy" / "gts_coco_format" / "toy_example_coco.JSON")
    cmap = category_map(data["categories"], None)
    assert cmap.classes == ["cat"] and cmap.category_ids == [0]
    assert cmap.to_label(0) == 0 and cmap.to_category_id(0) == 0
    by_name = category_map([{"id": 7, "name": "b"}, {"id": 3, "name": "a"}], ["a", "b", "c"])
    assert by_name.category_ids == [3, 7, 8]  # a class the file lacks gets a fresh id
    # Annotation id 0 would count as "unmatched" in pycocotools: ids are renumbered from 1.
    assert {a["id"] for a in ensure_annotation_ids(data)["annotations"]} == set(range(1, 13))


def _coco(**ann):
    base = {"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}
    base.update(ann)
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
        "annotations": [base],
        "categories": [{"id": 1, "name": "x"}],
    }


@pytest.mark.parametrize(
    "ann, message",
    [
        ({"category_id": 9}, "unknown category id 9"),
        ({"image_id": 4}, "unknown image id 4"),
        ({"bbox": [5, 5, 0, 3]}, "degenerate box"),
        ({"bbox": [5, 5, -2, 3]}, "x2 <= x1"),
        ({"bbox": [1, 2, 3]}, "bbox must be 4 numbers"),
        ({"segmentation": [[1, 2, 3, 4]]}, "at least 3 points"),
        ({"segmentation": {"size": [5, 5], "counts": "x"}}, "differs from the image size"),
    ],
)
def test_bad_annotation_names_file_and_annotation_id(ann, message):
    with pytest.raises(DataError) as info:
        check_coco(_coco(**ann), "gt.json")
    text = str(info.value)
    assert text.startswith("gt.json: annotation id 5: ") and message in text
    problems = []
    clean = check_coco(_coco(**ann), "gt.json", problems)
    assert clean["annotations"] == [] and len(problems) == 1 and problems[0].image in (1, 4)


def test_malformed_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"images": [],\n "annotations": [}\n')
    with pytest.raises(DataError, match=r"bad\.json: line 2 column \d+: malformed JSON"):
        load_coco(path)
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(DataError, match="missing or non-list 'annotations'"):
        load_coco(path)
    with pytest.raises(DataError, match="file not found"):
        load_coco(tmp_path / "none.json")
