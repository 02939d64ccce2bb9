"""detseg.transfer.heads: a new head for other classes, and a head extended to new classes that gives
exactly the old model's outputs on the old classes (raw logits, and for detectors the detections too)."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn

from detseg.models.zoo import create_model, model_info
from detseg.transfer.heads import NEW_CLASS_BIAS, class_keys, extend_head, load_replacing_head

SMALL = {
    "unet": {"width": 8, "depth": 3},
    "fcn8s_vgg16": {"width": 0.25, "fc_channels": 64},
    "deconvnet_vgg16": {"width": 0.25, "fc_channels": 64},
    "ssdlite320_mobilenet_v3_large": {"size": 64},
    "fasterrcnn_mobilenet_v3_large_320_fpn": {"size": 64},
    "retinanet_resnet50_fpn": {"size": 64},
    "rfcn_resnet18": {"size": 64},
}


def build(name: str, num_classes: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(name, num_classes=num_classes, **SMALL.get(name, {}))


@functools.lru_cache
def keys_of(name: str, num_classes: int) -> frozenset[str]:
    return frozenset(class_keys(name, {"num_classes": num_classes, **SMALL.get(name, {})}))


@torch.no_grad()
def as_if_trained(model: nn.Module, head_keys: set[str]) -> nn.Module:
    """Move every weight and the BatchNorm statistics away from their initialisation (as training would),
    so that a copy that forgets or misplaces a tensor shows."""
    for k, p in model.named_parameters():
        p.add_(torch.randn_like(p) * (0.5 if k in head_keys and k.endswith("bias") else 0.02))
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.8, 1.2)
    return model.eval()


def test_class_keys_are_the_class_dependent_layers():
    rng = torch.get_rng_state()
    assert class_keys("rfcn_resnet18", {"num_classes": 5}) == {
        "roi_heads.box_predictor.cls_maps.weight",  # R-FCN's box maps are class-agnostic
        "roi_heads.box_predictor.cls_maps.bias",
    }
    assert torch.equal(torch.get_rng_state(), rng)  # built on the meta device: no draw from the generator
    assert keys_of("unet", 3) == {"head.weight", "head.bias"}
    assert keys_of("resnet18_classifier", 4) == {"head.weight", "head.bias"}
    assert keys_of("fcn8s_vgg16", 3) == {
        *(f"head.score_{s}.{p}" for s in ("fr", "pool4", "pool3") for p in ("weight", "bias")),
        *(f"decoder.{u}.conv.weight" for u in ("upscore2", "upscore_pool4", "upscore_final")),
    }
    assert keys_of("fasterrcnn_mobilenet_v3_large_320_fpn", 3) == {
        f"roi_heads.box_predictor.{layer}.{p}"
        for layer in ("cls_score", "bbox_pred")
        for p in ("weight", "bias")
    }
    assert keys_of("ssdlite320_mobilenet_v3_large", 3) == {
        f"head.classification_head.module_list.{i}.1.{p}" for i in range(6) for p in ("weight", "bias")
    }


@pytest.mark.parametrize("name", ["unet_resnet18", "rfcn_resnet18"])
def test_load_replacing_head_from_other_classes(name):
    source = as_if_trained(build(name, 2, seed=0), keys_of(name, 4))  # the same names for any count
    model = build(name, 4, seed=1)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    keys = keys_of(name, 4)
    report = load_replacing_head(model, source.state_dict(), keys, "old.pt")
    theirs = source.state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(v, fresh[k] if k in keys else theirs[k]), k
    assert report.action == "replaced head" and report.replaced == sorted(keys)
    assert len(report.loaded) == len(fresh) - len(keys) and not report.kept
    assert f"replaced {len(keys)} head tensors" in report.summary()


def test_load_with_the_same_classes_loads_everything():
    source = as_if_trained(build("unet", 3, seed=0), set())
    model = build("unet", 3, seed=1)
    report = load_replacing_head(model, source.state_dict(), keys_of("unet", 3), "old.pt", replace=False)
    for k, v in model.state_dict().items():
        assert torch.equal(v, source.state_dict()[k]), k
    assert report.action == "loaded" and not report.replaced
    assert len(report.loaded) == len(source.state_dict()) > 0


def test_load_from_another_architecture_is_refused():
    with pytest.raises(ValueError, match=r"only 1 of the \d+ tensors of UNet fit \(another architecture"):
        other = build("resnet18_classifier", 2, 0).state_dict()
        load_replacing_head(build("unet", 2, 0), other, set(), "x.pt")


SEGMENT = ["unet", "unet_mobilenet_v2", "deeplabv3_mobilenet_v3_large", "fcn8s_vgg16", "deconvnet_vgg16"]
CLASSIFY = ["resnet18_classifier", "mobilenet_v3_large_classifier"]


@pytest.mark.parametrize("name", SEGMENT + CLASSIFY)
def test_extended_segmenter_or_classifier_keeps_the_old_logits(name):
    task = model_info(name).task
    old_classes = ["background", "circle", "square"] if task == "segment" else ["ant", "bee"]
    new_classes = [*old_classes, "wasp", "fly"]
    old = as_if_trained(build(name, len(old_classes), seed=0), keys_of(name, len(new_classes)))
    model = build(name, len(new_classes), seed=1)
    keys = keys_of(name, len(new_classes))
    report = extend_head(model, old.state_dict(), keys, old_classes, new_classes, "old.pt")
    assert report.action == "extended head" and report.extended == sorted(keys)
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        before, after = old(x), model.eval()(x)
    assert after.shape[1] == len(new_classes)
    torch.testing.assert_close(after[:, : len(old_classes)], before, rtol=1e-5, atol=1e-5)
    assert (after[:, len(old_classes) :] - after[:, :1]).abs().max() > 1e-3  # new classes: a new output


def _class_logits(model: nn.Module, x: list[torch.Tensor]) -> tuple[torch.Tensor, list[dict]]:
    """The detector's raw class logits (per anchor, or per RoI) and its detections, in one eval forward."""
    name = "head.classification_head" if hasattr(model, "head") else "roi_heads.box_predictor"
    seen = []
    handle = model.get_submodule(name).register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        detections = model.eval()(x)
    handle.remove()
    out = seen[0]
    return (out[0] if isinstance(out, tuple) else out), detections


DETECT = [
    "ssdlite320_mobilenet_v3_large",  # per-anchor interleaved softmax columns
    "rfcn_resnet18",  # class-major k*k position-sensitive score maps
    "fasterrcnn_mobilenet_v3_large_320_fpn",  # cls_score rows + per-class box rows
    "retinanet_resnet50_fpn",  # sigmoid, no background column
]


@pytest.mark.parametrize("name", DETECT)
def test_extended_detector_gives_the_old_detections(name):
    old_classes, new_classes = ["circle", "square"], ["circle", "square", "triangle"]
    old = as_if_trained(build(name, 2, seed=0), keys_of(name, 3))
    model = build(name, 3, seed=1)
    keys = keys_of(name, 3)
    report = extend_head(model, old.state_dict(), keys, old_classes, new_classes, "old.pt")
    assert report.extended == sorted(keys)
    size = 300 if name == "ssd300_vgg16" else 64
    x = [torch.rand(3, size, size)]
    z_old, det_old = _class_logits(old, x)
    z_new, det_new = _class_logits(model, x)
    sigmoid = name.startswith("retinanet")
    k_old = 2 if sigmoid else 3  # softmax heads have a background column first
    assert z_new.shape[:-1] == z_old.shape[:-1] and z_new.shape[-1] == k_old + 1
    torch.testing.assert_close(z_new[..., :k_old], z_old, rtol=1e-5, atol=1e-5)
    if sigmoid:  # zero weights, the focal-loss prior bias: score 0.01 everywhere
        torch.testing.assert_close(z_new[..., -1], torch.full_like(z_new[..., -1], -math.log(99)))
    else:  # zero weights, bias -20: no probability taken from the old classes
        torch.testing.assert_close(z_new[..., -1], torch.full_like(z_new[..., -1], NEW_CLASS_BIAS))
    (a,), (b,) = det_old, det_new
    assert len(a["boxes"]) > 0  # a real comparison
    torch.testing.assert_close(b["boxes"], a["boxes"])
    torch.testing.assert_close(b["scores"], a["scores"])
    assert torch.equal(b["labels"], a["labels"]) and int(b["labels"].max()) < 2


def test_extended_ssd300_head_on_its_six_feature_maps():
    """SSD300's head on random feature maps of its VGG channels (its full forward is 300 px)."""
    old = as_if_trained(build("ssd300_vgg16", 2, seed=0), keys_of("ssd300_vgg16", 3))
    model = build("ssd300_vgg16", 3, seed=1)
    extend_head(model, old.state_dict(), keys_of("ssd300_vgg16", 3), ["a", "b"], ["a", "b", "c"], "old.pt")
    sizes = (4, 3, 2, 2, 1, 1)
    features = [torch.randn(1, c, s, s) for c, s in zip((512, 1024, 512, 256, 256, 256), sizes, strict=True)]
    with torch.no_grad():
        z_old = old.head(features)["cls_logits"]  # [1, anchors, 3]
        z_new = model.eval().head(features)["cls_logits"]  # [1, anchors, 4]
    assert z_new.shape == (*z_old.shape[:2], 4)
    torch.testing.assert_close(z_new[..., :3], z_old)
    assert torch.equal(z_new[..., 3], torch.full_like(z_new[..., 3], NEW_CLASS_BIAS))


@pytest.mark.parametrize(
    "new_classes", [["square", "circle", "triangle"], ["circle", "triangle", "square"], ["circle", "square"]]
)
def test_class_list_must_start_with_the_old_classes(new_classes):
    old = build("unet", 2, 0)
    model = build("unet", len(new_classes), 1)
    with pytest.raises(ValueError, match="old classes in the same order followed by the new ones"):
        extend_head(model, old.state_dict(), keys_of("unet", 3), ["circle", "square"], new_classes, "old.pt")


def test_extending_another_architecture_is_refused():
    torch.manual_seed(0)
    old = create_model("unet", num_classes=2, width=8, depth=2)  # not the depth the model has
    with pytest.raises(ValueError, match="another architecture"):
        extend_head(build("unet", 3, 1), old.state_dict(), keys_of("unet", 3), ["a", "b"], ["a", "b", "c"])
