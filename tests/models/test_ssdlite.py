"""SSDLite on MobileNetV3-Large / MobileNetV2: same architecture as torchvision's, learning, contract."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.detection import ssdlite320_mobilenet_v3_large as tv_ssdlite

from detseg.models.ssdlite import ssdlite320_mobilenet_v2, ssdlite320_mobilenet_v3_large


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_v3_is_torchvisions_architecture_with_one_background_class():
    ours = ssdlite320_mobilenet_v3_large(num_classes=4)
    theirs = tv_ssdlite(weights=None, weights_backbone=None, num_classes=5)
    assert n_params(ours) == n_params(theirs)
    assert [k for k in ours.state_dict()] == [k for k in theirs.state_dict()]


def test_v2_feature_maps_follow_the_mobilenetv2_paper():
    model = ssdlite320_mobilenet_v2(num_classes=1).eval()
    with torch.no_grad():
        maps = model.backbone(torch.zeros(1, 3, 320, 320))
    # Expansion of the stride-16 block (576 ch), the last layer (1280 ch), then four extra blocks.
    assert [tuple(m.shape[1:]) for m in maps.values()] == [
        (576, 20, 20), (1280, 10, 10), (512, 5, 5), (256, 3, 3), (256, 2, 2), (128, 1, 1)
    ]


def scene(seed: int) -> tuple[torch.Tensor, dict]:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(3, 160, 160, generator=g) * 0.2
    image[0, 20:80, 30:110] = 1.0  # a red box of class 0
    image[2, 100:150, 90:140] = 1.0  # a blue box of class 1
    boxes = torch.tensor([[30.0, 20, 110, 80], [90, 100, 140, 150]])
    target = {"boxes": boxes, "labels": torch.tensor([0, 1])}
    return image, target


@pytest.mark.parametrize("builder", [ssdlite320_mobilenet_v3_large, ssdlite320_mobilenet_v2])
def test_ssdlite_learns_two_boxes_and_answers_in_the_contract(builder):
    torch.manual_seed(0)
    model = builder(num_classes=2, size=160)
    batch = [scene(0), scene(1)]
    images, targets = [b[0] for b in batch], [b[1] for b in batch]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-2:]) < 0.6 * sum(losses[:2]), losses
    model.eval()
    with torch.no_grad():
        dets = model(images)
    assert len(dets) == 2
    for det in dets:
        assert set(det) == {"boxes", "labels", "scores"}
        assert det["labels"].dtype == torch.int64 and ((det["labels"] >= 0) & (det["labels"] < 2)).all()
        assert (det["boxes"] >= 0).all() and (det["boxes"] <= 160).all()
        assert (det["scores"][:-1] >= det["scores"][1:]).all()  # best first


def test_ssdlite_refuses_a_training_batch_of_one_image_clearly():
    model = ssdlite320_mobilenet_v3_large(num_classes=2, size=160)
    image, target = scene(0)
    with pytest.raises(ValueError, match="at least 2 images"):
        model([image], [target])


def test_default_box_scales_can_be_moved_for_small_objects():
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator

    model = ssdlite320_mobilenet_v3_large(num_classes=2, size=128, min_scale=0.1, max_scale=0.6)
    reference = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.1, max_ratio=0.6)
    assert model.anchor_generator.scales == pytest.approx(reference.scales)
    assert model.anchor_generator.scales[0] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="min_scale < max_scale"):
        ssdlite320_mobilenet_v3_large(num_classes=2, min_scale=0.5, max_scale=0.3)
