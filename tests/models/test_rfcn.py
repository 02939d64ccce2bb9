"""R-FCN: position-sensitive pooling and voting by hand, the loss against torchvision's, learning."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.detection.roi_heads import fastrcnn_loss

from detseg.models.rfcn import ps_roi_vote, rfcn_loss, rfcn_resnet18, rfcn_resnet50


def vote_by_loop(maps: torch.Tensor, box: list[int], k: int, scale: float) -> torch.Tensor:
    """R-FCN eq. (1)-(2) written out: bin (i, j) of output d averages map (d, i, j) over its pixels,
    then the k*k bins vote by averaging. ``box`` maps to whole pixels with bins of equal integer size."""
    x1, y1, x2, y2 = (round(v * scale) for v in box)
    bw, bh = (x2 - x1) // k, (y2 - y1) // k
    depth = maps.shape[0] // (k * k)
    out = torch.zeros(depth)
    for d in range(depth):
        for i in range(k):
            for j in range(k):
                channel = (d * k + i) * k + j
                region = maps[channel, y1 + i * bh: y1 + (i + 1) * bh, x1 + j * bw: x1 + (j + 1) * bw]
                out[d] += region.mean() / (k * k)
    return out


@pytest.mark.parametrize("mode", ["pool", "align"])
def test_ps_roi_pooling_and_voting_agree_with_a_direct_computation(mode):
    torch.manual_seed(0)
    k, depth = 3, 2
    maps = torch.randn(1, k * k * depth, 12, 12)
    # Feature stride 2: image boxes [2, 4, 14, 16] and [8, 2, 20, 14] cover 6x6 feature pixels, bins of 2x2.
    boxes = [[2, 4, 14, 16], [8, 2, 20, 14]]
    got = ps_roi_vote(maps, [torch.tensor(boxes, dtype=torch.float32)], k, 0.5, mode=mode, sampling_ratio=2)
    expected = torch.stack([vote_by_loop(maps[0], b, k, 0.5) for b in boxes])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_rfcn_loss_without_ohem_equals_torchvision_fastrcnn_loss():
    torch.manual_seed(0)
    logits, offsets = torch.randn(10, 3), torch.randn(10, 4)
    labels = [torch.tensor([0, 1, 2, 0, 0, 1]), torch.tensor([2, 0, 0, 0])]
    targets = [torch.randn(6, 4), torch.randn(4, 4)]
    ours = rfcn_loss(logits, offsets, labels, targets)
    # torchvision's loss with the class-agnostic offsets repeated for every class.
    cls, box = fastrcnn_loss(logits, offsets.repeat(1, 3), labels, targets)
    torch.testing.assert_close(ours["loss_classifier"], cls)
    torch.testing.assert_close(ours["loss_box_reg"], box)


def test_ohem_keeps_the_hardest_rois_of_each_image():
    logits = torch.tensor([[4.0, 0], [0, 4], [0, 0], [2, 0], [0, 3]])  # CE vs label 0 grows down the list
    labels = [torch.zeros(3, dtype=torch.int64), torch.zeros(2, dtype=torch.int64)]
    targets = [torch.zeros(3, 4), torch.zeros(2, 4)]
    ce = torch.nn.functional.cross_entropy(logits, torch.zeros(5, dtype=torch.int64), reduction="none")
    got = rfcn_loss(logits, torch.zeros(5, 4), labels, targets, ohem_rois=1)
    # The hardest of image 0 is RoI 1, of image 1 RoI 4.
    assert got["loss_classifier"].item() == pytest.approx(((ce[1] + ce[4]) / 2).item())


@pytest.mark.parametrize(("builder", "c4_channels", "reduced"),
                         [(rfcn_resnet50, 1024, 1024), (rfcn_resnet18, 256, 256)])
def test_backbone_keeps_stride_16_with_a_dilated_conv5(builder, c4_channels, reduced):
    model = builder(num_classes=1)
    with torch.no_grad():
        c4, c5 = model.backbone.eval()(torch.zeros(1, 3, 128, 96))
    assert c4.shape == (1, c4_channels, 8, 6) and c5.shape == (1, reduced, 8, 6)
    assert model.roi_heads.box_predictor.cls_maps.out_channels == 7 * 7 * 2  # k² (C + 1)
    assert model.roi_heads.box_predictor.box_maps.out_channels == 7 * 7 * 4  # class-agnostic


def test_rfcn_learns_a_box_and_answers_in_the_contract():
    torch.manual_seed(0)
    model = rfcn_resnet50(num_classes=2, min_size=128, max_size=128, trainable_backbone_layers=2)
    image = torch.full((3, 128, 128), 0.1)
    image[:, 30:90, 40:100] = 0.9
    targets = [{"boxes": torch.tensor([[40.0, 30, 100, 90]]), "labels": torch.tensor([1])}]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    losses = []
    for _ in range(5):
        loss_dict = model([image], targets)
        loss = sum(loss_dict.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert set(loss_dict) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.7 * losses[0], losses
    model.eval()
    with torch.no_grad():
        (det,) = model([image])
    assert set(det) == {"boxes", "labels", "scores"}
    assert 0 < len(det["labels"]) <= 100
    assert ((det["labels"] >= 0) & (det["labels"] < 2)).all()
    assert (det["boxes"] >= 0).all() and (det["boxes"] <= 128).all()
