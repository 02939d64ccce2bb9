"""detseg.data.transforms: boxes, masks and semantic maps move with the image; seeded determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from detseg.data.synthetic import SynthConfig, render_image
from detseg.data.transforms import (
    DetectionPipeline,
    PhotometricDistort,
    detection_eval_preset,
    detection_train_preset,
    loader_generator,
    seed_worker,
    segmentation_eval_preset,
    segmentation_train_preset,
)

CONFIG = SynthConfig(seed=11, image_size=(72, 96), objects_per_image=(3, 6), object_size=(16, 40))


def sample(index: int, channels: int = 3) -> tuple[tv_tensors.Image, dict]:
    s = render_image(CONFIG, "train", index)
    h, w = s.semantic.shape
    pixels = torch.from_numpy(s.image).permute(2, 0, 1)
    if channels == 1:
        pixels = pixels[:1]
    elif channels == 4:
        pixels = torch.cat([pixels, torch.full((1, h, w), 200, dtype=torch.uint8)])
    target = {
        "boxes": tv_tensors.BoundingBoxes(torch.from_numpy(s.boxes), format="XYXY", canvas_size=(h, w)),
        "labels": torch.from_numpy(s.labels),
        "masks": tv_tensors.Mask(torch.from_numpy(s.masks.astype(np.uint8))),
        "iscrowd": torch.zeros(len(s.labels), dtype=torch.int64),
        "area": torch.from_numpy(s.masks.sum((1, 2))).float(),
        "semantic": tv_tensors.Mask(torch.from_numpy(s.semantic).long()),
        "image_id": index + 1,
        "file_name": f"{index + 1:06d}.png",
    }
    return tv_tensors.Image(pixels.contiguous()), target


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight x1, y1, x2, y2 (exclusive ends) of each non-empty mask ``[N, H, W]``."""
    rows, cols = masks.any(2), masks.any(1)
    first = lambda a: a.float().argmax(1)  # noqa: E731
    last = lambda a: a.shape[1] - a.flip(1).float().argmax(1)  # noqa: E731
    return torch.stack([first(cols), first(rows), last(cols), last(rows)], 1).float()


def test_flip_and_resize_move_boxes_exactly_with_the_masks():
    image, target = sample(0)
    flip = DetectionPipeline([v2.RandomHorizontalFlip(p=1.0)])
    _, flipped = flip(image, target)
    boxes = target["boxes"]
    expected = torch.stack([96 - boxes[:, 2], boxes[:, 1], 96 - boxes[:, 0], boxes[:, 3]], 1)
    torch.testing.assert_close(flipped["boxes"].as_subclass(torch.Tensor), expected)
    torch.testing.assert_close(mask_boxes(flipped["masks"]), expected)

    for size in (300, (50, 130)):
        out_image, out = detection_eval_preset(size)(image, target)
        hw = (size, size) if isinstance(size, int) else size
        assert out_image.shape == (3, *hw) and out_image.dtype == torch.float32
        assert out["masks"].shape[1:] == hw and out["boxes"].canvas_size == hw
        # Nearest-neighbour masks and scaled boxes agree within a pixel.
        assert (mask_boxes(out["masks"]) - out["boxes"]).abs().max() <= 1.0
        # Both masks go through the same nearest resize: the semantic map stays their labelled union.
        union = (out["masks"].long() * (out["labels"][:, None, None] + 1)).sum(0)
        torch.testing.assert_close(out["semantic"].as_subclass(torch.Tensor), union)


def test_ssd_train_preset_keeps_every_target_entry_consistent():
    preset = detection_train_preset(size=120)
    counts = set()
    for seed in range(40):
        image, target = sample(seed % 4)
        torch.manual_seed(seed)
        out_image, out = preset(image, target)
        assert out_image.shape == (3, 120, 120) and out_image.dtype == torch.float32
        assert 0.0 <= out_image.min() and out_image.max() <= 1.0
        n = len(out["boxes"])
        counts.add((seed % 4, n))
        assert len(out["labels"]) == len(out["masks"]) == len(out["iscrowd"]) == len(out["area"]) == n
        assert out["image_id"] == seed % 4 + 1 and out["semantic"].shape == (120, 120)
        boxes = out["boxes"].as_subclass(torch.Tensor)
        assert ((boxes >= 0) & (boxes <= 120)).all()
        assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()
        # Cropped masks may not fill their clamped box, but never leave it (nearest resize: <= 1 px).
        tight = mask_boxes(out["masks"])
        assert (tight[:, :2] >= boxes[:, :2] - 1).all() and (tight[:, 2:] <= boxes[:, 2:] + 1).all()
        torch.testing.assert_close(out["area"], out["masks"].flatten(1).sum(1).float())
        # Labels of surviving objects are among the originals, in order.
        assert set(out["labels"].tolist()) <= set(target["labels"].tolist())
    # The IoU crop really removed objects in some draws (not every sample kept its full count).
    full = {i: len(sample(i)[1]["labels"]) for i in range(4)}
    assert any(n < full[i] for i, n in counts)


def test_presets_are_deterministic_under_torch_manual_seed():
    image, target = sample(1)
    preset = detection_train_preset(size=96)
    outs = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        outs.append(preset(image, target))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1]["boxes"], outs[1][1]["boxes"])
    assert not torch.equal(outs[0][0], outs[2][0])

    seg = segmentation_train_preset(64)
    seg_target = {"semantic": target["semantic"]}
    torch.manual_seed(3)
    a = seg(image, seg_target)
    torch.manual_seed(3)
    b = seg(image, seg_target)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["semantic"], b[1]["semantic"])


class _Samples(Dataset):
    def __init__(self, preset):
        self.preset = preset

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int):
        out_image, out = self.preset(*sample(index % 3))
        return out_image, out["boxes"].as_subclass(torch.Tensor), np.random.randint(1 << 30)


def test_dataloader_workers_are_seeded_from_the_loader_generator():
    def run(seed: int) -> list:
        loader = DataLoader(_Samples(detection_train_preset(size=64)), batch_size=2, shuffle=True,
                            num_workers=2, generator=loader_generator(seed), worker_init_fn=seed_worker,
                            collate_fn=list)
        return [item for batch in loader for item in batch]

    first, again, other = run(1), run(1), run(2)
    for (ia, ba, na), (ib, bb, nb) in zip(first, again, strict=True):
        assert torch.equal(ia, ib) and torch.equal(ba, bb) and na == nb
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(first, other, strict=True))
    # numpy is seeded per worker too (seed_worker), so its draws also differ between the two seeds.
    assert [x[2] for x in first] != [x[2] for x in other]


@pytest.mark.parametrize("channels", [1, 4])
def test_detection_preset_works_on_any_channel_count(channels):
    image, target = sample(2, channels)
    torch.manual_seed(0)
    out_image, out = detection_train_preset(size=80)(image, target)
    assert out_image.shape == (channels, 80, 80) and len(out["boxes"]) == len(out["masks"])


def test_photometric_distort_leaves_alpha_alone():
    image, _ = sample(2, channels=4)
    torch.manual_seed(0)
    out = PhotometricDistort(p=1.0)(image)
    assert out.shape == image.shape and isinstance(out, tv_tensors.Image)
    assert torch.equal(out[3], image[3])
    assert not torch.equal(out[:3], image[:3])


def test_segmentation_preset_keeps_image_and_mask_aligned():
    # Image channel 0 encodes the class (40 * class): after any scale, flip and crop, interior pixels
    # must still carry the code of the class the mask says.
    _, target = sample(3)
    semantic = target["semantic"]
    image = tv_tensors.Image((semantic * 40).to(torch.uint8).expand(3, -1, -1).clone())
    preset = segmentation_train_preset(crop_size=(64, 80), scale_range=(0.7, 1.6))
    for seed in range(10):
        torch.manual_seed(seed)
        out_image, out = preset(image, {"semantic": semantic})
        mask = out["semantic"].as_subclass(torch.Tensor)
        assert out_image.shape == (3, 64, 80) and mask.shape == (64, 80) and mask.dtype == torch.int64
        code = torch.round(out_image[0] * 255 / 40).long()
        valid = mask != 255
        # Bilinear blending mixes codes only near class borders; away from them they agree exactly.
        m = mask.float()[None, None]
        uniform = (F.max_pool2d(m, 5, 1, 2) == -F.max_pool2d(-m, 5, 1, 2))[0, 0] & valid
        uniform[:2], uniform[-2:], uniform[:, :2], uniform[:, -2:] = False, False, False, False  # crop edge
        assert uniform.sum() > 0.5 * valid.sum() and torch.equal(code[uniform], mask[uniform])
        assert (code[valid] == mask[valid]).float().mean() > 0.93


def test_segmentation_preset_pads_the_mask_with_ignore_index():
    image, target = sample(0)
    preset = segmentation_train_preset(100, scale_range=(0.5, 0.5), ignore_index=254, hflip_prob=0.0)
    out_image, out = preset(image, {"semantic": target["semantic"]})
    mask = out["semantic"]
    # 72 x 96 at half scale is 36 x 48: the rest of the 100 x 100 crop is padding.
    assert (mask != 254).sum() == 36 * 48
    assert (out_image[:, mask == 254] == 0).all()

    flip = segmentation_train_preset(crop_size=(72, 96), scale_range=(1.0, 1.0), hflip_prob=1.0)
    out_image, out = flip(image, {"semantic": target["semantic"]})
    assert torch.equal(out["semantic"], target["semantic"].flip(-1))
    torch.testing.assert_close(out_image.as_subclass(torch.Tensor), image.flip(-1).float() / 255)


def test_segmentation_eval_preset_resizes_mask_with_nearest():
    image, target = sample(1)
    out_image, out = segmentation_eval_preset(size=(36, 48))(image, {"semantic": target["semantic"]})
    assert out_image.shape == (3, 36, 48) and out_image.dtype == torch.float32
    assert set(out["semantic"].unique().tolist()) <= set(target["semantic"].unique().tolist())
    torch.testing.assert_close(out["semantic"].as_subclass(torch.Tensor), target["semantic"][1::2, 1::2])


def test_segmentation_preset_vertical_flip_and_rotation_keep_image_and_mask_aligned():
    image, target = sample(3)
    semantic = target["semantic"]
    flip = segmentation_train_preset((72, 96), scale_range=(1.0, 1.0), hflip_prob=0.0, vflip_prob=1.0)
    out_image, out = flip(image, {"semantic": semantic})
    assert torch.equal(out["semantic"], semantic.flip(-2))
    torch.testing.assert_close(out_image.as_subclass(torch.Tensor), image.flip(-2).float() / 255)

    coded = tv_tensors.Image((semantic * 40).to(torch.uint8).expand(3, -1, -1).clone())
    turn = segmentation_train_preset((72, 96), scale_range=(1.0, 1.0), hflip_prob=0.0, rotate=40)
    for seed in range(5):
        torch.manual_seed(seed)
        out_image, out = turn(coded, {"semantic": semantic})
        mask = out["semantic"].as_subclass(torch.Tensor)
        assert (mask == 255).any()  # the corners a turn brings in are ignored
        assert (mask[0, 0] == 255) or (mask[0, -1] == 255) or (mask[-1, 0] == 255)
        code = torch.round(out_image[0] * 255 / 40).long()
        valid = mask != 255
        assert (code[valid] == mask[valid]).float().mean() > 0.9  # turned together


def test_detection_preset_zoom_out_can_be_switched_off():
    def zooms(preset: DetectionPipeline) -> bool:
        return any(isinstance(t, v2.RandomZoomOut) for t in preset.transforms.transforms)

    assert zooms(detection_train_preset(64)) and not zooms(detection_train_preset(64, zoom_out_range=(1, 1)))
    image, target = sample(4)
    torch.manual_seed(0)
    out_image, out = detection_train_preset(64, zoom_out_range=(1, 1), photometric=False)(image, target)
    assert out_image.shape == (3, 64, 64) and len(out["boxes"]) > 0


def test_detection_preset_without_iou_crop_keeps_every_box_in_place():
    assert any(isinstance(t, v2.RandomIoUCrop) for t in detection_train_preset(64).transforms.transforms)
    preset = detection_train_preset(
        64, zoom_out_range=(1, 1), photometric=False, hflip_prob=0.0, iou_crop=False
    )
    assert not any(isinstance(t, v2.RandomIoUCrop) for t in preset.transforms.transforms)
    image, target = sample(4)
    h, w = image.shape[-2:]
    for seed in range(5):  # nothing random is left: every box comes back, scaled to 64 x 64
        torch.manual_seed(seed)
        _, out = preset(image, target)
        scale = torch.tensor([64 / w, 64 / h, 64 / w, 64 / h])
        torch.testing.assert_close(out["boxes"].as_subclass(torch.Tensor), target["boxes"] * scale)
        assert torch.equal(out["labels"], target["labels"])


def test_detection_vflip_moves_boxes_with_the_image():
    image, target = sample(4)
    h, w = image.shape[-2:]
    preset = detection_train_preset(
        (h, w), zoom_out_range=(1, 1), photometric=False, hflip_prob=0.0, iou_crop=False, vflip_prob=1.0
    )
    out_image, out = preset(image, target)
    torch.testing.assert_close(out_image, image.flip(-2).float() / 255)
    x1, y1, x2, y2 = target["boxes"].unbind(-1)
    flipped = torch.stack([x1, h - y2, x2, h - y1], -1)
    torch.testing.assert_close(out["boxes"].as_subclass(torch.Tensor), flipped)
    default = detection_train_preset(64).transforms.transforms
    assert not any(isinstance(t, v2.RandomVerticalFlip) for t in default)


def test_segmentation_color_jitter_changes_exposure_only():
    image, target = sample(2, channels=1)
    h, w = image.shape[-2:]
    preset = segmentation_train_preset((h, w), scale_range=(1.0, 1.0), hflip_prob=0.0, color_jitter=0.5)
    changed = 0
    for seed in range(4):
        torch.manual_seed(seed)
        out_image, out = preset(image, {"semantic": target["semantic"]})
        assert torch.equal(out["semantic"], target["semantic"])  # the mask is untouched
        assert out_image.shape == (1, h, w) and out_image.dtype == torch.float32
        before, after = image.flatten().float(), out_image.flatten()
        order = before.argsort()
        assert (after[order].diff() >= -1e-6).all()  # brightness and contrast keep the order of grey levels
        changed += not torch.allclose(after, before / 255)
    assert changed == 4
    plain = segmentation_train_preset((h, w), scale_range=(1.0, 1.0), hflip_prob=0.0)
    assert torch.allclose(plain(image, {"semantic": target["semantic"]})[0], image.float() / 255)


def test_elastic_grid_moves_image_and_mask_together_and_smoothly():
    from detseg.data.transforms import ElasticGrid

    _, target = sample(3)
    semantic = target["semantic"]
    coded = tv_tensors.Image((semantic * 40).to(torch.uint8).expand(3, -1, -1).clone())
    torch.manual_seed(0)
    out_image, out_mask = ElasticGrid(std=6.0)(coded, tv_tensors.Mask(semantic))
    assert out_image.dtype == torch.uint8 and out_mask.shape == semantic.shape
    assert not torch.equal(out_mask, tv_tensors.Mask(semantic))  # it did deform
    code = torch.round(out_image[0].float() / 40).long()
    assert (code == out_mask.long()).float().mean() > 0.97  # the same displacement for both
    assert set(out_mask.unique().tolist()) <= set(semantic.unique().tolist())  # nearest: no new labels
    # displacements of std 1e-4 px leave the image as it was (bilinear at integer positions)
    same_image, same_mask = ElasticGrid(std=1e-4)(coded, tv_tensors.Mask(semantic))
    assert torch.equal(same_mask, tv_tensors.Mask(semantic)) and torch.equal(same_image, coded)
    with pytest.raises(ValueError, match="std > 0"):
        ElasticGrid(std=0)
