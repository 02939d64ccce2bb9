"""One contract for every registered detector (DEVELOPING.md): checked over the whole zoo.

Losses in training, ``{boxes, labels, scores}`` in eval, 0-based labels, ``num_classes`` without
background, and bad input (no objects, boxes across the border, zero-area boxes, unknown labels)
handled or refused clearly, never a NaN loss.
"""

from __future__ import annotations

import fnmatch
import math

import pytest
import torch
from torchvision.models import mobilenet_v2

from detseg.models.detection_utils import DataError, prepare_targets
from detseg.models.zoo import create_model, list_models, model_info

# Small inputs keep the zoo-wide checks fast; SSD300/512 always resize to their own size.
SMALL = {"ssd*_vgg16": dict(trainable_backbone_layers=0), "rfcn_*": dict(min_size=128, max_size=128),
         "ssdlite*": dict(size=160),
         "fasterrcnn_*": dict(min_size=128, max_size=128, rpn_post_nms_top_n_train=200,
                              box_batch_size_per_image=64),
         "retinanet_*": dict(min_size=128, max_size=128),
         "maskrcnn_*": dict(min_size=128, max_size=128, rpn_post_nms_top_n_train=200,
                            box_batch_size_per_image=64)}
DETECTORS = list_models(task="detect")


def small_kwargs(name: str) -> dict:
    return next((kw for pattern, kw in SMALL.items() if fnmatch.fnmatch(name, pattern)), {})


def test_the_zoo_has_the_papers_detectors():
    for name in ["ssd300_vgg16", "ssd512_vgg16", "ssdlite320_mobilenet_v3_large", "ssdlite320_mobilenet_v2",
                 "rfcn_resnet50", "rfcn_resnet101", "rfcn_resnet18"]:
        assert name in DETECTORS


@pytest.mark.parametrize("name", DETECTORS)
def test_detector_contract_with_awkward_targets(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, **small_kwargs(name))
    assert model.num_classes == 3
    images = [torch.rand(3, 160, 160), torch.rand(3, 120, 160)]
    targets = [
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # no objects
        {"boxes": torch.tensor([[-10.0, 50, 90, 200],  # crosses the border: clipped
                                [30, 30, 30, 60],  # zero width: dropped with a warning
                                [100, 10, 103, 13]]),  # tiny but valid
         "labels": torch.tensor([2, 0, 1])},
    ]
    if getattr(model, "uses_masks", False):  # Mask R-CNN: an instance mask per box, dropped with it
        targets[0]["masks"] = torch.zeros(0, 160, 160, dtype=torch.uint8)
        targets[1]["masks"] = torch.zeros(3, 120, 160, dtype=torch.uint8)
        targets[1]["masks"][0, 50:120, 0:90] = targets[1]["masks"][2, 10:13, 100:103] = 1
    with pytest.warns(UserWarning, match="dropped 1 box"):
        losses = model(images, targets)
    assert losses and all(v.dim() == 0 and math.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)

    bad = [targets[0], {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([3])}]
    with pytest.raises(DataError, match=r"targets\[1\]: box 0: label 3 is outside 0..2"):
        model(images, bad)

    model.eval()
    with torch.no_grad():
        dets = model(images[1:])
    assert len(dets) == 1
    for det, image in zip(dets, images[1:], strict=True):
        n = len(det["scores"])
        if getattr(model, "uses_masks", False):  # [N, 1, H, W] probabilities, as torchvision's
            assert det.pop("masks").shape == (n, 1, *image.shape[-2:])
        assert set(det) == {"boxes", "labels", "scores"}
        assert det["boxes"].shape == (n, 4) and det["labels"].shape == (n,)
        assert det["labels"].dtype == torch.int64
        assert ((det["labels"] >= 0) & (det["labels"] < 3)).all()
        h, w = image.shape[-2:]
        assert (det["boxes"][:, 0::2] <= w).all() and (det["boxes"][:, 1::2] <= h).all()


def test_targets_are_checked_and_shifted_past_the_background():
    images = [torch.rand(3, 50, 80)]
    target = {"boxes": torch.tensor([[-5.0, 10, 90, 60], [10, 10, 20, 20]]), "labels": torch.tensor([0, 2])}
    (out,) = prepare_targets(images, [target], num_classes=3)
    assert out["boxes"].tolist() == [[0.0, 10, 80, 50], [10, 10, 20, 20]]  # clipped to the 80x50 image
    assert out["labels"].tolist() == [1, 3]  # background is 0 inside torchvision's detectors
    (out,) = prepare_targets(images, [target], num_classes=3, label_offset=0)
    assert out["labels"].tolist() == [0, 2]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([-1])}, "label -1 is outside"),
        ({"boxes": torch.tensor([[0.0, float("nan"), 10, 10]]), "labels": torch.tensor([0])}, "non-finite"),
        ({"boxes": torch.tensor([[0.0, 0, 10]]), "labels": torch.tensor([0])}, r"FloatTensor\[N, 4\]"),
        ({"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([0, 1])}, "1 boxes but labels"),
        ({"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([0.0])}, "must be integers"),
        ({"labels": torch.tensor([0])}, "dict with 'boxes' and 'labels'"),
    ],
)
def test_bad_targets_are_refused_with_the_entry_named(target, message):
    with pytest.raises(DataError, match=message):
        prepare_targets([torch.rand(3, 20, 20)], [target], num_classes=3)


def test_images_must_be_float_in_unit_range():
    model = create_model("ssdlite320_mobilenet_v3_large", num_classes=2, size=160).eval()
    with pytest.raises(ValueError, match=r"images\[0\] has dtype torch.uint8"):
        model([torch.zeros(3, 32, 32, dtype=torch.uint8)])
    with pytest.raises(ValueError, match=r"images\[0\] must be a Tensor\[3, H, W\]"):
        model([torch.zeros(32, 32)])
    with pytest.raises(ValueError, match="num_classes counts the user's classes"):
        create_model("ssd300_vgg16", num_classes=0)


def test_pretrained_weights_offline_say_which_file_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"mobilenet_v3_large-8738ca79.pth.*put it at"):
        create_model("ssdlite320_mobilenet_v3_large", num_classes=2, pretrained=True)
    # A local file: an ImageNet classifier's state dict; its classifier keys are ignored.
    source = mobilenet_v2(weights=None)
    torch.save(source.state_dict(), tmp_path / "mnv2.pth")
    model = create_model("ssdlite320_mobilenet_v2", num_classes=2, pretrained=tmp_path / "mnv2.pth")
    first_conv = model.backbone.features[0][0][0].weight
    torch.testing.assert_close(first_conv, source.features[0][0].weight)


@pytest.mark.parametrize(
    "name", ["ssdlite320_mobilenet_v3_large", "rfcn_resnet18", "fasterrcnn_mobilenet_v3_large_320_fpn"]
)
def test_train_img_size_reaches_the_model(name):
    # `detseg train --img-size N` passes size=N: the model then works at the size the data is resized to.
    from detseg.engine.run import _takes_size

    assert _takes_size(model_info(name).builder)
    net = create_model(name, num_classes=2, size=256)
    assert net.transform.min_size == (256,) and net.transform.max_size == 256
    assert not _takes_size(model_info("ssd300_vgg16").builder)  # fixed 300 x 300 default boxes
