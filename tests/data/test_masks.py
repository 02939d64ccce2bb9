"""detseg.data.masks: CamVid and membrane label folders, value tables, mask folders -> instances."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage.measure import label as connected_label

from detseg.data.coco import segmentation_area
from detseg.data.errors import DataError
from detseg.data.masks import (
    map_mask_values,
    mask_pairs,
    masks_to_coco,
    read_image,
    read_mask,
    semantic_to_instances,
    value_table,
)

# PROVENANCE.md of camvid: pixel counts of classes 0..11 over the 101 val labels.
CAMVID_PIXELS = [
    1601620,
    4531180,
    98499,
    5053176,
    1521751,
    2851125,
    155724,
    537197,
    304716,
    113531,
    387010,
    297271,
]


def test_camvid_frames_classes_and_void(shared_data):
    root = shared_data / "camvid"
    pairs = mask_pairs(root / "val", root / "valannot")
    assert len(pairs) == 101
    table = value_table({11: 255}, num_classes=11, ignore_index=255)  # CamVid: 11 = void
    counts = np.zeros(256, np.int64)
    for image, mask, name in pairs:
        assert mask.name == image.name == name
        semantic = map_mask_values(read_mask(mask), table, mask)
        counts += np.bincount(semantic.ravel(), minlength=256)
    assert counts[:11].tolist() == CAMVID_PIXELS[:11]
    assert counts[255] == CAMVID_PIXELS[11]
    assert counts.sum() == 101 * 480 * 360


def test_membrane_binary_labels_and_greyscale_images(shared_data):
    root = shared_data / "membrane" / "train"
    pairs = mask_pairs(root / "image", root / "label")
    assert len(pairs) == 24
    table = value_table({0: 0, 255: 1}, num_classes=2, ignore_index=255)
    image, mask, _ = pairs[0]
    raw = read_mask(mask)
    assert set(np.unique(raw).tolist()) == {0, 255}
    semantic = map_mask_values(raw, table, mask)
    assert set(np.unique(semantic).tolist()) == {0, 1} and (semantic == 1).sum() == (raw == 255).sum()
    rgb = read_image(image)
    grey = read_image(image, channels=1)
    assert rgb.shape == (512, 512, 3) and grey.shape == (512, 512, 1)
    assert np.array_equal(rgb[..., 0], grey[..., 0]) and np.array_equal(rgb[..., 1], rgb[..., 2])


def test_value_tables_and_unexpected_values():
    full = value_table({0: 0, 255: 1}, 2, 255)
    with pytest.raises(DataError, match=r"m\.png: unexpected mask values 1, 7"):
        map_mask_values(np.array([[0, 1, 7, 255]], np.uint8), full, "m.png")
    identity = value_table(None, 3, 255)
    assert map_mask_values(np.array([[0, 2, 255]], np.uint8), identity).tolist() == [[0, 2, 255]]
    with pytest.raises(DataError, match="unexpected mask values 3"):
        map_mask_values(np.array([[3]], np.uint8), identity)


def test_rgba_and_palette_images_become_rgb(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png").shape == (4, 5, 3)
    assert read_image(tmp_path / "a.png", channels=4)[0, 0].tolist() == [200, 0, 0, 128]
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match=r"bad\.png: unreadable image"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(DataError, match="image file not found"):
        read_image(tmp_path / "none.png")


def test_masks_to_coco_instances_match_connected_components(tmp_path):
    rng = np.random.default_rng(0)
    semantic = np.zeros((40, 50), np.uint8)
    semantic[5:15, 5:20] = 1
    semantic[25:35, 30:45] = 1
    semantic[20:30, 2:12] = 2
    semantic[0:3, 40:50] = 255
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / "img" / "x.png")
    Image.fromarray(semantic).save(tmp_path / "msk" / "x.png")
    table = value_table(None, 3, 255)
    coco = masks_to_coco(
        mask_pairs(tmp_path / "img", tmp_path / "msk"), table, ["bg", "a", "b"], 255, (0,), "rle"
    )
    # skimage's connected components (8-connectivity) are the reference.
    expected = sorted(
        int((connected_label(semantic == c, connectivity=2) == k).sum())
        for c in (1, 2)
        for k in range(1, connected_label(semantic == c, connectivity=2).max() + 1)
    )
    areas = sorted(a["area"] for a in coco["annotations"])
    assert areas == expected == [100, 150, 150]
    for ann in coco["annotations"]:
        assert segmentation_area(ann["segmentation"], 40, 50) == ann["area"]
    assert {a["category_id"] for a in coco["annotations"]} == {2, 3}
    assert [c["name"] for c in coco["categories"]] == ["a", "b"]
    assert len(semantic_to_instances(semantic.astype(np.int64), 255)) == 3
