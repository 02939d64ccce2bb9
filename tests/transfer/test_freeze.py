"""detseg.transfer.freeze and the trainer's --lr-backbone groups, checked against the known structure of
each backbone family (ResNet stem + layer1..4, VGG16's 2-2-3-3-3 conv blocks, MobileNets' stride-2 blocks)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from detseg.engine.schedules import build_scheduler
from detseg.engine.trainer import TrainConfig, build_optimizer
from detseg.models.zoo import create_model
from detseg.transfer.freeze import backbone_parameters, backbone_stages, freeze, is_kept_in_eval

# Where each family's classification network lives (written out by hand, not taken from freeze.py).
BACKBONE_PREFIXES = {
    "unet": ("encoder.",),
    "unet_mobilenet_v2": ("encoder.",),
    "deeplabv3_mobilenet_v3_large": ("encoder.",),
    "fcn32s_vgg16": ("encoder.",),
    "mobilenet_v3_large_classifier": ("encoder.",),  # its pre-logit 960 -> 1280 layer too
    "resnet18_classifier": ("encoder.",),
    "ssdlite320_mobilenet_v3_large": ("backbone.features.",),  # not the extra layers (neck)
    "ssd300_vgg16": ("backbone.features.", "backbone.extra.0."),  # VGG up to fc7; not conv8_2...
    "fasterrcnn_mobilenet_v3_large_320_fpn": ("backbone.body.",),  # not the FPN
    "rfcn_resnet18": ("backbone.body.", "backbone.conv5."),  # not the 1x1 reduction
}
SMALL = {
    "ssdlite320_mobilenet_v3_large": {"size": 64},
    "fasterrcnn_mobilenet_v3_large_320_fpn": {"size": 64},
    "rfcn_resnet18": {"size": 64},
    "unet": {"width": 8},
    "fcn32s_vgg16": {"width": 0.25, "fc_channels": 64},
}


def build(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=3, **{**SMALL.get(name, {}), **kwargs})


def frozen_names(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if not p.requires_grad}


@pytest.mark.parametrize("name", sorted(BACKBONE_PREFIXES))
def test_backbone_freezes_exactly_the_backbone(name):
    model = build(name)
    before = frozen_names(model)  # some builders freeze layers of pre-trained backbones themselves
    report = freeze(model, "backbone")
    expected = {n for n, _ in model.named_parameters() if n.startswith(BACKBONE_PREFIXES[name])}
    assert frozen_names(model) == expected | before
    assert {id(p) for p in backbone_parameters(model)} == {
        id(p) for n, p in model.named_parameters() if n in expected
    }
    assert report.stages == report.total_stages == len(backbone_stages(model)) >= 4
    assert report.parameters == len(expected)
    # Every frozen module stays in eval mode through model.train(); the rest trains.
    model.train()
    for n, m in model.named_modules():
        inside = n.startswith(BACKBONE_PREFIXES[name]) or any(n + "." == p for p in BACKBONE_PREFIXES[name])
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            assert m.training is not inside, n


RESNET = {  # model -> the parameter prefixes of stem, layer1, layer2, layer3, layer4
    "unet_resnet18": [("encoder.conv1.", "encoder.bn1.")] + [(f"encoder.layer{i}.",) for i in range(1, 5)],
    "resnet18_classifier": [("encoder.conv1.", "encoder.bn1.")]
    + [(f"encoder.layer{i}.",) for i in range(1, 5)],
    # R-FCN's body is Sequential(conv1, bn1, relu, maxpool, layer1, layer2, layer3); layer4 is conv5.
    "rfcn_resnet18": [("backbone.body.0.", "backbone.body.1.")]
    + [(f"backbone.body.{i}.",) for i in (4, 5, 6)]
    + [("backbone.conv5.",)],
}


@pytest.mark.parametrize("name", sorted(RESNET))
@pytest.mark.parametrize("n", [1, 2, 4])
def test_first_n_resnet_stages(name, n):
    model = build(name)
    before = frozen_names(model)
    report = freeze(model, f"stages:{n}")
    want = tuple(p for stage in RESNET[name][:n] for p in stage)
    expected = {k for k, _ in model.named_parameters() if k.startswith(want)}
    assert expected and frozen_names(model) == expected | before
    assert (report.stages, report.total_stages) == (n, 5)
    # The BatchNorms of frozen stages only are kept in eval mode.
    model.train()
    frozen_bns = [k for k, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and not m.training]
    assert frozen_bns and all((k + ".").startswith(want) for k in frozen_bns)
    assert report.batch_norms == len(frozen_bns)


def test_vgg_stages_are_its_conv_blocks_then_fc6_fc7():
    stages = backbone_stages(build("fcn32s_vgg16"))
    convs = [sum(isinstance(m, nn.Conv2d) for mod in stage for m in mod.modules()) for stage in stages]
    assert convs == [2, 2, 3, 3, 3, 2]  # VGG16's blocks, then fc6 and fc7 as convolutions


@pytest.mark.parametrize(
    ("name", "starts"),
    [
        ("unet_mobilenet_v2", [0, 2, 4, 7, 14]),  # torchvision's mobilenet_v2: stride 2 at these blocks
        ("mobilenet_v3_large_classifier", [0, 2, 4, 7, 13]),
    ],
)
def test_mobilenet_stages_start_at_stride_two_blocks(name, starts):
    model = build(name)
    blocks = list(model.encoder.features)
    stages = backbone_stages(model)
    assert [blocks.index(stage[0]) for stage in stages[: len(starts)]] == starts
    assert len(stages) == len(starts) + (name.endswith("classifier"))  # + the classifier's pre-logit layer


def test_none_and_zero_stages_change_nothing():
    model = build("unet_resnet18")
    for spec in ("none", None, "stages:0"):
        report = freeze(model, spec)
        assert report.stages == 0 and report.summary() == "nothing frozen"
        assert not frozen_names(model)
        assert not any(is_kept_in_eval(m) for m in model.modules())


@pytest.mark.parametrize("spec", ["backbon", "stages", "stages:", "stages:two", "stages:-1", "head"])
def test_bad_spec_is_a_clear_error(spec):
    with pytest.raises(ValueError, match=r"backbone \| stages:N \| bn \| none"):
        freeze(build("unet"), spec)


def test_more_stages_than_the_backbone_has():
    with pytest.raises(ValueError, match="has only 5 backbone stages"):
        freeze(build("unet_resnet18"), "stages:6")


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_train_step_leaves_a_frozen_encoder_and_its_batchnorm_statistics_alone():
    model = build("unet_resnet18")
    report = freeze(model, "backbone")
    assert report.batch_norms == 20  # ResNet-18: bn1 + 2 per basic block + 3 downsample BNs
    encoder0, rest0 = _snapshot(model.encoder), _snapshot(model)
    opt = build_optimizer(model, TrainConfig(lr=0.1, weight_decay=1e-2, momentum=0.9))
    model.train()
    x, y = torch.rand(2, 3, 64, 64), torch.randint(0, 3, (2, 64, 64))
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    for k, v in model.encoder.state_dict().items():  # weights, running_mean/var, num_batches_tracked
        assert torch.equal(v, encoder0[k]), k
    after = model.state_dict()
    assert not torch.equal(after["head.weight"], rest0["head.weight"])  # the head learns
    decoder_bn = [k for k in after if k.startswith("decoder.") and k.endswith("running_mean")]
    assert decoder_bn and any(not torch.equal(after[k], rest0[k]) for k in decoder_bn)


def test_freeze_bn_keeps_the_backbone_statistics_and_trains_every_weight():
    """``bn``: the encoder's BatchNorm layers run in eval mode (running statistics unchanged by training
    steps, their scales and shifts learning) while every other weight trains; the decoder's BatchNorm
    still updates its statistics."""
    model = build("unet_resnet18")
    report = freeze(model, "bn")
    assert report.batch_norms == 20 and report.stages == 0 and not frozen_names(model)
    assert report.summary().startswith("kept the backbone's 20 BatchNorm layers in eval mode")
    before = _snapshot(model)
    opt = build_optimizer(model, TrainConfig(lr=0.1, momentum=0.9))
    model.train()
    assert all(not m.training for m in model.encoder.modules() if isinstance(m, nn.BatchNorm2d))
    x, y = torch.rand(2, 3, 64, 64), torch.randint(0, 3, (2, 64, 64))
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    after = model.state_dict()
    stats = [k for k in after if k.startswith("encoder.") and k.endswith(("running_mean", "running_var"))]
    assert len(stats) == 40 and all(torch.equal(after[k], before[k]) for k in stats)
    assert not torch.equal(after["encoder.bn1.weight"], before["encoder.bn1.weight"])  # BN's scale learns
    assert not torch.equal(after["encoder.conv1.weight"], before["encoder.conv1.weight"])
    decoder_bn = [k for k in after if k.startswith("decoder.") and k.endswith("running_mean")]
    assert decoder_bn and any(not torch.equal(after[k], before[k]) for k in decoder_bn)
    with pytest.raises(ValueError, match="--freeze bn: .* has no BatchNorm layer"):
        freeze(build("fcn32s_vgg16"), "bn")


def test_frozen_detector_backbone_through_a_training_step():
    model = build("ssdlite320_mobilenet_v3_large")
    freeze(model, "backbone")
    backbone0 = _snapshot(model.backbone.features)
    head0 = _snapshot(model.head)
    opt = build_optimizer(model, TrainConfig(lr=0.05))
    model.train()
    target = {"boxes": torch.tensor([[8.0, 10.0, 40.0, 50.0]]), "labels": torch.tensor([1])}
    losses = model([torch.rand(3, 64, 64), torch.rand(3, 64, 64)], [target, target])
    sum(losses.values()).backward()
    opt.step()
    for k, v in model.backbone.features.state_dict().items():
        assert torch.equal(v, backbone0[k]), k
    assert any(not torch.equal(v, head0[k]) for k, v in model.head.state_dict().items())


def test_lr_backbone_groups_and_schedule():
    model = build("unet_resnet18")
    cfg = TrainConfig(lr=0.1, lr_backbone=0.01, weight_decay=1e-4, schedule="poly")
    opt = build_optimizer(model, cfg)
    backbone = {id(p) for p in model.encoder.parameters()}
    seen = set()
    for group in opt.param_groups:
        ids = {id(p) for p in group["params"]}
        inside = ids <= backbone
        assert inside or not ids & backbone  # no group mixes backbone and the rest
        assert group["lr"] == (0.01 if inside else 0.1)
        # No weight decay on biases and norm scales, in both parts.
        assert group["weight_decay"] == (1e-4 if all(p.ndim > 1 for p in group["params"]) else 0.0)
        seen |= ids
    assert seen == {id(p) for p in model.parameters()}
    assert opt.param_groups[0]["lr"] == 0.1  # group 0 (what the log shows) is the head's
    scheduler = build_scheduler(opt, "poly", 10)
    for _ in range(6):
        opt.step()
        scheduler.step()
    lrs = {g["lr"] for g in opt.param_groups}
    assert len(lrs) == 2
    low, high = sorted(lrs)
    assert high < 0.1 and high / low == pytest.approx(10.0)


def test_lr_backbone_with_frozen_stages_holds_only_the_trainable_backbone():
    model = build("unet_resnet18")
    freeze(model, "stages:2")
    opt = build_optimizer(model, TrainConfig(lr=0.1, lr_backbone=0.0))
    at_zero = {id(p) for g in opt.param_groups if g["lr"] == 0.0 for p in g["params"]}
    trainable_encoder = {id(p) for n, p in model.encoder.named_parameters() if p.requires_grad}
    assert at_zero == trainable_encoder and trainable_encoder  # layer2..layer4
    assert not any(not p.requires_grad for g in opt.param_groups for p in g["params"])


def test_everything_frozen_is_an_error():
    model = build("resnet18_classifier")
    freeze(model, "backbone")
    model.head.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(model, TrainConfig())
