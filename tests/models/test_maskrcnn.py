"""Mask R-CNN: torchvision's architecture behind detseg's contract, masks in and out, bad masks handled,
the box branch alone, transfer (freeze, new head, extended head), and a loss that really falls."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision

from detseg.data.errors import DataError
from detseg.data.synthetic import SynthConfig, render_image
from detseg.models.maskrcnn import binary_masks
from detseg.models.zoo import create_model, list_models, model_info

# A Mask R-CNN small enough for CPU tests: MobileNetV3 at half width, 32-channel FPN and mask head.
TINY = dict(size=96, width_mult=0.5, fpn_channels=32, mask_channels=32, representation_size=128,
            anchor_sizes=[8, 16, 32, 64, 128], rpn_post_nms_top_n_train=200, box_batch_size_per_image=64)


def tiny(num_classes: int = 3, seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("maskrcnn_mobilenet_v3_large_fpn", num_classes=num_classes, **{**TINY, **kwargs})


def _masks(height: int, width: int, *boxes) -> torch.Tensor:
    out = torch.zeros(len(boxes), height, width, dtype=torch.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        out[k, y1:y2, x1:x2] = 1
    return out


def test_registered_as_detectors_that_predict_masks():
    names = list_models("maskrcnn_*")
    assert names == ["maskrcnn_mobilenet_v3_large_fpn", "maskrcnn_resnet50_fpn"]
    for name in names:
        assert model_info(name).task == "detect" and "masks" in model_info(name).extra["outputs"]


def test_resnet50_fpn_is_torchvisions_mask_rcnn():
    # detseg's state dict loads strictly into torchvision's model (the COCO weights' layout), and the two
    # give the same detections, labels shifted past torchvision's background.
    torch.manual_seed(0)
    ours = create_model("maskrcnn_resnet50_fpn", num_classes=3, min_size=64, max_size=64).eval()
    theirs = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=4, min_size=64, max_size=64
    ).eval()
    theirs.load_state_dict(ours.state_dict())
    image = torch.rand(3, 64, 56)
    with torch.no_grad():
        (a,), (b,) = ours([image]), theirs([image])
    assert len(b["boxes"]) > 0  # a real comparison
    torch.testing.assert_close(a["boxes"], b["boxes"])
    torch.testing.assert_close(a["scores"], b["scores"])
    assert torch.equal(a["labels"], b["labels"] - 1)
    torch.testing.assert_close(a["masks"], b["masks"])
    n = len(a["boxes"])
    assert a["masks"].shape == (n, 1, 64, 56) and 0 <= a["masks"].min() and a["masks"].max() <= 1
    assert binary_masks(a["masks"]).shape == (n, 64, 56) and binary_masks(a["masks"]).dtype == torch.uint8


def test_awkward_masks_give_finite_losses_and_bad_ones_are_refused():
    model = tiny()
    images = [torch.rand(3, 96, 96), torch.rand(3, 80, 96)]
    targets = [
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
         "masks": torch.zeros(0, 96, 96, dtype=torch.uint8)},  # no objects
        {"boxes": torch.tensor([[10.0, 10, 40, 40], [50, 20, 90, 60], [30, 30, 30, 60]]),
         "labels": torch.tensor([0, 2, 1]),
         # an empty mask, a mask outside its box, and a zero-width box (dropped with its mask)
         "masks": _masks(80, 96, (0, 0, 0, 0), (0, 60, 10, 80), (30, 30, 31, 60))},
    ]
    with pytest.warns(UserWarning, match="dropped 1 box"):
        losses = model(images, targets)
    assert {"loss_mask", "loss_classifier"} <= set(losses)
    assert all(math.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)

    no_masks = [{"boxes": torch.tensor([[10.0, 10, 40, 40]]), "labels": torch.tensor([0])}]
    with pytest.raises(DataError, match=r"targets\[0\]: has no 'masks'.*train_boxes_only"):
        model(images[:1], no_masks)
    wrong = [dict(no_masks[0], masks=torch.zeros(1, 50, 50, dtype=torch.uint8))]
    with pytest.raises(DataError, match=r"masks must be \[N, H, W\] = \[1, 96, 96\]"):
        model(images[:1], wrong)


def test_box_branch_alone_trains_without_masks():
    model = tiny()
    model.train_boxes_only()
    assert not any(p.requires_grad for p in model.roi_heads.mask_predictor.parameters())
    targets = [{"boxes": torch.tensor([[10.0, 10, 40, 40]]), "labels": torch.tensor([1])}] * 2
    losses = model([torch.rand(3, 96, 96), torch.rand(3, 96, 96)], targets)
    assert "loss_mask" not in losses and "loss_classifier" in losses
    sum(losses.values()).backward()
    assert all(p.grad is None for p in model.roi_heads.mask_head.parameters())
    assert model.roi_heads.mask_roi_pool is not None  # restored: evaluation still predicts masks
    model.eval()
    with torch.no_grad():
        (out,) = model([torch.rand(3, 96, 96)])
    assert out["masks"].shape[1:] == (1, 96, 96)


def test_freeze_new_head_and_extended_head():
    from detseg.transfer.freeze import freeze
    from detseg.transfer.heads import class_keys, extend_head, load_replacing_head

    keys = class_keys("maskrcnn_mobilenet_v3_large_fpn", {**TINY, "num_classes": 2})
    assert {"roi_heads.mask_predictor.mask_fcn_logits.weight", "roi_heads.box_predictor.cls_score.weight",
            "roi_heads.box_predictor.bbox_pred.weight"} <= keys
    model = tiny(3)
    report = freeze(model, "backbone")
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters() if n.startswith("backbone.body.")}
    assert report.parameters == len(frozen)

    old = tiny(2, seed=1).eval()
    replaced = load_replacing_head(tiny(3, seed=2), old.state_dict(), keys, "old.pt", replace=True)
    assert set(replaced.replaced) == keys

    model = tiny(3, seed=2).eval()
    extend_head(model, old.state_dict(), keys, ["a", "b"], ["a", "b", "c"], "old.pt")
    # The old classes' masks (and background) are the old model's: same rows of the mask logits.
    w_old = old.roi_heads.mask_predictor.mask_fcn_logits.weight
    torch.testing.assert_close(model.roi_heads.mask_predictor.mask_fcn_logits.weight[:3], w_old)


def _shapes(n: int, seed: int = 0):
    config = SynthConfig(seed=seed, image_size=96, object_size=(24, 44), objects_per_image=(1, 3))
    images, targets = [], []
    for i in range(n):
        sample = render_image(config, "train", i)
        images.append(torch.from_numpy(np.ascontiguousarray(sample.image)).permute(2, 0, 1).float() / 255)
        targets.append({"boxes": torch.as_tensor(np.asarray(sample.boxes), dtype=torch.float32),
                        "labels": torch.as_tensor(np.asarray(sample.labels), dtype=torch.int64),
                        "masks": torch.as_tensor(np.asarray(sample.masks), dtype=torch.uint8)})
    return images, targets


def test_tiny_mask_rcnn_loss_falls_on_synthetic_shapes():
    images, targets = _shapes(4)
    model = tiny(3).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    history = []
    for _ in range(20):
        losses = model(images, targets)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        history.append((loss.item(), losses["loss_mask"].item()))
    # Steps 3-5, not 1: the first step's mask loss mostly measures the random initialisation.
    first, last = np.mean(history[2:5], axis=0), np.mean(history[-3:], axis=0)
    assert np.isfinite(history).all()
    assert last[0] < 0.6 * first[0], history  # the total loss
    assert last[1] < 0.8 * first[1], history  # the mask branch learns too
