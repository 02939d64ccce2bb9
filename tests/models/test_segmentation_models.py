"""Every segmenter: parts, odd input sizes, learning, classifier reset, greyscale; torchvision parity
(parameter counts, state-dict names, outputs) and pre-trained weight loading."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from detseg.models import deconvnet, deeplab, fcn, fpn, parsenet, unet
from detseg.models.backbones import (
    MobileNetEncoder,
    ResNetEncoder,
    VGGEncoder,
    load_pretrained,
    load_state_dict_into,
    read_state_dict,
)
from detseg.nn.segmenter import IMAGENET_MEAN, IMAGENET_STD

SEGMENTERS = [
    "fcn32s_vgg16", "fcn16s_vgg16", "fcn8s_vgg16", "deconvnet_vgg16", "unet", "unet_resnet18",
    "unet_resnet34", "unet_mobilenet_v2", "deeplabv3_resnet50", "deeplabv3_resnet101",
    "deeplabv3_mobilenet_v3_large", "fpn_resnet50", "fpn_resnet101", "fpn_mobilenet_v3_large",
    "parsenet_vgg16",
]  # fmt: skip
TINY_VGG = {"width": 0.125, "fc_channels": 32, "dropout": 0.0}


def rectangles(n: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [0, 1] with a brighter rectangle (class 1) on noise (class 0), and their masks."""
    g = torch.Generator().manual_seed(1)
    target = torch.zeros(n, h, w, dtype=torch.int64)
    for i in range(n):
        r, c = i * 7 % (h // 2), i * 11 % (w // 2)
        target[i, r : r + h // 2, c : c + w // 2] = 1
    return torch.rand(n, 3, h, w, generator=g) * 0.3 + 0.5 * target[:, None], target


class SegmenterChecks:
    """The checks every architecture passes; subclasses set the builder and small settings."""

    builder = staticmethod(unet.unet)
    kwargs: dict = {}
    batch = 2  # DeepLab's image-pooling batch norm needs 2 images in training
    size = (33, 45)  # odd on purpose
    steps = 10
    lr = 1e-3

    def make(self, num_classes: int = 3, in_channels: int = 3) -> nn.Module:
        torch.manual_seed(0)
        return self.builder(num_classes=num_classes, in_channels=in_channels, **self.kwargs)

    def test_parts_and_odd_input_sizes(self):
        model = self.make().eval()
        for part in ("encoder", "decoder", "head"):
            assert isinstance(getattr(model, part), nn.Module)
        with torch.no_grad():
            for h, w in (self.size, (29, 38), (7, 5)):
                out = model(torch.rand(1, 3, h, w))
                assert out.shape == (1, 3, h, w) and torch.isfinite(out).all()

    def test_training_steps_reduce_the_loss(self):
        model = self.make(num_classes=2).train()
        x, target = rectangles(self.batch, *self.size)
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=self.lr)
        losses = []
        for _ in range(self.steps):
            loss = nn.functional.cross_entropy(model(x), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < 0.9 * losses[0], losses

    def test_reset_classifier_and_greyscale(self):
        model = self.make(in_channels=1).eval()
        model.reset_classifier(5)
        assert model.num_classes == 5
        with torch.no_grad():
            assert model(torch.rand(1, 1, *self.size)).shape == (1, 5, *self.size)
        with pytest.raises(ValueError, match=r"Tensor\[B, 1, H, W\]"):
            model(torch.rand(1, 3, *self.size))


class TestFCN32s(SegmenterChecks):
    builder = staticmethod(fcn.fcn32s_vgg16)
    kwargs = TINY_VGG


class TestFCN16s(SegmenterChecks):
    builder = staticmethod(fcn.fcn16s_vgg16)
    kwargs = TINY_VGG


class TestFCN8s(SegmenterChecks):
    builder = staticmethod(fcn.fcn8s_vgg16)
    kwargs = TINY_VGG


class TestDeconvNet(SegmenterChecks):
    builder = staticmethod(deconvnet.deconvnet_vgg16)
    kwargs = TINY_VGG


class TestUNetSame(SegmenterChecks):
    kwargs = {"width": 8, "depth": 4}


class TestUNetValid(SegmenterChecks):
    kwargs = {"width": 4, "depth": 3, "padding": "valid"}


class TestUNetResNet18(SegmenterChecks):
    builder = staticmethod(unet.unet_resnet18)
    steps = 4


class TestUNetResNet34(SegmenterChecks):
    builder = staticmethod(unet.unet_resnet34)
    size = (19, 23)  # the same code as resnet18, deeper: smaller images keep it quick
    steps = 4


class TestUNetMobileNetV2(SegmenterChecks):
    builder = staticmethod(unet.unet_mobilenet_v2)
    steps = 4


class TestDeepLabV3ResNet50(SegmenterChecks):
    builder = staticmethod(deeplab.deeplabv3_resnet50)
    kwargs = {"output_stride": 16, "multi_grid": (1, 2, 4)}
    steps = 3  # about a second a step on one CPU thread


class TestDeepLabV3ResNet101(SegmenterChecks):
    builder = staticmethod(deeplab.deeplabv3_resnet101)
    kwargs = {"output_stride": 16}
    size = (19, 23)
    steps = 2  # one update must already lower the loss


class TestDeepLabV3MobileNetV3(SegmenterChecks):
    builder = staticmethod(deeplab.deeplabv3_mobilenet_v3_large)
    steps = 4


class TestFPNResNet50(SegmenterChecks):
    builder = staticmethod(fpn.fpn_resnet50)
    steps = 3


class TestFPNResNet101(SegmenterChecks):
    builder = staticmethod(fpn.fpn_resnet101)
    size = (19, 23)  # the same code as ResNet-50, deeper: smaller images keep it quick
    steps = 2


class TestFPNMobileNetV3(SegmenterChecks):
    builder = staticmethod(fpn.fpn_mobilenet_v3_large)
    steps = 4


class TestParseNet(SegmenterChecks):
    builder = staticmethod(parsenet.parsenet_vgg16)
    kwargs = TINY_VGG


class TestParseNetBN(SegmenterChecks):
    builder = staticmethod(parsenet.parsenet_vgg16)
    kwargs = {**TINY_VGG, "batch_norm": True}


def test_registry_lists_every_segmenter_and_builds_by_name():
    from detseg.models.zoo import create_model, list_models, model_info

    assert set(SEGMENTERS) <= set(list_models(task="segment"))
    assert model_info("fcn8s_vgg16").backbone == "vgg16"
    model = create_model("unet", num_classes=4, width=4, depth=2)
    assert model(torch.rand(1, 3, 17, 19)).shape == (1, 4, 17, 19)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_paper_sizes():
    assert unet.valid_unet_sizes(388, 4) == (572, 388)  # the U-Net paper's tile
    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        assert n_params(fcn.fcn8s_vgg16(num_classes=21)) == pytest.approx(134.5e6, rel=2e-3)  # Long et al.
        assert n_params(deconvnet.deconvnet_vgg16(num_classes=21)) == pytest.approx(
            252e6, rel=2e-3
        )  # Noh et al.


def test_deeplabv3_parameter_counts_equal_torchvision():
    from torchvision.models import segmentation as tv

    pairs = [
        (deeplab.deeplabv3_resnet50, tv.deeplabv3_resnet50),
        (deeplab.deeplabv3_resnet101, tv.deeplabv3_resnet101),
        (deeplab.deeplabv3_mobilenet_v3_large, tv.deeplabv3_mobilenet_v3_large),
    ]
    with torch.device("meta"):
        for n in (2, 21):
            for ours, theirs in pairs:
                reference = theirs(weights=None, weights_backbone=None, num_classes=n, aux_loss=False)
                assert n_params(ours(num_classes=n)) == n_params(reference), ours.__name__


def test_torchvision_deeplab_state_dict_loads_and_gives_the_same_output(tmp_path):
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    torch.manual_seed(0)
    theirs = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3).eval()
    path = tmp_path / "tv_deeplab.pth"
    torch.save(theirs.state_dict(), path)
    # torchvision uses rates (12, 24, 36) at output stride 16; the paper (our default) (6, 12, 18).
    ours = deeplab.deeplabv3_mobilenet_v3_large(
        num_classes=3, pretrained=str(path), atrous_rates=(12, 24, 36)
    )
    report = ours.pretrained_report
    assert report.missing == [] and report.mismatched == [] and report.reshaped == []
    assert all(k.startswith("aux_classifier.") for k in report.unexpected)  # torchvision's auxiliary head
    x = torch.rand(1, 3, 41, 53)
    normalised = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
        1, 3, 1, 1
    )
    with torch.no_grad():
        assert torch.allclose(ours.eval()(x), theirs(normalised)["out"], atol=1e-4)


def test_torchvision_resnet50_state_dict_loads_into_greyscale_encoder(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None).eval()
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)
    assert set(read_state_dict(path)[0]) == set(reference.state_dict())  # torch.load(weights_only=True)
    encoder = ResNetEncoder("resnet50", in_channels=1).eval()
    report = load_pretrained(encoder, str(path))
    assert report.reshaped == ["conv1.weight"]  # 3 input channels summed into 1
    assert sorted(report.unexpected) == ["fc.bias", "fc.weight"]
    assert report.missing == [] and report.mismatched == []
    grey = torch.rand(1, 1, 40, 48)
    body = nn.Sequential(*list(reference.children())[:-2])
    with (
        torch.no_grad()
    ):  # a grey image through the summed filter = the same image as RGB through the original
        assert torch.allclose(encoder(grey)[-1], body(grey.repeat(1, 3, 1, 1)), atol=1e-4)


def test_pretrained_through_the_builder_and_detseg_checkpoints(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    model = unet.unet_resnet18(num_classes=2, pretrained=str(path))
    assert len(model.pretrained_report.loaded) == len(ResNetEncoder("resnet18").state_dict())
    assert all(k.startswith("encoder.") for k in model.pretrained_report.loaded)
    # A detseg checkpoint (wrapped, DDP-prefixed) of the whole model restores it exactly.
    ckpt = tmp_path / "run" / "best.pt"
    ckpt.parent.mkdir()
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 3}, ckpt)
    restored = unet.unet_resnet18(num_classes=2, pretrained=str(ckpt))
    assert restored.pretrained_report.missing == []
    x = torch.rand(1, 3, 35, 35)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), restored.eval()(x))


def test_pretrained_errors_are_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(ValueError, match="downloads are off .* put it at"):  # tests run offline
        deeplab.deeplabv3_resnet50(num_classes=2, pretrained="IMAGENET1K_V2")
    with pytest.raises(ValueError, match="not found"):
        unet.unet(pretrained=str(tmp_path / "missing.pt"))
    path = tmp_path / "w.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="SHA-256"):
        read_state_dict(path, sha256="deadbeef")
    with pytest.raises(ValueError, match="none of its"):
        unet.unet(width=4, depth=2, pretrained=str(path))


def test_vgg_fully_connected_layers_load_as_convolutions():
    # FCN's "convolutionalisation": fc6 as a 7x7 conv gives the linear layer's output on a 7x7 map.
    encoder = VGGEncoder(width=0.125, fc_channels=16).eval()
    linear6, linear7 = nn.Linear(64 * 7 * 7, 16), nn.Linear(16, 16)
    state = {k: v for k, v in encoder.state_dict().items() if k.startswith("features.")}
    state.update({"classifier.0.weight": linear6.weight, "classifier.0.bias": linear6.bias})
    state.update({"classifier.3.weight": linear7.weight, "classifier.3.bias": linear7.bias})
    report = load_state_dict_into(encoder, state, key_map=VGGEncoder.torchvision_key_map)
    assert sorted(report.reshaped) == ["fc6.weight", "fc7.weight"] and report.missing == []
    pool5 = torch.randn(1, 64, 7, 7)
    with torch.no_grad():
        conv = encoder.fc6(pool5)[0, :, 3, 3]  # the centre sees the whole map, no padding
        assert torch.allclose(conv, linear6(pool5.flatten(1))[0], atol=1e-5)


def test_deeplab_training_on_one_image_is_a_clear_error():
    model = deeplab.deeplabv3_mobilenet_v3_large(num_classes=2).train()
    with pytest.raises(ValueError, match="batches of 2 or more"):
        model(torch.rand(1, 3, 33, 45))


def test_output_stride_and_multi_grid():
    for stride in (8, 16):
        encoder = ResNetEncoder("resnet50", output_stride=stride, multi_grid=(1, 2, 4))
        feats = encoder(torch.rand(1, 3, 64, 64))
        assert feats[-1].shape[-1] == 64 // stride
        rate = 32 // stride
        assert [b.conv2.dilation[0] for b in encoder.layer4] == [rate, 2 * rate, 4 * rate]
    with pytest.raises(ValueError, match="cannot be dilated"):
        ResNetEncoder("resnet18", output_stride=8)
    assert MobileNetEncoder("mobilenet_v3_large", dilated=True).strides[-1] == 16


def test_freeze_encoder_keeps_batch_norm_in_eval():
    model = unet.unet(width=4, depth=2)
    model.freeze_encoder()
    model.train()
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(not m.training for m in model.encoder.modules())
    assert model.head.training and model.head.weight.requires_grad


def test_valid_unet_output_is_aligned_with_its_input():
    # With unpadded convolutions an output pixel sees a window of input pixels centred on it, up to the
    # pooling phase, which averages out over 2**depth neighbouring pixels. A mirror padding or crop off
    # by k pixels would move every window by k.
    torch.manual_seed(0)
    model = unet.unet(num_classes=2, width=2, depth=2, padding="valid").eval()
    asymmetry = []
    for p in range(26, 30):
        x = torch.rand(1, 3, 61, 57, requires_grad=True)
        model(x)[0, 1, p + 2, p].backward()
        grad = x.grad[0].abs().sum(0)
        rows, cols = grad.sum(1).nonzero(), grad.sum(0).nonzero()
        assert int(rows.max() - rows.min()) > 20  # a real receptive field, inside the image
        asymmetry += [(p + 2 - rows.min()) - (rows.max() - p - 2), (p - cols.min()) - (cols.max() - p)]
    assert abs(float(sum(asymmetry)) / len(asymmetry)) <= 0.5, asymmetry
