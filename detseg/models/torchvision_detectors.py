"""torchvision's Faster R-CNN and RetinaNet behind detseg's detector contract (the model-zoo families).

The architectures, losses and post-processing are torchvision's; detseg adds 0-based labels,
``num_classes`` without background, input checks and offline pre-trained backbones
(:class:`detseg.models.detection_utils.ZeroBasedLabels`).
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn
from torchvision.models import MobileNet_V3_Large_Weights, ResNet50_Weights, mobilenet_v3_large, resnet50
from torchvision.models.detection import FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import _mobilenet_extractor, _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, RPNHead, _default_anchorgen
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from detseg.models.detection_utils import ZeroBasedLabels, load_pretrained, size_to_min_max, trainable_layers
from detseg.models.registry import register_model


class FasterRCNNDetector(ZeroBasedLabels, FasterRCNN):
    """torchvision's Faster R-CNN; ``num_classes`` user classes (label 0 = background inside)."""

    def __init__(self, backbone: nn.Module, num_classes: int, **kwargs: Any):
        super().__init__(backbone, num_classes + 1, **kwargs)
        self.num_classes = num_classes


class RetinaNetDetector(ZeroBasedLabels, RetinaNet):
    """torchvision's RetinaNet; its sigmoid focal loss has no background class, labels pass as they are."""

    label_offset = 0

    def __init__(self, backbone: nn.Module, num_classes: int, **kwargs: Any):
        super().__init__(backbone, num_classes, **kwargs)
        self.num_classes = num_classes


def _check(num_classes: int, kwargs: dict[str, Any]) -> None:
    size_to_min_max(kwargs)
    if num_classes < 1:
        raise ValueError(f"num_classes counts the user's classes (no background), got {num_classes}")


def _resnet50(pretrained: bool | str | os.PathLike) -> nn.Module:
    # Frozen BatchNorm with ImageNet statistics, live BatchNorm from scratch (torchvision's rule).
    net = resnet50(weights=None, norm_layer=FrozenBatchNorm2d if pretrained else nn.BatchNorm2d)
    load_pretrained(net, pretrained, ResNet50_Weights.IMAGENET1K_V1)
    return net


@register_model(task="detect", backbone="resnet50_fpn", input_size=(3, 800, 800), paper="Ren et al. 2015",
                torchvision="fasterrcnn_resnet50_fpn")
def fasterrcnn_resnet50_fpn(num_classes: int = 20, pretrained: bool | str | os.PathLike = False,
                            trainable_backbone_layers: int | None = None,
                            size: int | None = None, **kwargs: Any) -> FasterRCNNDetector:
    """Faster R-CNN, ResNet-50 with FPN. ``kwargs`` go to torchvision's ``FasterRCNN`` (min_size...)."""
    kwargs["size"] = size
    _check(num_classes, kwargs)
    trainable = trainable_layers(trainable_backbone_layers, pretrained, 5, 3)
    backbone = _resnet_fpn_extractor(_resnet50(pretrained), trainable)
    return FasterRCNNDetector(backbone, num_classes, **kwargs)


@register_model(task="detect", backbone="resnet50_fpn", input_size=(3, 800, 800), paper="Li et al. 2021",
                torchvision="fasterrcnn_resnet50_fpn_v2")
def fasterrcnn_resnet50_fpn_v2(num_classes: int = 20, pretrained: bool | str | os.PathLike = False,
                               trainable_backbone_layers: int | None = None,
                               size: int | None = None, **kwargs: Any) -> FasterRCNNDetector:
    """Faster R-CNN v2 ("Benchmarking detection transfer learning with vision transformers"): BatchNorm
    everywhere (backbone, FPN, a 4-conv box head), a 2-conv RPN head; torchvision's architecture."""
    kwargs["size"] = size
    _check(num_classes, kwargs)
    trainable = trainable_layers(trainable_backbone_layers, pretrained, 5, 3)
    net = resnet50(weights=None)
    load_pretrained(net, pretrained, ResNet50_Weights.IMAGENET1K_V1)
    backbone = _resnet_fpn_extractor(net, trainable, norm_layer=nn.BatchNorm2d)
    anchors = _default_anchorgen()
    rpn_head = RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0], conv_depth=2)
    box_head = FastRCNNConvFCHead((backbone.out_channels, 7, 7), [256, 256, 256, 256], [1024],
                                  norm_layer=nn.BatchNorm2d)
    return FasterRCNNDetector(backbone, num_classes, rpn_anchor_generator=anchors, rpn_head=rpn_head,
                              box_head=box_head, **kwargs)


@register_model(task="detect", backbone="mobilenet_v3_large_fpn", input_size=(3, 320, 320),
                paper="Ren et al. 2015", torchvision="fasterrcnn_mobilenet_v3_large_320_fpn")
def fasterrcnn_mobilenet_v3_large_320_fpn(num_classes: int = 20, pretrained: bool | str | os.PathLike = False,
                                          trainable_backbone_layers: int | None = None,
                                          size: int | None = None, **kwargs: Any) -> FasterRCNNDetector:
    """Faster R-CNN on MobileNetV3-Large with FPN at low resolution (shorter side 320), for CPU speed."""
    kwargs["size"] = size
    _check(num_classes, kwargs)
    trainable = trainable_layers(trainable_backbone_layers, pretrained, 6, 3)
    net = mobilenet_v3_large(weights=None, norm_layer=FrozenBatchNorm2d if pretrained else nn.BatchNorm2d)
    load_pretrained(net, pretrained, MobileNet_V3_Large_Weights.IMAGENET1K_V1)
    backbone = _mobilenet_extractor(net, True, trainable)
    anchors = AnchorGenerator(((32, 64, 128, 256, 512),) * 3, ((0.5, 1.0, 2.0),) * 3)
    defaults = dict(min_size=320, max_size=640, rpn_pre_nms_top_n_test=150, rpn_post_nms_top_n_test=150,
                    rpn_score_thresh=0.05)
    return FasterRCNNDetector(backbone, num_classes, rpn_anchor_generator=anchors, **{**defaults, **kwargs})


@register_model(task="detect", backbone="resnet50_fpn", input_size=(3, 800, 800), paper="Lin et al. 2017",
                torchvision="retinanet_resnet50_fpn", label_offset=0)
def retinanet_resnet50_fpn(num_classes: int = 20, pretrained: bool | str | os.PathLike = False,
                           trainable_backbone_layers: int | None = None, size: int | None = None,
                           **kwargs: Any) -> RetinaNetDetector:
    """RetinaNet (focal loss), ResNet-50 with FPN P3-P7. ``kwargs`` go to torchvision's ``RetinaNet``."""
    kwargs["size"] = size
    _check(num_classes, kwargs)
    trainable = trainable_layers(trainable_backbone_layers, pretrained, 5, 3)
    backbone = _resnet_fpn_extractor(_resnet50(pretrained), trainable, returned_layers=[2, 3, 4],
                                     extra_blocks=LastLevelP6P7(256, 256))
    return RetinaNetDetector(backbone, num_classes, **kwargs)
