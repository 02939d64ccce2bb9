"""detseg.data.cityscapes: the official id table and a small gtFine tree written here."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from detseg.data.cityscapes import (
    INSTANCE_CLASSES,
    TRAIN_CLASSES,
    avg_instance_sizes,
    cityscapes_to_coco,
    label_ids_to_train_ids,
    read_instances,
    train_id_table,
)
from detseg.data.dataset import DetectionDataset, SegmentationDataset
from detseg.data.spec import spec_from_dict


def test_train_id_table_is_the_official_one():
    table = train_id_table()
    assert len(TRAIN_CLASSES) == 19
    # cityscapesScripts labels.py: the 19 evaluated label ids, in train-id order.
    evaluated = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
    assert [int(table[i]) for i in evaluated] == list(range(19))
    assert all(table[i] == 255 for i in range(256) if i not in evaluated)
    assert TRAIN_CLASSES[0] == "road" and TRAIN_CLASSES[13] == "car" and TRAIN_CLASSES[18] == "bicycle"
    assert INSTANCE_CLASSES == ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")


@pytest.fixture()
def city(tmp_path):
    """One 20 x 30 frame: road below, sky above, one car (26) instance and a crowd of persons."""
    label_ids = np.full((20, 30), 23, np.uint8)  # sky
    label_ids[10:] = 7  # road
    label_ids[12:16, 4:10] = 26
    label_ids[2:4, 20:25] = 24  # person crowd: label id only in instanceIds
    label_ids[0, 0] = 3  # out of roi -> ignore
    instance_ids = label_ids.astype(np.uint16)  # 16-bit PNG, as Cityscapes ships them
    instance_ids[12:16, 4:10] = 26001
    for split_dir in ("leftImg8bit/val/aachen", "gtFine/val/aachen"):
        (tmp_path / split_dir).mkdir(parents=True)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(
        tmp_path / "leftImg8bit/val/aachen/aachen_000000_000019_leftImg8bit.png"
    )
    Image.fromarray(label_ids).save(tmp_path / "gtFine/val/aachen/aachen_000000_000019_gtFine_labelIds.png")
    Image.fromarray(instance_ids).save(
        tmp_path / "gtFine/val/aachen/aachen_000000_000019_gtFine_instanceIds.png"
    )
    return tmp_path, label_ids


def test_semantic_train_ids_from_label_ids(city):
    root, label_ids = city
    spec = spec_from_dict(
        {
            "task": "segment",
            "format": "cityscapes",
            "val": {"images": "leftImg8bit/val", "masks": "gtFine/val"},
        },
        root,
    )
    dataset = SegmentationDataset(spec, "val")
    assert len(dataset) == 1 and dataset.classes == list(TRAIN_CLASSES)
    image, target = dataset[0]
    semantic = target["semantic"].numpy()
    assert np.array_equal(semantic, label_ids_to_train_ids(label_ids))
    assert semantic[0, 0] == 255 and semantic[1, 1] == 10 and semantic[19, 0] == 0 and semantic[13, 5] == 13
    assert target["file_name"] == "aachen/aachen_000000_000019_leftImg8bit.png"


def test_instances_become_boxes(city):
    root, _ = city
    coco = cityscapes_to_coco(root / "leftImg8bit/val", root / "gtFine/val")
    assert len(coco["annotations"]) == 1  # the crowd of persons has no instance id
    ann = coco["annotations"][0]
    assert ann["category_id"] == 26 and ann["bbox"] == [4.0, 12.0, 6.0, 4.0] and ann["area"] == 24.0
    spec = spec_from_dict(
        {
            "task": "detect",
            "format": "cityscapes",
            "classes": ["person", "car"],
            "val": {"images": "leftImg8bit/val", "masks": "gtFine/val"},
        },
        root,
    )
    _, target = DetectionDataset(spec, "val")[0]
    assert target["labels"].tolist() == [1]
    assert target["boxes"].tolist() == [[4.0, 12.0, 10.0, 16.0]]
    assert target["masks"].shape == (1, 20, 30) and int(target["masks"].sum()) == 24


def test_read_instances_gives_masks_and_train_ids(city):
    root, _ = city
    masks, labels = read_instances(root / "gtFine/val/aachen/aachen_000000_000019_gtFine_instanceIds.png")
    assert labels.tolist() == [13]  # the car, in train ids; the person crowd has no instance
    assert masks.dtype == np.uint8 and masks.shape == (1, 20, 30)
    assert int(masks.sum()) == 24 and masks[0, 12:16, 4:10].all()
    # cityscapesScripts' avgClassSize, keyed by train id, for the 8 instance classes only
    sizes = avg_instance_sizes()
    assert sorted(sizes) == list(range(11, 19)) and sizes[11] == pytest.approx(3462.4756337644)
