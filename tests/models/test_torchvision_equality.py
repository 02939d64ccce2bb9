"""Proof of equality with torchvision: for every torchvision counterpart, torchvision's own builder makes
the model (seeded, random, nothing downloaded), its state dict is saved under the real weights file
name in a temporary torch.hub cache, detseg loads it by the weights' name, and both give the same
outputs in eval mode: boxes within 1e-3 px and identical labels after post-processing for detectors,
logits within 1e-5 for segmenters and classifiers. The class names come from the weights' meta."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.models import detection as tvd
from torchvision.models import segmentation as tvs

from detseg.models.zoo import create_model

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """torch.hub's cache in ``tmp_path`` (``$TORCH_HOME``), downloads off: only what the test puts there."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("DETSEG_OFFLINE", "1")
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    folder.mkdir(parents=True)
    return folder


def _cache(hub: Path, weights, model: torch.nn.Module) -> Path:
    path = hub / os.path.basename(weights.url)
    torch.save(model.state_dict(), path)
    return path


def _sharpen(layers: list[torch.nn.Module], scale: float) -> None:
    """Make random class scores confident enough to pass the score thresholds (else nothing to compare):
    larger weights, seeded random biases."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for layer in layers:
            layer.weight.mul_(scale)
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator))


def _same_settings(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    """The pre- and post-processing settings are torchvision's; then both take small inputs (speed)."""
    names = ("min_size", "max_size", "image_mean", "image_std", "size", "fixed_size")
    for name in names:
        assert getattr(ours.transform, name, None) == getattr(theirs.transform, name, None), name
    for part in ("", "roi_heads", "rpn"):
        if part and not hasattr(theirs, part):
            continue
        a, b = (m.get_submodule(part) if part else m for m in (ours, theirs))
        for name in ("score_thresh", "nms_thresh", "detections_per_img", "topk_candidates",
                     "_pre_nms_top_n", "_post_nms_top_n"):
            assert getattr(a, name, None) == getattr(b, name, None), f"{part}.{name}"
    if hasattr(theirs.transform, "min_size") and theirs.transform.min_size[0] > 320:
        for model in (ours, theirs):  # R-CNN and RetinaNet resize to 800 px: too slow for a test
            model.transform.min_size, model.transform.max_size = (320,), 320


# name, torchvision builder, weights, the class-score layers to sharpen, image sizes (H, W)
DETECTORS = [
    ("ssd300_vgg16", tvd.ssd300_vgg16, tvd.SSD300_VGG16_Weights.COCO_V1,
     lambda m: list(m.head.classification_head.module_list), [(120, 160)]),
    ("ssdlite320_mobilenet_v3_large", tvd.ssdlite320_mobilenet_v3_large,
     tvd.SSDLite320_MobileNet_V3_Large_Weights.COCO_V1,
     lambda m: [b[1] for b in m.head.classification_head.module_list], [(120, 160), (90, 100)]),
    ("fasterrcnn_resnet50_fpn", tvd.fasterrcnn_resnet50_fpn, tvd.FasterRCNN_ResNet50_FPN_Weights.COCO_V1,
     lambda m: [m.roi_heads.box_predictor.cls_score], [(60, 80), (50, 50)]),
    ("fasterrcnn_resnet50_fpn_v2", tvd.fasterrcnn_resnet50_fpn_v2,
     tvd.FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
     lambda m: [m.roi_heads.box_predictor.cls_score], [(60, 80)]),
    ("fasterrcnn_mobilenet_v3_large_320_fpn", tvd.fasterrcnn_mobilenet_v3_large_320_fpn,
     tvd.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1,
     lambda m: [m.roi_heads.box_predictor.cls_score], [(120, 160), (90, 100)]),
    ("retinanet_resnet50_fpn", tvd.retinanet_resnet50_fpn, tvd.RetinaNet_ResNet50_FPN_Weights.COCO_V1,
     lambda m: [m.head.classification_head.cls_logits], [(60, 80)]),
    ("maskrcnn_resnet50_fpn", tvd.maskrcnn_resnet50_fpn, tvd.MaskRCNN_ResNet50_FPN_Weights.COCO_V1,
     lambda m: [m.roi_heads.box_predictor.cls_score], [(60, 80)]),
]


@pytest.mark.parametrize("name, builder, weights, score_layers, sizes", DETECTORS,
                         ids=[d[0] for d in DETECTORS])
def test_detectors_give_torchvision_detections_with_coco_names(
    hub, name, builder, weights, score_layers, sizes
):
    torch.manual_seed(0)
    theirs = builder(weights=None, weights_backbone=None).eval()
    _sharpen(score_layers(theirs), 50.0)
    _cache(hub, weights, theirs)
    ours = create_model(name, pretrained=weights.name).eval()  # "COCO_V1", resolved against the model
    report = ours.pretrained_report
    assert report.missing == [] and report.mismatched == [], report.summary()
    assert ours.class_names == weights.meta["categories"][ours.label_offset:]
    assert len([n for n in ours.class_names if n not in ("N/A", "__background__")]) == 80
    _same_settings(ours, theirs)
    generator = torch.Generator().manual_seed(1)
    images = [torch.rand(3, h, w, generator=generator) for h, w in sizes]
    with torch.inference_mode():
        mine, ref = ours(images), theirs(images)
    for m, r in zip(mine, ref, strict=True):
        assert len(r["boxes"]) > 0  # something real to compare
        torch.testing.assert_close(m["boxes"], r["boxes"], atol=1e-3, rtol=0)
        torch.testing.assert_close(m["scores"], r["scores"], atol=1e-5, rtol=1e-5)
        # detseg's labels are 0-based indices into class_names; category_ids maps them back to COCO ids
        ids = torch.tensor(ours.category_ids)[m["labels"]]
        assert torch.equal(ids, r["labels"])
        if "masks" in r:  # Mask R-CNN: the same mask probabilities, pasted into the image
            torch.testing.assert_close(m["masks"], r["masks"], atol=1e-4, rtol=0)


def _calibrate(model: torch.nn.Module, size: tuple[int, int]) -> None:
    """Batch-norm statistics from a few random batches (cumulative average), so that the random network
    keeps its activations in range as a trained one does."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    model.train()
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _ in range(2):
            model((torch.rand(2, 3, *size, generator=generator) - IMAGENET_MEAN) / IMAGENET_STD)
    model.eval()


SEGMENTERS = [
    ("fcn_resnet50", tvs.fcn_resnet50, tvs.FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1),
    ("fcn_resnet101", tvs.fcn_resnet101, tvs.FCN_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1),
    ("deeplabv3_resnet50", tvs.deeplabv3_resnet50, tvs.DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1),
    ("deeplabv3_resnet101", tvs.deeplabv3_resnet101, tvs.DeepLabV3_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1),
    ("deeplabv3_mobilenet_v3_large", tvs.deeplabv3_mobilenet_v3_large,
     tvs.DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1),
    ("lraspp_mobilenet_v3_large", tvs.lraspp_mobilenet_v3_large,
     tvs.LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1),
]


@pytest.mark.parametrize("name, builder, weights", SEGMENTERS, ids=[s[0] for s in SEGMENTERS])
def test_segmenters_give_torchvision_logits_with_voc_names(hub, name, builder, weights):
    torch.manual_seed(0)
    aux = {} if name.startswith("lraspp") else {"aux_loss": True}  # the COCO weights carry the aux head
    theirs = builder(weights=None, weights_backbone=None, num_classes=21, **aux)
    _calibrate(theirs, (48, 56))
    _cache(hub, weights, theirs)
    ours = create_model(name, pretrained="COCO_WITH_VOC_LABELS_V1").eval()
    report = ours.pretrained_report
    assert report.missing == [] and report.mismatched == [], report.summary()
    assert all(k.startswith("aux_classifier.") for k in report.unexpected)
    assert ours.class_names == weights.meta["categories"] and ours.class_names[15] == "person"
    x = torch.rand(2, 3, 61, 83, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        mine, ref = ours(x), theirs((x - IMAGENET_MEAN) / IMAGENET_STD)["out"]
    assert mine.shape == ref.shape == (2, 21, 61, 83) and ref.std() > 0.1
    torch.testing.assert_close(mine, ref, atol=1e-5, rtol=1e-5)


CLASSIFIERS = [
    ("resnet18_classifier", torchvision.models.resnet18, "IMAGENET1K_V1"),
    ("resnet50_classifier", torchvision.models.resnet50, "ResNet50_Weights.IMAGENET1K_V2"),
    ("mobilenet_v3_large_classifier", torchvision.models.mobilenet_v3_large, "DEFAULT"),
]


@pytest.mark.parametrize("name, builder, weights_name", CLASSIFIERS, ids=[c[0] for c in CLASSIFIERS])
def test_classifiers_give_torchvision_logits_with_imagenet_names(hub, name, builder, weights_name):
    torch.manual_seed(0)
    theirs = builder(weights=None)
    _calibrate(theirs, (64, 64))
    arch = builder.__name__
    enum = torchvision.models.get_model_weights(arch)
    weights = enum.DEFAULT if weights_name == "DEFAULT" else torchvision.models.get_weight(
        weights_name if "." in weights_name else f"{enum.__name__}.{weights_name}")
    _cache(hub, weights, theirs)
    ours = create_model(name, pretrained=weights_name).eval()
    assert ours.pretrained_report.missing == [] and ours.pretrained_report.unexpected == []
    assert ours.class_names == weights.meta["categories"] and len(ours.class_names) == 1000
    x = torch.rand(2, 3, 64, 72, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        mine, ref = ours(x), theirs((x - IMAGENET_MEAN) / IMAGENET_STD)
    assert ref.std() > 0.1
    torch.testing.assert_close(mine, ref, atol=1e-5, rtol=1e-5)
