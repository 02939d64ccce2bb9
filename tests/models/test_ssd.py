"""SSD300/SSD512 on VGG-16: default boxes, matching and multibox loss against torchvision; learning."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torchvision.models.detection.ssd
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection import ssd300_vgg16 as tv_ssd300_vgg16
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_iou

from detseg.models.ssd import SSDDetector, multibox_loss, ssd300_vgg16, ssd512_vgg16, vgg16_features


def default_boxes(model, size: int) -> tuple[list[int], torch.Tensor]:
    """The feature-map sides of the backbone (computed on the meta device: shapes only) and the boxes."""
    backbone = copy.deepcopy(model.backbone).to("meta")
    shapes = [f.shape for f in backbone(torch.zeros(1, 3, size, size, device="meta")).values()]
    features = [torch.zeros(shape) for shape in shapes]
    x = torch.zeros(1, 3, size, size)
    return [s[-1] for s in shapes], model.anchor_generator(ImageList(x, [(size, size)]), features)[0]


@pytest.fixture(scope="module")
def ours300() -> SSDDetector:
    torch.manual_seed(0)
    return ssd300_vgg16(num_classes=2)


@pytest.fixture(scope="module")
def theirs300():
    torch.manual_seed(0)
    # torchvision's builder, minus the time to initialise VGG's unused 120M-parameter classifier.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torchvision.models.detection.ssd, "vgg16", lambda **kwargs: vgg16_features())
        return tv_ssd300_vgg16(weights=None, weights_backbone=None, num_classes=3)


def test_ssd300_default_boxes_equal_torchvision(ours300, theirs300):
    sizes, ours = default_boxes(ours300, 300)
    their_sizes, theirs = default_boxes(theirs300, 300)
    assert sizes == their_sizes == [38, 19, 10, 5, 3, 1]  # conv4_3, fc7, conv8_2 .. conv11_2 (paper, Fig. 2)
    assert ours.shape == (8732, 4)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_ssd300_has_torchvisions_layers_so_its_coco_weights_fit(ours300, theirs300):
    ours, theirs = ours300.state_dict(), theirs300.state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in ours)
    assert sum(p.numel() for p in ours300.parameters()) == sum(p.numel() for p in theirs300.parameters())


def test_ssd512_default_boxes_follow_the_paper():
    model = ssd512_vgg16(num_classes=2)
    sizes, boxes = default_boxes(model, 512)
    assert sizes == [64, 32, 16, 8, 4, 2, 1]
    assert boxes.shape == (24564, 4)  # 64²·4 + (32² + 16² + 8² + 4²)·6 + (2² + 1)·4
    # conv4_3's first location: centre step/2 = 4 px; scale 0.07, sqrt(0.07·0.15), then ratios 2 and 1/2.
    s, s_prime = 0.07 * 512, math.sqrt(0.07 * 0.15) * 512
    w2, h2 = s * math.sqrt(2), s / math.sqrt(2)
    expected = torch.tensor([
        [4 - s / 2, 4 - s / 2, 4 + s / 2, 4 + s / 2],
        [4 - s_prime / 2, 4 - s_prime / 2, 4 + s_prime / 2, 4 + s_prime / 2],
        [4 - w2 / 2, 4 - h2 / 2, 4 + w2 / 2, 4 + h2 / 2],
        [4 - h2 / 2, 4 - w2 / 2, 4 + h2 / 2, 4 + w2 / 2],
    ])
    torch.testing.assert_close(boxes[:4], expected, atol=1e-3, rtol=0)


def test_matching_keeps_each_ground_truths_best_default_box():
    anchors = torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40], [0, 0, 30, 30]])
    gt = torch.tensor([[0.0, 0, 10, 10], [18, 18, 60, 60]])  # the second overlaps anchor 1 by IoU 0.23
    matched = det_utils.SSDMatcher(0.5)(box_iou(gt, anchors))
    assert box_iou(gt, anchors)[1].max() < 0.5
    assert matched.tolist() == [0, 1, -1]


def test_multibox_loss_equals_torchvision(ours300, theirs300):
    torch.manual_seed(1)
    _, anchors = default_boxes(ours300, 300)
    targets = [
        {"boxes": torch.tensor([[10.0, 20, 120, 200], [150, 150, 290, 260]]), "labels": torch.tensor([1, 2])},
        {"boxes": torch.tensor([[50.0, 60, 90, 80]]), "labels": torch.tensor([2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # no object: no loss
    ]
    matcher = det_utils.SSDMatcher(0.5)
    matched = [matcher(box_iou(t["boxes"], anchors)) if len(t["boxes"]) else torch.full((8732,), -1)
               for t in targets]
    head = {"cls_logits": torch.randn(3, 8732, 3), "bbox_regression": torch.randn(3, 8732, 4)}
    ours = ours300.compute_loss(targets, head, [anchors] * 3, matched)
    theirs = theirs300.compute_loss(targets, head, [anchors] * 3, matched)
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-5)


def test_hard_negative_mining_keeps_three_negatives_per_positive():
    # 1 positive, 5 negatives with known losses: the three hardest negatives count.
    logits = torch.zeros(1, 6, 2)
    logits[0, 1:, 1] = torch.tensor([5.0, 1.0, 4.0, 0.0, 3.0])  # background CE grows with the class-1 logit
    targets = torch.tensor([[1, 0, 0, 0, 0, 0]])
    loss = multibox_loss(logits, torch.zeros(1, 6, 4), targets, torch.zeros(1, 6, 4))
    ce = torch.nn.functional.cross_entropy(logits[0], targets[0], reduction="none")
    assert loss["classification"].item() == pytest.approx((ce[0] + ce[1] + ce[3] + ce[5]).item(), rel=1e-6)
    kept = multibox_loss(logits, torch.zeros(1, 6, 4), torch.zeros(1, 6, dtype=torch.int64),
                         torch.zeros(1, 6, 4), min_negatives=2)
    assert kept["classification"].item() == pytest.approx((ce[1] + ce[3]).item(), rel=1e-6)


def test_ssd300_learns_a_box_and_answers_in_the_contract():
    torch.manual_seed(0)
    model = ssd300_vgg16(num_classes=2, score_thresh=0.0, trainable_backbone_layers=1)
    image = torch.full((3, 300, 300), 0.2)
    image[:, 60:200, 90:240] = 0.9
    targets = [{"boxes": torch.tensor([[90.0, 60, 240, 200]]), "labels": torch.tensor([1])}]
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-4)
    losses = []
    for _ in range(3):
        loss = sum(model([image], targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0], losses
    model.eval()
    with torch.no_grad():
        (det,) = model([image])
    assert set(det) == {"boxes", "labels", "scores"}
    assert det["boxes"].shape[1] == 4 and det["labels"].dtype == torch.int64
    assert 0 < len(det["labels"]) <= 200 and ((det["labels"] >= 0) & (det["labels"] < 2)).all()
