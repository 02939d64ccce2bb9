"""One weights loader for every model family: torchvision's key names, offline messages, SHA-256,
weights_only. Every state dict is written here from torchvision's architectures (weights=None)."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.models.vgg import VGG16_Weights

from detseg.models.backbones import (
    VGGEncoder,
    WeightsNotFoundError,
    file_sha256,
    load_pretrained,
    read_state_dict,
)
from detseg.models.zoo import create_model


def _save(state: dict, path) -> str:
    torch.save(state, path)
    return str(path)


def _found_in(source: dict[str, torch.Tensor], model: torch.nn.Module, keys: list[str]) -> list[str]:
    """The source conv weights (random, so unique) among ``keys`` that appear nowhere in ``model``."""
    by_shape: dict[torch.Size, list[torch.Tensor]] = {}
    for t in model.state_dict().values():
        by_shape.setdefault(t.shape, []).append(t)
    return [k for k in keys if not any(torch.equal(source[k], t) for t in by_shape.get(source[k].shape, ()))]


def _conv_weights(state: dict[str, torch.Tensor], prefix: str = "") -> list[str]:
    return [k for k, v in state.items() if k.startswith(prefix) and k.endswith("weight") and v.ndim == 4]


def test_mobilenet_v3_state_dict_loads_into_detectors_with_a_report(tmp_path):
    torch.manual_seed(0)
    source = torchvision.models.mobilenet_v3_large(weights=None).state_dict()
    path = _save(source, tmp_path / "mnv3.pth")
    for name in ("ssdlite320_mobilenet_v3_large", "fasterrcnn_mobilenet_v3_large_320_fpn"):
        model = create_model(name, num_classes=2, pretrained=path)
        report = model.pretrained_report
        assert report.missing == [] and report.mismatched == [], name
        # The builders load the whole classification network, then keep its features.
        assert set(report.unexpected) <= {k for k in source if k.startswith("classifier.")}, name
        assert _found_in(source, model, _conv_weights(source, "features.")) == [], name


def test_resnet50_and_vgg16_state_dicts_load_into_detectors_and_encoders(tmp_path):
    torch.manual_seed(0)
    resnet = torchvision.models.resnet50(weights=None).state_dict()
    path = _save(resnet, tmp_path / "resnet50.pth")
    detector = create_model("fasterrcnn_resnet50_fpn", num_classes=2, pretrained=path)
    report = detector.pretrained_report
    assert report.missing == report.unexpected == report.mismatched == []  # frozen BN: no step counters
    assert _found_in(resnet, detector, _conv_weights(resnet)) == []
    # VGG-16 as torchvision names it (features.N, classifier.N); its conv layers are what SSD and FCN use.
    vgg = torchvision.models.vgg16(weights=None).state_dict()
    features = {k: v for k, v in vgg.items() if k.startswith("features.")}
    path = _save(features, tmp_path / "vgg16_features.pth")
    ssd = create_model("ssd300_vgg16", num_classes=2, pretrained=path)
    assert ssd.pretrained_report.missing == [] and len(ssd.pretrained_report.loaded) == 26
    assert _found_in(features, ssd, _conv_weights(features)) == []
    encoder = VGGEncoder()
    path = _save(vgg, tmp_path / "vgg16.pth")
    report = load_pretrained(encoder, path, key_map=VGGEncoder.torchvision_key_map)
    assert report.missing == [] and report.reshaped == []  # no fc6/fc7 here: classifier.* are unexpected
    assert torch.equal(encoder.features[28].weight, vgg["features.28.weight"])


def test_a_whole_torchvision_detector_state_dict_gives_the_same_detections(tmp_path):
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large as tv_ssdlite

    torch.manual_seed(0)
    theirs = tv_ssdlite(weights=None, weights_backbone=None, num_classes=4).eval()  # 3 classes + background
    path = _save(theirs.state_dict(), tmp_path / "tv_ssdlite.pth")
    ours = create_model("ssdlite320_mobilenet_v3_large", num_classes=3, pretrained=path).eval()
    report = ours.pretrained_report
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    image = torch.rand(3, 320, 320, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        mine, ref = ours([image])[0], theirs([image])[0]
    assert len(ref["boxes"]) > 0
    torch.testing.assert_close(mine["boxes"], ref["boxes"])
    assert torch.equal(mine["labels"], ref["labels"] - 1)  # detseg's labels are 0-based, no background


def test_offline_message_says_which_file_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    where = tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    with pytest.raises(WeightsNotFoundError, match="resnet50-0676ba61.pth") as err:
        create_model("fasterrcnn_resnet50_fpn", num_classes=2, pretrained=True)
    assert str(where) in str(err.value) and "download.pytorch.org" in str(err.value)
    assert isinstance(err.value, ValueError) and isinstance(err.value, FileNotFoundError)  # CLI: one line
    # A segmenter names the same way. A file put there is used as it is (torch.hub's cache is trusted;
    # the name's SHA-256 prefix is checked when detseg downloads it, tests/models/test_weights_download.py),
    # and a "#sha256=" suffix checks it on every read.
    with pytest.raises(WeightsNotFoundError, match=r"resnet18-f37072fd.pth.*put it at"):
        create_model("unet_resnet18", pretrained="IMAGENET1K_V1")
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), cached)
    assert create_model("unet_resnet18", pretrained="IMAGENET1K_V1").pretrained_report.mismatched == []
    with pytest.raises(ValueError, match="SHA-256 is .* expected f37072fd"):
        create_model("unet_resnet18", pretrained="ResNet18_Weights.IMAGENET1K_V1#sha256=f37072fd")
    with pytest.raises(WeightsNotFoundError, match="not found"):
        create_model("ssdlite320_mobilenet_v2", pretrained=str(tmp_path / "nowhere.pth"))
    assert VGG16_Weights.IMAGENET1K_FEATURES.url.endswith(".pth")


def test_sha256_is_checked_and_only_plain_tensors_are_read(tmp_path):
    torch.manual_seed(0)
    path = _save(torchvision.models.mobilenet_v2(weights=None).state_dict(), tmp_path / "mnv2.pth")
    digest = file_sha256(path)
    model = create_model("ssdlite320_mobilenet_v2", num_classes=2, pretrained=f"{path}#sha256={digest}")
    assert model.pretrained_report.source == path
    assert read_state_dict(path, sha256=digest[:12])[1] == path  # a prefix is enough
    with pytest.raises(ValueError, match="SHA-256 is .*refusing"):
        create_model("ssdlite320_mobilenet_v2", num_classes=2, pretrained=f"{path}#sha256=deadbeef")
    with pytest.raises(ValueError, match="SHA-256 is"):
        read_state_dict(path, sha256="0" * 64)
    # weights_only=True: a pickled object that is not plain data is refused, naming the file.
    evil = tmp_path / "evil.pt"
    torch.save({"model": torch.nn.Linear(2, 2)}, evil)
    with pytest.raises(ValueError, match="evil.pt: not a file torch.load"):
        create_model("unet", width=4, depth=2, pretrained=str(evil))
