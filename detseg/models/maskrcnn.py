"""Mask R-CNN (He et al. 2017): Faster R-CNN plus a small FCN that predicts one mask per detected box.

torchvision's architecture (RoIAlign, a 4-conv mask head on 14x14 RoI features, a 28x28 mask per
class, the mask loss on the ground-truth class only) behind detseg's detector contract
(:class:`detseg.models.detection_utils.ZeroBasedLabels`: 0-based labels, ``num_classes`` without the
background, input checks). Two backbones, both with a feature pyramid over strides 4, 8, 16, 32 (+ a
max-pooled 64): ResNet-50 (``maskrcnn_resnet50_fpn``, torchvision's COCO model's layout: its weights
load by file) and MobileNetV3-Large (``maskrcnn_mobilenet_v3_large_fpn``, for the CPU).

Contract: in training ``model(images, targets)`` takes targets with ``masks`` (``uint8 [N, H, W]``,
the data's instance masks) beside ``boxes`` and ``labels`` and returns the five losses (``loss_mask``
included); in eval mode each image gives ``{boxes [N, 4], labels [N], scores [N], masks}`` where
``masks`` is ``FloatTensor[N, 1, H, W]``: each detection's mask probabilities pasted into the whole
image (torchvision's layout; threshold at 0.5 for a binary mask, :func:`binary_masks`).

``train_boxes_only()`` (what ``detseg train`` does on a ``task: detect`` spec) trains the box branch
alone on data without masks. Width options (``fpn_channels``, ``mask_channels``,
``representation_size``, ``width_mult``) and ``min_size`` / ``size`` make small models for tests and
CPU budgets.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models import MobileNet_V3_Large_Weights, mobilenet_v3_large
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN, _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

from detseg.models.detection_utils import load_pretrained, trainable_layers
from detseg.models.registry import register_model
from detseg.models.torchvision_detectors import FasterRCNNDetector, _check, _resnet50


class MaskRCNNDetector(FasterRCNNDetector, MaskRCNN):
    """torchvision's Mask R-CNN; ``num_classes`` user classes (label 0 = background inside).

    ``mask_channels``: width of the 4-conv mask head (256 in the paper); ``representation_size``: width
    of the box head's two fully connected layers (1024).
    """

    uses_masks = True
    train_masks = True  # False: train the box branch only (targets need no masks)

    def __init__(self, backbone: nn.Module, num_classes: int, mask_channels: int = 256,
                 representation_size: int = 1024, **kwargs: Any):
        c = backbone.out_channels
        kwargs.setdefault("box_head", TwoMLPHead(c * 7 * 7, representation_size))
        kwargs.setdefault("box_predictor", FastRCNNPredictor(representation_size, num_classes + 1))
        kwargs.setdefault("mask_head", MaskRCNNHeads(c, [mask_channels] * 4, 1))
        kwargs.setdefault("mask_predictor", MaskRCNNPredictor(mask_channels, mask_channels, num_classes + 1))
        MaskRCNN.__init__(self, backbone, None, **kwargs)
        self.num_classes = num_classes

    def train_boxes_only(self) -> None:
        """Train the box branch alone (data without masks): the mask branch is skipped in training and
        frozen (so DDP, which needs a gradient for every trainable parameter, trains it too)."""
        self.train_masks = False
        self.roi_heads.mask_head.requires_grad_(False)
        self.roi_heads.mask_predictor.requires_grad_(False)

    def forward(self, images, targets=None):  # type: ignore[override]
        if not (self.training and not self.train_masks):
            return super().forward(images, targets)
        # Boxes only: without mask_roi_pool torchvision's RoIHeads skips the mask branch and its loss.
        pool = self.roi_heads.mask_roi_pool
        self.roi_heads.mask_roi_pool = None
        try:
            return super().forward(images, targets)
        finally:
            self.roi_heads.mask_roi_pool = pool


def binary_masks(masks: Tensor, threshold: float = 0.5) -> Tensor:
    """``uint8 [N, H, W]`` binary masks from Mask R-CNN's ``[N, 1, H, W]`` probabilities."""
    if masks.dim() == 4:
        masks = masks[:, 0]
    return (masks >= threshold).to(torch.uint8)


def _with_fpn_width(backbone: BackboneWithFPN, in_channels: list[int], fpn_channels: int) -> BackboneWithFPN:
    if fpn_channels != backbone.out_channels:
        backbone.fpn = FeaturePyramidNetwork(in_channels, fpn_channels, extra_blocks=LastLevelMaxPool())
        backbone.out_channels = fpn_channels
    return backbone


def _anchors(anchor_sizes: list[int] | None) -> AnchorGenerator | None:
    """One anchor size per pyramid level (P2-P6), three aspect ratios; None: torchvision's 32...512."""
    if anchor_sizes is None:
        return None
    if len(anchor_sizes) != 5:
        raise ValueError(f"anchor_sizes needs one size per pyramid level (5), got {anchor_sizes}")
    return AnchorGenerator(tuple((int(s),) for s in anchor_sizes), ((0.5, 1.0, 2.0),) * 5)


@register_model(task="detect", backbone="resnet50_fpn", input_size=(3, 800, 800), paper="He et al. 2017",
                outputs="boxes, masks", torchvision="maskrcnn_resnet50_fpn")
def maskrcnn_resnet50_fpn(num_classes: int = 20, pretrained: bool | str | os.PathLike = False,
                          trainable_backbone_layers: int | None = None, size: int | None = None,
                          fpn_channels: int = 256, mask_channels: int = 256, representation_size: int = 1024,
                          anchor_sizes: list[int] | None = None, **kwargs: Any) -> MaskRCNNDetector:
    """Mask R-CNN, ResNet-50 with FPN (torchvision's ``maskrcnn_resnet50_fpn`` layout at the default
    widths). ``kwargs`` go to torchvision's ``MaskRCNN`` (min_size, max_size, box_score_thresh...)."""
    kwargs["size"] = size
    _check(num_classes, kwargs)
    trainable = trainable_layers(trainable_backbone_layers, pretrained, 5, 3)
    backbone = _with_fpn_width(_resnet_fpn_extractor(_resnet50(pretrained), trainable),
                               [256, 512, 1024, 2048], fpn_channels)
    anchors = _anchors(anchor_sizes)
    if anchors is not None:
        kwargs["rpn_anchor_generator"] = anchors
    return MaskRCNNDetector(backbone, num_classes, mask_channels, representation_size, **kwargs)


@register_model(task="detect", backbone="mobilenet_v3_large_fpn", input_size=(3, 320, 320),
                paper="He et al. 2017", outputs="boxes, masks")
def maskrcnn_mobilenet_v3_large_fpn(num_classes: int = 20, pretrained: bool | str | os.PathLike = False,
                                    trainable_backbone_layers: int | None = None, size: int | None = None,
                                    width_mult: float = 1.0, fpn_channels: int = 256,
                                    mask_channels: int = 256, representation_size: int = 1024,
                                    anchor_sizes: list[int] | None = None,
                                    **kwargs: Any) -> MaskRCNNDetector:
    """Mask R-CNN on MobileNetV3-Large with an FPN over its stride-4, 8, 16 and 32 outputs (ResNet-FPN's
    levels, so RoIAlign and the anchors are torchvision's), shorter side 320 by default for CPU speed."""
    kwargs["size"] = size
    _check(num_classes, kwargs)
    trainable = trainable_layers(trainable_backbone_layers, pretrained, 6, 3)
    net = mobilenet_v3_large(weights=None, width_mult=width_mult,
                             norm_layer=FrozenBatchNorm2d if pretrained else nn.BatchNorm2d)
    load_pretrained(net, pretrained, MobileNet_V3_Large_Weights.IMAGENET1K_V1)
    features = net.features
    starts = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)] + [len(features) - 1]
    # Stages, shallow to deep: what trains is the last `trainable` of them (torchvision's rule).
    first_trained = len(features) if trainable == 0 else starts[len(starts) - trainable]
    for block in features[:first_trained]:
        block.requires_grad_(False)
    levels = [starts[1], starts[2], starts[3], starts[-1]]  # outputs at strides 4, 8, 16, 32
    in_channels = [features[i].out_channels for i in levels]
    backbone = BackboneWithFPN(features, {str(i): str(k) for k, i in enumerate(levels)}, in_channels,
                               fpn_channels, extra_blocks=LastLevelMaxPool())
    anchors = _anchors(anchor_sizes)
    if anchors is not None:
        kwargs["rpn_anchor_generator"] = anchors
    kwargs = {"min_size": 320, "max_size": 640, **kwargs}
    return MaskRCNNDetector(backbone, num_classes, mask_channels, representation_size, **kwargs)
