"""Task ``instance``: boxes with instance masks from COCO json (polygons, RLE), instance-id PNG folders and
Cityscapes instanceIds; masks carried through the transforms; bad masks refused with the annotation id."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from detseg.data.coco import mask_to_box, mask_to_rle
from detseg.data.dataset import DetectionDataset, build_dataset
from detseg.data.errors import DataError
from detseg.data.spec import load_spec, spec_from_dict
from detseg.data.synthetic import SynthConfig, generate
from detseg.data.transforms import detection_train_preset


def _decode(segmentation: dict) -> np.ndarray:
    return mask_utils.decode(dict(segmentation, counts=segmentation["counts"].encode()))


@pytest.fixture()
def shapes(tmp_path) -> Path:
    generate(SynthConfig(seed=3, image_size=(48, 64), num_train=4, num_val=2, object_size=(14, 30)), tmp_path)
    return tmp_path


def test_synth_writes_an_instance_spec_whose_masks_are_the_json_masks(shapes):
    spec = load_spec(shapes / "instance.yaml")
    assert (spec.task, spec.format, spec.classes) == ("instance", "coco", ["circle", "square", "triangle"])
    dataset = build_dataset(spec, "train")
    assert isinstance(dataset, DetectionDataset) and dataset.has_masks
    coco = json.loads((shapes / "annotations/train.json").read_text())
    for index in range(len(dataset)):
        image, target = dataset[index]
        anns = [a for a in coco["annotations"] if a["image_id"] == target["image_id"]]
        masks = target["masks"]
        assert masks.dtype == torch.uint8 and masks.shape == (len(anns), 48, 64)
        for mask, ann in zip(masks.numpy(), anns, strict=True):
            assert np.array_equal(mask, _decode(ann["segmentation"]))
            assert mask_to_box(mask) == ann["bbox"]


def test_masks_follow_the_boxes_through_the_training_transforms(shapes):
    torch.manual_seed(0)
    preset = detection_train_preset((48, 64), zoom_out_range=(1.0, 2.0), hflip_prob=1.0, photometric=False,
                                    iou_crop=False)
    dataset = build_dataset(load_spec(shapes / "instance.yaml"), "train", preset)
    for index in range(len(dataset)):
        image, target = dataset[index]
        assert image.dtype == torch.float32 and target["masks"].shape[1:] == image.shape[1:]
        assert len(target["masks"]) == len(target["boxes"]) == len(target["labels"])
        for mask, box in zip(target["masks"].numpy(), target["boxes"].tolist(), strict=True):
            x, y, w, h = mask_to_box(mask)  # the flipped, zoomed mask still fills its box
            assert np.allclose([x, y, x + w, y + h], box, atol=1.5)
        assert torch.allclose(target["area"], target["masks"].flatten(1).sum(1).float())


def _write_coco(shapes: Path, edit) -> Path:
    coco = json.loads((shapes / "annotations/train.json").read_text())
    edit(coco)
    path = shapes / "annotations/train.json"
    path.write_text(json.dumps(coco))
    return shapes / "instance.yaml"


def test_boxes_without_masks_are_refused_naming_the_file_unless_boxes_only(shapes):
    def drop_one(coco):
        coco["annotations"][2].pop("segmentation")

    spec = _write_coco(shapes, drop_one)
    with pytest.raises(DataError, match=r"train\.json: annotation id 3: a box without a mask.*task: detect"):
        build_dataset(spec, "train")
    boxes_only = build_dataset(spec, "train", boxes_only=True)
    assert "masks" not in boxes_only[0][1] and len(boxes_only[0][1]["boxes"]) > 0


@pytest.mark.parametrize(
    ("segmentation", "message"),
    [
        ([[10.0, 10.0, 20.0, 10.0]], "annotation id 2: polygon needs at least 3 points"),
        (mask_to_rle(np.zeros((48, 64), np.uint8)),
         "annotation id 2: empty mask"),
        # a 3 x 3 corner far from the box [0, 0, 10, 10]
        (mask_to_rle(np.pad(np.ones((3, 3), np.uint8), ((45, 0), (61, 0)))),
         "annotation id 2: the mask lies outside its box"),
    ],
)
def test_bad_masks_are_refused_with_the_annotation_id(shapes, segmentation, message):
    def corrupt(coco):
        ann = coco["annotations"][1]
        ann["segmentation"], ann["bbox"] = segmentation, [0.0, 0.0, 10.0, 10.0]

    spec = _write_coco(shapes, corrupt)
    with pytest.raises(DataError, match=message):
        dataset = build_dataset(spec, "train")
        for index in range(len(dataset)):
            dataset[index]
    # skip_bad drops the sample with a warning instead (the polygon when read, the masks when decoded)
    with pytest.warns(UserWarning, match="skipped"):
        dataset = build_dataset(spec, "train", skip_bad=True)
        for index in range(len(dataset)):
            dataset[index]


def test_instance_id_folders_give_the_json_instances(shapes):
    # VOC's layout: semantic class PNGs beside PNGs of instance ids (0 none, 255 void), written from the json.
    coco = json.loads((shapes / "annotations/train.json").read_text())
    (shapes / "instances").mkdir()
    for img in coco["images"]:
        ids = np.zeros((48, 64), np.uint8)
        anns = [a for a in coco["annotations"] if a["image_id"] == img["id"]]
        for k, ann in enumerate(anns, start=1):
            ids[_decode(ann["segmentation"]) > 0] = k
        ids[0, 0] = 255  # void
        Image.fromarray(ids).save(shapes / "instances" / img["file_name"])
    spec = spec_from_dict(
        {"task": "instance", "format": "masks", "classes": ["background", "circle", "square", "triangle"],
         "train": {"images": "images/train", "masks": "masks/train", "instances": "instances"}},
        shapes,
    )
    from_ids = build_dataset(spec, "train")
    from_json = build_dataset(load_spec(shapes / "instance.yaml"), "train")
    assert len(from_ids) == len(from_json) == 4
    for index in range(4):
        (_, a), (_, b) = from_ids[index], from_json[index]
        assert torch.equal(a["masks"], b["masks"])
        assert (a["labels"] - 1).tolist() == b["labels"].tolist()  # "background" is label 0 there
        assert torch.equal(a["boxes"], b["boxes"])


def test_an_instance_without_a_class_is_refused(shapes):
    ids = np.zeros((48, 64), np.uint8)
    semantic = np.array(Image.open(shapes / "masks/train/000001.png"))
    background = np.argwhere(semantic == 0)[0]
    ids[tuple(background)] = 7  # one pixel, on the background only
    (shapes / "instances").mkdir()
    for name in ("000001.png", "000002.png", "000003.png", "000004.png"):
        Image.fromarray(ids).save(shapes / "instances" / name)
    spec = spec_from_dict(
        {"task": "instance", "format": "masks", "classes": ["background", "circle", "square", "triangle"],
         "train": {"images": "images/train", "masks": "masks/train", "instances": "instances"}},
        shapes,
    )
    with pytest.raises(DataError, match=r"000001\.png: instance 7 covers only background or void pixels"):
        build_dataset(spec, "train")


def test_cityscapes_instance_ids_give_instance_masks(tmp_path):
    label_ids = np.full((20, 30), 7, np.uint8)  # road
    instance_ids = label_ids.astype(np.uint16)
    label_ids[2:8, 3:9] = 26
    instance_ids[2:8, 3:9] = 26000  # car #0
    instance_ids[10:14, 20:24] = 24001  # person #1
    label_ids[10:14, 20:24] = 24
    for folder in ("leftImg8bit/val/ulm", "gtFine/val/ulm"):
        (tmp_path / folder).mkdir(parents=True)
    stem = "ulm_000000_000019"
    image = np.zeros((20, 30, 3), np.uint8)
    Image.fromarray(image).save(tmp_path / f"leftImg8bit/val/ulm/{stem}_leftImg8bit.png")
    Image.fromarray(label_ids).save(tmp_path / f"gtFine/val/ulm/{stem}_gtFine_labelIds.png")
    Image.fromarray(instance_ids).save(tmp_path / f"gtFine/val/ulm/{stem}_gtFine_instanceIds.png")
    spec = spec_from_dict({"task": "instance", "format": "cityscapes", "classes": ["person", "car"],
                           "val": {"images": "leftImg8bit/val", "masks": "gtFine/val"}}, tmp_path)
    _, target = build_dataset(spec, "val")[0]
    order = target["labels"].argsort()
    assert target["labels"][order].tolist() == [0, 1]
    assert target["masks"][order].flatten(1).sum(1).tolist() == [16, 36]
    assert target["boxes"][order].tolist() == [[20.0, 10.0, 24.0, 14.0], [3.0, 2.0, 9.0, 8.0]]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"task": "instance", "format": "voc", "classes": ["a"],
          "train": {"images": "i", "annotations": "a"}},
         "task instance reads format coco, masks or cityscapes"),
        ({"task": "detect", "format": "masks", "classes": ["a"],
          "train": {"images": "i", "masks": "m", "instances": "n"}}, "'instances'.*task: instance"),
    ],
)
def test_instance_spec_mistakes_are_named(tmp_path, spec, message):
    with pytest.raises(DataError, match=message):
        spec_from_dict(spec, tmp_path)
