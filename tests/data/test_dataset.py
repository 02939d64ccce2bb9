"""detseg.data.dataset: the sample contract on real data, coco_gt, collate, transforms, skip_bad."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch.utils.data import DataLoader
from torchvision import tv_tensors
from torchvision.transforms import v2

from detseg.data.dataset import (
    DetectionDataset,
    SegmentationDataset,
    build_dataset,
    collate_detection,
    collate_segmentation,
)
from detseg.data.errors import DataError
from detseg.data.spec import spec_from_dict

GREYSCALE_RACCOONS = ("raccoon-150.jpg", "raccoon-152.jpg", "raccoon-161.jpg")  # PROVENANCE: 3 are mode L


@pytest.fixture(scope="module")
def raccoon(shared_data):
    spec = spec_from_dict(
        {
            "format": "voc",
            "classes": ["raccoon"],
            "train": {"images": "images", "annotations": "annotations"},
        },
        shared_data / "raccoon",
    )
    return DetectionDataset(spec, "train")


def test_raccoon_counts(raccoon):
    assert len(raccoon) == 200 and raccoon.classes == ["raccoon"]
    assert sum(len(a) for a in raccoon.annotations.values()) == 217


def test_raccoon_greyscale_jpegs_load_as_three_channels(raccoon):
    from PIL import Image

    index = {img["file_name"]: i for i, img in enumerate(raccoon.images)}
    for name in GREYSCALE_RACCOONS:
        with Image.open(raccoon.image_dir / name) as im:
            assert im.mode == "L"
        image, target = raccoon[index[name]]
        assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape[0] == 3
        assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
        assert target["boxes"].canvas_size == tuple(image.shape[1:])


def test_sample_contract(raccoon):
    image, target = raccoon[0]
    assert target["file_name"] == "raccoon-1.jpg" and target["image_id"] == 1
    assert isinstance(target["boxes"], tv_tensors.BoundingBoxes)
    assert (
        target["boxes"].format == tv_tensors.BoundingBoxFormat.XYXY and target["boxes"].dtype == torch.float32
    )
    # raccoon-1.xml: <xmin>81 <ymin>88 <xmax>522 <ymax>408 (VOC 1-based) -> [80, 87, 522, 408]
    assert target["boxes"].tolist() == [[80.0, 87.0, 522.0, 408.0]]
    assert target["labels"].dtype == torch.int64 and target["labels"].tolist() == [0]
    assert target["iscrowd"].tolist() == [0] and target["area"].tolist() == [442.0 * 321.0]
    assert target["difficult"].dtype == torch.bool and "masks" not in target


def test_coco_gt_evaluates_to_perfect_against_itself(raccoon):
    gt = raccoon.coco_gt()
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    dets = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in gt["annotations"]
    ]
    evaluator = COCOeval(coco, coco.loadRes(dets), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)
    assert raccoon.label_to_category_id == [1] and raccoon.category_id_to_label == {1: 0}


def test_voc_toy_same_boxes_from_xml_and_coco_json(shared_data):
    toy = shared_data / "voc_toy"
    from_xml = DetectionDataset(
        spec_from_dict(
            {
                "format": "voc",
                "classes": ["cat"],
                "val": {"images": "images", "annotations": "gts_vocpascal_format"},
            },
            toy,
        ),
        "val",
    )
    from_json = DetectionDataset(
        spec_from_dict(
            {
                "format": "coco",
                "val": {"images": "images", "annotations": "gts_coco_format/toy_example_coco.JSON"},
            },
            toy,
        ),
        "val",
    )
    assert from_json.classes == ["cat"] and from_json.label_to_category_id == [0]  # category id 0 kept
    xml = {t["file_name"]: t for t in (from_xml.target(i) for i in range(len(from_xml)))}
    js = {t["file_name"]: t for t in (from_json.target(i) for i in range(len(from_json)))}
    assert sorted(xml) == sorted(js) and sum(len(t["labels"]) for t in xml.values()) == 12
    for name, t in xml.items():
        assert torch.equal(t["labels"], js[name]["labels"])
        # Upstream's json was made with x = xmin, w = xmax - xmin (not xmin - 1): the same boxes, shifted
        # by exactly one pixel at the top-left corner.
        assert torch.equal(js[name]["boxes"], t["boxes"] + torch.tensor([1.0, 1.0, 0.0, 0.0]))


def test_collate_and_transforms(shared_data, tmp_path):
    spec = spec_from_dict(
        {
            "task": "segment",
            "format": "masks",
            "classes": ["membrane", "cell"],
            "values": {0: 0, 255: 1},
            "train": {"images": "image", "masks": "label", "list": ["0", "1", "2"]},
        },
        shared_data / "membrane" / "train",
    )
    crop = v2.Compose([v2.RandomCrop(64), v2.ToDtype(torch.float32, scale=True)])
    dataset = SegmentationDataset(spec, "train", transforms=crop)
    assert len(dataset) == 3 and dataset.num_classes == 2
    images, masks = next(iter(DataLoader(dataset, batch_size=3, collate_fn=collate_segmentation)))
    assert images.shape == (3, 3, 64, 64) and images.dtype == torch.float32
    assert (
        masks.shape == (3, 64, 64) and masks.dtype == torch.int64 and set(masks.unique().tolist()) <= {0, 1}
    )

    toy = shared_data / "voc_toy"
    flip = v2.RandomHorizontalFlip(p=1.0)
    det = build_dataset(
        spec_from_dict(
            {
                "format": "voc",
                "classes": ["cat"],
                "val": {"images": "images", "annotations": "gts_vocpascal_format"},
            },
            toy,
        ),
        "val",
        transforms=flip,
    )
    images, targets = collate_detection([det[7], det[8]])  # 2008_002045 (500 px wide), 2008_006599
    assert targets[0]["file_name"] == "2008_002045.jpg"
    # VOC (1, 16, 352, 272) -> [0, 15, 352, 272]; flipped in a 500 px image -> [148, 15, 500, 272].
    assert targets[0]["boxes"][0].tolist() == [148.0, 15.0, 500.0, 272.0]
    assert [tuple(i.shape) for i in images] == [(3, 366, 500), (3, 283, 300)]


def _copy_toy(shared_data, tmp_path):
    toy = shared_data / "voc_toy"
    shutil.copytree(toy / "gts_vocpascal_format", tmp_path / "xml")
    shutil.copytree(toy / "images", tmp_path / "images")
    return spec_from_dict(
        {"format": "voc", "classes": ["cat"], "val": {"images": "images", "annotations": "xml"}}, tmp_path
    )


def test_bad_samples_raise_or_are_skipped_with_a_count(shared_data, tmp_path):
    spec = _copy_toy(shared_data, tmp_path)
    (tmp_path / "images" / "2007_000549.jpg").unlink()  # missing image
    (tmp_path / "images" / "2007_003525.jpg").write_bytes(b"\xff\xd8 corrupt")  # unreadable image
    xml = tmp_path / "xml" / "2007_004856.xml"
    xml.write_text(xml.read_text().replace("<name>cat</name>", "<name>dog</name>"))  # unknown class
    with pytest.raises(DataError, match=r"2007_004856\.xml: object 1: unknown class 'dog'"):
        DetectionDataset(spec, "val")
    with pytest.warns(UserWarning, match="skipped 2 bad samples"):
        dataset = DetectionDataset(spec, "val", skip_bad=True)
    assert len(dataset) == 8 and dataset.skipped == 2
    names = [img["file_name"] for img in dataset.images]
    assert "2007_000549.jpg" not in names and "2007_004856.jpg" not in names
    corrupt = names.index("2007_003525.jpg")
    with pytest.warns(UserWarning, match=r"2007_003525\.jpg: unreadable image"):
        _, target = dataset[corrupt]
    assert target["file_name"] == names[corrupt + 1] and dataset.skipped == 3


def test_wrong_size_mask_and_unexpected_values(shared_data, tmp_path):
    from PIL import Image

    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "img" / "a.png")
    Image.fromarray(np.zeros((8, 9), np.uint8)).save(tmp_path / "msk" / "a.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "img" / "b.png")
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(tmp_path / "msk" / "b.png")
    spec = spec_from_dict(
        {
            "task": "segment",
            "format": "masks",
            "classes": ["bg", "fg"],
            "train": {"images": "img", "masks": "msk"},
        },
        tmp_path,
    )
    dataset = SegmentationDataset(spec, "train")
    with pytest.raises(DataError, match=r"a\.png: mask is 9x8 but the image a\.png is 8x8"):
        dataset[0]
    with pytest.raises(DataError, match=r"b\.png: unexpected mask values 7"):
        dataset[1]


def test_coco_instances_rasterise_to_the_synthetic_semantic_masks(tmp_path):
    import dataclasses

    from detseg.data.spec import load_spec
    from detseg.data.synthetic import SynthConfig, generate

    generate(SynthConfig(seed=5, image_size=(40, 56), num_train=1, num_val=3, object_size=(10, 30)), tmp_path)
    detect = load_spec(tmp_path / "detect.yaml")
    # The same COCO json read for segmentation: instances painted by class, the rest "background".
    as_segment = dataclasses.replace(detect, task="segment", classes=["background", *detect.classes])
    from_coco = build_dataset(as_segment, "val")
    from_png = build_dataset(tmp_path / "segment.yaml", "val")
    assert isinstance(from_coco, SegmentationDataset) and len(from_coco) == len(from_png) == 3
    for i in range(3):
        assert torch.equal(from_coco[i][1]["semantic"], from_png[i][1]["semantic"])
    det = build_dataset(detect, "val")
    image, target = det[0]
    assert det.has_masks and target["masks"].shape == (len(target["labels"]), 40, 56)
    assert target["masks"].dtype == torch.uint8
    # Every instance mask lies inside its box.
    for mask, box in zip(target["masks"], target["boxes"], strict=True):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert xs.min() >= box[0] and xs.max() < box[2] and ys.min() >= box[1] and ys.max() < box[3]
    grey = build_dataset(dataclasses.replace(detect, channels=1), "val")
    assert grey[0][0].shape == (1, 40, 56)


def test_voc_segmentation_palette_masks(tmp_path):
    from PIL import Image

    from detseg.data.voc import write_voc_mask

    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "SegmentationClass").mkdir()
    mask = np.zeros((10, 12), np.uint8)
    mask[2:8, 3:9] = 8  # cat
    mask[1, :] = 255  # object border: void
    write_voc_mask(tmp_path / "SegmentationClass" / "2007_000001.png", mask)
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "JPEGImages" / "2007_000001.jpg")
    from detseg.data.voc import VOC_CLASSES

    spec = spec_from_dict(
        {
            "task": "segment",
            "format": "voc",
            "classes": ["background", *VOC_CLASSES],
            "val": {"images": "JPEGImages", "masks": "SegmentationClass"},
        },
        tmp_path,
    )
    _, target = build_dataset(spec, "val")[0]
    assert torch.equal(target["semantic"], torch.from_numpy(mask.astype(np.int64)))
    assert spec.classes[8] == "cat"
