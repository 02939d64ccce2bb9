"""Semantic FPN and ParseNet beyond the shared segmenter checks: the pyramid equals torchvision's
ResNet-FPN (weights loaded from its state dict), the semantic branch's shape, ParseNet's L2
normalisation and its global context (an output pixel sees the whole image, FCN-32s's does not)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

from detseg.models import fcn, fpn, parsenet
from detseg.nn.segmenter import IMAGENET_MEAN, IMAGENET_STD

TINY_VGG = {"width": 0.125, "fc_channels": 32, "dropout": 0.0}


def _normalised(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def test_pyramid_equals_torchvision_resnet_fpn_with_its_weights(tmp_path):
    torch.manual_seed(0)
    theirs = resnet_fpn_backbone(
        backbone_name="resnet50", weights=None, norm_layer=nn.BatchNorm2d, trainable_layers=5
    ).eval()
    path = tmp_path / "resnet50_fpn.pth"
    torch.save({f"backbone.{k}": v for k, v in theirs.state_dict().items()}, path)  # as in Faster R-CNN
    ours = fpn.fpn_resnet50(num_classes=3, pretrained=str(path)).eval()
    report = ours.pretrained_report
    assert report.missing and all(k.startswith(("decoder.branch.", "head.")) for k in report.missing)
    assert report.unexpected == [] and report.mismatched == []

    captured = {}
    ours.decoder.fpn.register_forward_hook(lambda m, i, out: captured.update(out=list(out.values())))
    x = torch.rand(1, 3, 70, 90)
    with torch.no_grad():
        ours(x)  # runs padded to 96x96 with the mean colour: zeros once normalised
        padded = nn.functional.pad(_normalised(x), (0, 6, 0, 26))
        expected = list(theirs(padded).values())[:4]  # P2..P5 (its fifth is the max-pooled P6)
    assert [tuple(p.shape[-2:]) for p in captured["out"]] == [(24, 24), (12, 12), (6, 6), (3, 3)]
    for mine, ref in zip(captured["out"], expected, strict=True):
        assert torch.allclose(mine, ref, atol=1e-4)


def test_semantic_branch_upsamples_each_level_to_stride_4():
    model = fpn.fpn_mobilenet_v3_large(num_classes=2).eval()
    stages = [len(level) for level in model.decoder.branch.scale_heads]
    assert stages == [1, 1, 2, 3]  # P2: one conv, P3..P5: one 2x stage per halving of the stride
    assert [s.upsample for s in model.decoder.branch.scale_heads[0]] == [False]
    assert all(isinstance(s.norm, nn.GroupNorm) and s.norm.num_groups == 32
               for level in model.decoder.branch.scale_heads for s in level)
    feats = model.encoder(torch.rand(1, 3, 64, 96))
    with torch.no_grad():
        out = model.decoder(feats)
    assert out.shape == (1, 128, 16, 24)  # 1/4 of the input, 128 channels, summed
    assert model.decoder.levels == [1, 2, 3, 4] and model.encoder.strides == [2, 4, 8, 16, 32]


def test_fpn_takes_any_encoder_listing_channels_and_strides():
    class TwoLevels(nn.Module):  # e.g. a timm encoder, or a dilated one: strides 4 and 8 only
        out_channels, strides = [8, 16], [4, 8]

        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, stride=4, padding=1)
            self.b = nn.Conv2d(8, 16, 3, stride=2, padding=1)

        def forward(self, x):
            a = self.a(x)
            return [a, self.b(a)]

    model = fpn.FPNSegmenter(TwoLevels(), num_classes=4, pyramid_channels=32, segmentation_channels=16)
    assert model(torch.rand(2, 3, 37, 41)).shape == (2, 4, 37, 41)
    with pytest.raises(ValueError, match="must list its feature maps. out_channels"):
        fpn.FPNSegmenter(nn.Identity(), num_classes=2)


def test_unsmoothed_pyramid_is_the_top_down_sums():
    """``smooth=False``: P5 = lateral(C5), P4 = lateral(C4) + nearest-upsampled P5, ... (no 3x3 convs)."""
    torch.manual_seed(0)
    model = fpn.fpn_mobilenet_v3_large(num_classes=2, smooth=False).eval()
    full = fpn.fpn_mobilenet_v3_large(num_classes=2).eval()
    assert all(isinstance(b, nn.Identity) for b in model.decoder.fpn.layer_blocks)
    dropped = sum(p.numel() for p in full.parameters()) - sum(p.numel() for p in model.parameters())
    assert dropped == 4 * (256 * 256 * 9 + 256)
    captured = {}
    model.decoder.fpn.register_forward_hook(
        lambda m, i, out: captured.update(feats=list(i[0].values()), out=list(out.values()))
    )
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 96)).shape == (1, 2, 64, 96)
        laterals = [blk(c) for blk, c in zip(model.decoder.fpn.inner_blocks, captured["feats"], strict=True)]
    expected = [laterals[-1]]
    for lateral in reversed(laterals[:-1]):
        expected.insert(0, lateral + nn.functional.interpolate(expected[0], size=lateral.shape[-2:]))
    for mine, ref in zip(captured["out"], expected, strict=True):
        assert torch.allclose(mine, ref, atol=1e-5)


def test_any_size_is_padded_to_the_pyramids_stride_so_levels_stay_exact_doubles():
    """A 90x120 input (not a multiple of 32) runs padded to 96x128: every pyramid level is exactly twice
    the next coarser one, as on training crops, and the logits are cropped back to 90x120 (that they are
    the padded image's: tests/models/test_timm_segmenters.py). Unpadded, a 480x360 CamVid frame's levels
    (90, 45, 23, 12 rows) do not line up, which cost a trained FPN 3-5 points of mIoU."""
    model = fpn.fpn_mobilenet_v3_large(num_classes=3, smooth=False).eval()
    sizes = []
    hook = lambda _m, _i, out: sizes.extend(v.shape[-2:] for v in out.values())  # noqa: E731
    model.decoder.fpn.register_forward_hook(hook)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 90, 120)).shape == (1, 3, 90, 120)
    assert sizes == [(24, 32), (12, 16), (6, 8), (3, 4)]


def test_l2norm_known_answer_and_learned_scale():
    norm = parsenet.L2Norm(2, scale=10.0)
    x = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)
    assert torch.allclose(norm(x).flatten(), torch.tensor([6.0, 8.0]))  # 10 * (0.6, 0.8)
    assert norm.weight.requires_grad and norm.weight.shape == (2,)


def test_global_context_is_the_normalised_image_average_everywhere():
    context = parsenet.GlobalContext(3, scale=1.0)
    x = torch.rand(2, 3, 5, 7)
    out = context(x)
    assert out.shape == (2, 6, 5, 7)
    mean = x.mean(dim=(2, 3))
    expected = mean / mean.norm(dim=1, keepdim=True)
    assert torch.allclose(out[:, 3:], expected[:, :, None, None].expand(-1, -1, 5, 7), atol=1e-6)
    assert torch.allclose(out[:, :3].norm(dim=1), torch.ones(2, 5, 7), atol=1e-5)


def test_parsenet_sees_the_whole_image_where_fcn32s_does_not():
    # FCN-32s's receptive field is about 400 px; ParseNet's global pooling reaches every pixel.
    def reach(model: nn.Module) -> float:
        x = torch.rand(1, 3, 32, 1024, requires_grad=True)
        model.eval()(x)[0, 1, 16, 16].backward()
        return float(x.grad[..., 900:].abs().sum())

    torch.manual_seed(0)
    assert reach(fcn.fcn32s_vgg16(num_classes=2, **TINY_VGG)) == 0.0
    torch.manual_seed(0)
    assert reach(parsenet.parsenet_vgg16(num_classes=2, **TINY_VGG)) > 0.0


def test_parsenet_is_fcn32s_plus_scales_and_a_wider_classifier():
    with torch.device("meta"):
        model = parsenet.parsenet_vgg16(num_classes=21)
        n_fcn32 = sum(p.numel() for p in fcn.fcn32s_vgg16(num_classes=21).parameters())
    # FCN-32s plus the two scales (2 x 4096) and a classifier on 8192 channels instead of 4096.
    extra = 2 * 4096 + 4096 * 21
    assert sum(p.numel() for p in model.parameters()) == n_fcn32 + extra
    keys = set(model.state_dict())
    assert {"encoder.fc6.weight", "encoder.fc7.weight", "decoder.local_norm.weight",
            "decoder.global_norm.weight", "head.score.weight", "head.upscore.conv.weight"} <= keys
