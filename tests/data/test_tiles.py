"""Training on tiles (detseg.data.tiles): boxes and masks clipped into each tile, objects cut below the
visible fraction dropped; and detseg synth's large images with many small objects."""

import json

import pytest
import torch
from torchvision import tv_tensors

from detseg.data.tiles import TiledDataset, crop_detection_sample


def _sample(with_masks=True):
    image = tv_tensors.Image(torch.arange(3 * 100 * 120, dtype=torch.float32).reshape(3, 100, 120))
    boxes = torch.tensor([[10.0, 10, 30, 30], [50, 40, 90, 60], [0, 70, 20, 100]])
    masks = torch.zeros(3, 100, 120, dtype=torch.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
        masks[k, y1:y2, x1:x2] = 1
    masks[1, 40:60, 50:60] = 0  # object 1: only x 60..90 of its box is the object (600 px)
    target = {"boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(100, 120)),
              "labels": torch.tensor([0, 1, 2]), "iscrowd": torch.zeros(3, dtype=torch.int64),
              "area": torch.tensor([400.0, 600, 600]), "image_id": 7, "file_name": "a.png"}
    if with_masks:
        target["masks"] = tv_tensors.Mask(masks)
    return image, target


def test_a_tile_clips_boxes_and_masks_and_drops_objects_mostly_outside():
    image, target = _sample()
    # Window x 0..70, y 0..64: object 0 whole; object 1's mask x 60..70 of 60..90, y 40..60 -> 1/3 of it
    # (its box is clipped to half): dropped at 0.5, kept at 0.3; object 2 starts at y 70: outside.
    crop, out = crop_detection_sample(image, target, (0, 0, 70, 64), min_visibility=0.5)
    assert torch.equal(crop, image[:, :64, :70]) and isinstance(crop, tv_tensors.Image)
    assert out["boxes"].tolist() == [[10, 10, 30, 30]] and out["boxes"].canvas_size == (64, 70)
    assert out["labels"].tolist() == [0] and out["masks"].shape == (1, 64, 70)
    assert out["image_id"] == 7 and out["area"].tolist() == [400.0]
    crop, out = crop_detection_sample(image, target, (0, 0, 70, 64), min_visibility=0.3)
    assert out["boxes"].tolist() == [[10, 10, 30, 30], [50, 40, 70, 60]] and out["labels"].tolist() == [0, 1]
    assert torch.equal(out["masks"][1], target["masks"][1, :64, :70])
    assert out["area"].tolist() == pytest.approx([400.0, 200.0])
    # Shifted: window x 40..120, y 30..94 -> object 1 whole at 10..50, 10..30; object 2 not in it.
    _, out = crop_detection_sample(image, target, (40, 30, 80, 64))
    assert out["boxes"].tolist() == [[10, 10, 50, 30]] and out["labels"].tolist() == [1]
    assert int(out["masks"][0].sum()) == 600


def test_without_masks_the_box_area_decides():
    image, target = _sample(with_masks=False)
    _, out = crop_detection_sample(image, target, (0, 0, 70, 64))  # object 1's box: half inside -> kept
    assert out["boxes"].tolist() == [[10, 10, 30, 30], [50, 40, 70, 60]] and "masks" not in out


class _Raw:
    def __init__(self):
        self.transforms = "preset"
        self.images = [{"height": 100, "width": 120}]
        self.classes = ["a", "b", "c"]

    def __len__(self):
        return 1

    def __getitem__(self, index):
        assert self.transforms is None  # the tiles take the transforms over
        return _sample()


def test_tiled_dataset_has_one_sample_per_tile_and_the_data_sets_attributes():
    seen = []
    raw = _Raw()
    tiles = TiledDataset(raw, 64, 0.25)
    tiles.transforms = lambda image, target: (seen.append(image.shape) or image, target)
    # starts: y [0, 36], x [0, 48, 56] -> 6 tiles
    assert len(tiles) == 6 and tiles.classes == ["a", "b", "c"]
    assert [w for _, w in tiles.windows][:3] == [(0, 0, 64, 64), (48, 0, 64, 64), (56, 0, 64, 64)]
    image, target = tiles[0]
    assert seen == [(3, 64, 64)] and target["labels"].tolist() == [0]
    with pytest.raises(ValueError, match="--tile-overlap must be in"):
        TiledDataset(_Raw(), 64, 1.5)


def test_synth_writes_large_images_with_many_small_objects(tmp_path):
    from detseg.cli import main

    out = tmp_path / "big"
    args = ["synth", str(out), "--size", "256", "--min-object", "8", "--max-object", "16", "--objects", "30",
            "--num-train", "1", "--num-val", "0", "--no-occlusion"]
    assert main(args) == 0
    coco = json.loads((out / "annotations" / "train.json").read_text())
    assert coco["images"][0]["width"] == 256 and 20 <= len(coco["annotations"]) <= 30
    assert all(max(a["bbox"][2:]) <= 17 for a in coco["annotations"])
    assert (out / "detect.yaml").is_file()
