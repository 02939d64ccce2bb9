"""R-FCN (Dai et al. 2016, "R-FCN: Object Detection via Region-based Fully Convolutional Networks").

Two stages, all convolutional up to one pooling step:

1. a ResNet-50/101 whose conv5 is dilated (stride 16 instead of 32) and a region proposal network on
   conv4 (torchvision's ``RegionProposalNetwork``, ``AnchorGenerator``, ``RPNHead``);
2. a 1x1 conv to 1024 channels on conv5, then k x k position-sensitive score maps for C+1 classes
   and 4 k x k maps for class-agnostic box offsets; position-sensitive RoI pooling
   (``torchvision.ops.ps_roi_align`` or ``ps_roi_pool``) and voting by averaging the k x k bins.

Training samples RoIs with torchvision's ``RoIHeads`` machinery (IoU >= 0.5 positive); online hard
example mining (OHEM, on by default as in the paper) keeps the B = 128 RoIs with the highest loss
among all proposals of an image. Labels are 0-based on the outside (:class:`ZeroBasedLabels`).
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import (
    ResNet18_Weights,
    ResNet50_Weights,
    ResNet101_Weights,
    resnet18,
    resnet50,
    resnet101,
)
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FrozenBatchNorm2d, ps_roi_align, ps_roi_pool

from detseg.models.detection_utils import ZeroBasedLabels, load_pretrained, size_to_min_max, trainable_layers
from detseg.models.registry import register_model


def ps_roi_vote(
    score_maps: Tensor,
    boxes: list[Tensor],
    k: int,
    spatial_scale: float,
    mode: str = "align",
    sampling_ratio: int = 2,
) -> Tensor:
    """Position-sensitive RoI pooling followed by voting.

    Args:
        score_maps: ``Tensor[B, k*k*D, H, W]``; channel ``(d * k + i) * k + j`` scores output ``d`` in
            bin (row ``i``, column ``j``) of a RoI.
        boxes: one ``FloatTensor[R_b, 4]`` XYXY per image, in input-image pixels.
        k: bins per side; spatial_scale: feature-map size / image size (1/16 here).
        mode: ``"align"`` (bilinear samples) or ``"pool"`` (average over the whole pixels of each bin,
            as in the paper).

    Returns ``Tensor[R, D]``: r_d = mean over the k*k bins of the pooled bin (i, j) of map (d, i, j).
    """
    if mode == "align":
        pooled = ps_roi_align(score_maps, boxes, k, spatial_scale, sampling_ratio)
    elif mode == "pool":
        pooled = ps_roi_pool(score_maps, boxes, k, spatial_scale)
    else:
        raise ValueError(f"ps pooling mode must be 'align' or 'pool', got {mode!r}")
    return pooled.mean(dim=(2, 3))


class PSRoIHead(nn.Module):
    """Position-sensitive score maps for ``num_classes`` (background included) and box offsets."""

    def __init__(self, in_channels: int, num_classes: int, k: int = 7, spatial_scale: float = 1 / 16,
                 mode: str = "align"):
        super().__init__()
        self.k, self.spatial_scale, self.mode = k, spatial_scale, mode
        self.cls_maps = nn.Conv2d(in_channels, k * k * num_classes, 1)
        self.box_maps = nn.Conv2d(in_channels, k * k * 4, 1)  # class-agnostic, as in the paper
        for conv in (self.cls_maps, self.box_maps):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, features: Tensor, proposals: list[Tensor]) -> tuple[Tensor, Tensor]:
        """``Tensor[B, C_in, H, W]``, RoIs per image -> (class logits ``[R, C+1]``, offsets ``[R, 4]``)."""
        logits = ps_roi_vote(self.cls_maps(features), proposals, self.k, self.spatial_scale, self.mode)
        offsets = ps_roi_vote(self.box_maps(features), proposals, self.k, self.spatial_scale, self.mode)
        return logits, offsets


def rfcn_loss(
    class_logits: Tensor,
    box_regression: Tensor,
    labels: list[Tensor],
    regression_targets: list[Tensor],
    ohem_rois: int | None = None,
) -> dict[str, Tensor]:
    """Cross-entropy over RoIs plus smooth L1 (beta 1/9) on positives' class-agnostic offsets.

    Without OHEM this is torchvision's ``fastrcnn_loss`` (mean CE; box loss summed / number of RoIs).
    With ``ohem_rois = B`` only the B RoIs of each image with the largest loss count (Dai et al. 2016,
    after Shrivastava et al.); both terms are then averaged over the kept RoIs.
    """
    counts = [len(lab) for lab in labels]
    labels_all, targets_all = torch.cat(labels), torch.cat(regression_targets)
    cls_loss = F.cross_entropy(class_logits, labels_all, reduction="none")
    # Only positives regress; background RoIs may carry infinite targets (an image without objects).
    positive = labels_all > 0
    box_loss = torch.zeros_like(cls_loss)
    box_loss[positive] = F.smooth_l1_loss(
        box_regression[positive], targets_all[positive], beta=1 / 9, reduction="none"
    ).sum(1)
    if ohem_rois is None:
        keep = torch.ones_like(labels_all, dtype=torch.bool)
    else:
        keep = torch.zeros_like(labels_all, dtype=torch.bool)
        total = (cls_loss + box_loss).detach()
        start = 0
        for n in counts:
            top = total[start:start + n].topk(min(ohem_rois, n)).indices
            keep[start + top] = True
            start += n
    n_kept = max(1, int(keep.sum()))
    return {"loss_classifier": cls_loss[keep].sum() / n_kept, "loss_box_reg": box_loss[keep].sum() / n_kept}


class RFCNRoIHeads(RoIHeads):
    """R-FCN's second stage on torchvision's RoIHeads (sampling, box coding, post-processing)."""

    def __init__(self, ps_head: PSRoIHead, ohem_rois: int | None = 128, batch_size_per_image: int = 128,
                 positive_fraction: float = 0.25, score_thresh: float = 0.05, nms_thresh: float = 0.3,
                 detections_per_img: int = 100):
        # With OHEM every proposal goes through the loss and the hardest are kept afterwards.
        batch = 10**9 if ohem_rois else batch_size_per_image
        super().__init__(None, None, ps_head, 0.5, 0.5, batch, positive_fraction, None,
                         score_thresh, nms_thresh, detections_per_img)
        self.ohem_rois = ohem_rois

    def forward(self, features: Tensor, proposals: list[Tensor], image_shapes: list[tuple[int, int]],
                targets: list[dict[str, Tensor]] | None = None):  # type: ignore[override]
        """Returns (detections, losses) like torchvision's RoIHeads."""
        if self.training:
            proposals, _, labels, regression_targets = self.select_training_samples(proposals, targets)
        class_logits, offsets = self.box_predictor(features, proposals)
        if self.training:
            return [], rfcn_loss(class_logits, offsets, labels, regression_targets, self.ohem_rois)
        num_classes = class_logits.shape[1]
        # The same class-agnostic offsets for every class, in the per-class layout torchvision decodes.
        boxes, scores, labels = self.postprocess_detections(
            class_logits, offsets.repeat(1, num_classes), proposals, image_shapes
        )
        detections = [{"boxes": b, "scores": s, "labels": lab}
                      for b, s, lab in zip(boxes, scores, labels, strict=True)]
        return detections, {}


def _out_channels(stage: nn.Sequential) -> int:
    return [m for m in stage[-1].modules() if isinstance(m, nn.Conv2d)][-1].out_channels


def dilate_basic_blocks(stage: nn.Sequential) -> None:
    """Stride 1 and dilation 2 for a stage of BasicBlocks (torchvision only dilates Bottlenecks)."""
    for i, block in enumerate(stage):
        for conv in (m for m in block.modules() if isinstance(m, nn.Conv2d)):
            conv.stride = (1, 1)
            if conv.kernel_size == (3, 3) and not (i == 0 and conv is block.conv1):
                conv.dilation, conv.padding = (2, 2), (2, 2)


class RFCNBackbone(nn.Module):
    """ResNet with a dilated conv5: conv4 features (RPN) and conv5 reduced to ``reduced`` channels
    (1024 in the paper) for the position-sensitive maps."""

    def __init__(self, resnet: nn.Module, trainable_layers: int = 5, reduced: int = 1024):
        super().__init__()
        self.body = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool,
                                  resnet.layer1, resnet.layer2, resnet.layer3)
        self.conv5 = resnet.layer4
        self.c4_channels, self.out_channels = _out_channels(resnet.layer3), reduced
        self.reduce = nn.Sequential(nn.Conv2d(_out_channels(resnet.layer4), reduced, 1),
                                    nn.ReLU(inplace=True))
        nn.init.normal_(self.reduce[0].weight, std=0.01)
        nn.init.zeros_(self.reduce[0].bias)
        # Freeze from the bottom as torchvision's detection backbones do.
        stem = nn.ModuleList([resnet.conv1, resnet.bn1])
        stages = [self.conv5, resnet.layer3, resnet.layer2, resnet.layer1, stem]
        for stage in stages[trainable_layers:]:
            stage.requires_grad_(False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``Tensor[B, 3, H, W]`` -> (conv4 ``[B, C4, H/16, W/16]``, conv5 ``[B, reduced, H/16, W/16]``)."""
        c4 = self.body(x)
        return c4, self.reduce(self.conv5(c4))


class _RFCN(nn.Module):
    def __init__(
        self,
        backbone: RFCNBackbone,
        num_classes: int,
        k: int = 7,
        ps_pool: str = "align",
        ohem_rois: int | None = 128,
        min_size: int = 600,
        max_size: int = 1000,
        anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512),
        aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
        rpn_pre_nms_top_n: int = 6000,
        rpn_post_nms_top_n: int = 300,
        rpn_nms_thresh: float = 0.7,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.3,
        detections_per_img: int = 100,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
    ):
        super().__init__()
        self.transform = GeneralizedRCNNTransform(
            min_size, max_size, image_mean or [0.485, 0.456, 0.406], image_std or [0.229, 0.224, 0.225]
        )
        self.backbone = backbone
        anchors = AnchorGenerator((tuple(anchor_sizes),), (tuple(aspect_ratios),))
        top_n = dict(training=rpn_pre_nms_top_n, testing=rpn_pre_nms_top_n)
        post_n = dict(training=rpn_post_nms_top_n, testing=rpn_post_nms_top_n)
        self.rpn = RegionProposalNetwork(
            anchors, RPNHead(backbone.c4_channels, anchors.num_anchors_per_location()[0]),
            0.7, 0.3, 256, 0.5, top_n, post_n, rpn_nms_thresh,
        )
        self.roi_heads = RFCNRoIHeads(
            PSRoIHead(backbone.out_channels, num_classes + 1, k, 1 / 16, ps_pool), ohem_rois,
            score_thresh=score_thresh, nms_thresh=nms_thresh, detections_per_img=detections_per_img,
        )

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        # Sizes as shape values, not int(): an ONNX trace then scales boxes back for any input size.
        original_sizes = [(img.shape[-2], img.shape[-1]) for img in images]
        image_list, targets = self.transform(images, targets)
        c4, c5 = self.backbone(image_list.tensors)
        proposals, rpn_losses = self.rpn(image_list, {"0": c4}, targets)
        detections, head_losses = self.roi_heads(c5, proposals, image_list.image_sizes, targets)
        if self.training:
            return {**rpn_losses, **head_losses}
        return self.transform.postprocess(detections, image_list.image_sizes, original_sizes)


class RFCN(ZeroBasedLabels, _RFCN):
    """R-FCN with detseg's contract: ``num_classes`` user classes, 0-based labels in and out.

    Training returns ``{"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}``;
    eval a list of ``{"boxes", "labels", "scores"}``. Defaults follow the paper: k = 7, shorter side
    600 (max 1000), 300 proposals, OHEM with 128 RoIs (``ohem_rois=None``: 128 sampled RoIs, 25 %
    positive), test NMS 0.3. Two departures: ``ps_pool="align"`` samples bins bilinearly
    (``"pool"`` is the paper's average pooling), and the anchors add 32 and 64 px to the paper's
    128-512 for small objects.
    """

    def __init__(self, backbone: RFCNBackbone, num_classes: int, **kwargs: Any):
        if num_classes < 1:
            raise ValueError(f"num_classes counts the user's classes (no background), got {num_classes}")
        super().__init__(backbone, num_classes, **kwargs)
        self.num_classes = num_classes


def _rfcn_resnet(depth: int, num_classes: int, pretrained: bool | str | os.PathLike,
                 trainable_backbone_layers: int | None, kwargs: dict[str, Any]) -> RFCN:
    builder, weights = {18: (resnet18, ResNet18_Weights.IMAGENET1K_V1),
                        50: (resnet50, ResNet50_Weights.IMAGENET1K_V1),
                        101: (resnet101, ResNet101_Weights.IMAGENET1K_V1)}[depth]
    # Frozen BatchNorm with ImageNet statistics (detection batches are tiny); from scratch, live BN.
    norm = FrozenBatchNorm2d if pretrained else nn.BatchNorm2d
    if depth < 50:
        net = builder(weights=None, norm_layer=norm)
        dilate_basic_blocks(net.layer4)
    else:
        net = builder(weights=None, replace_stride_with_dilation=[False, False, True], norm_layer=norm)
    load_pretrained(net, pretrained, weights)
    trainable = trainable_layers(trainable_backbone_layers, pretrained, 5, 3)
    size_to_min_max(kwargs)
    reduced = kwargs.pop("reduced_channels", 1024 if depth >= 50 else 256)
    return RFCN(RFCNBackbone(net, trainable, reduced), num_classes, **kwargs)


# input_size is what `detseg train` resizes the data to (square, so no distortion); the model then
# rescales the shorter side to min_size (600 in the paper) itself.
@register_model(task="detect", backbone="resnet50", input_size=(3, 600, 600), paper="Dai et al. 2016")
def rfcn_resnet50(num_classes: int = 20, pretrained: bool | str | os.PathLike = False,
                  trainable_backbone_layers: int | None = None, size: int | None = None,
                  **kwargs: Any) -> RFCN:
    """R-FCN on ResNet-50 (conv5 dilated, stride 16). ``kwargs`` go to :class:`RFCN` (k, ps_pool,
    ohem_rois, min_size, max_size, anchor_sizes, score_thresh, nms_thresh, detections_per_img...)."""
    return _rfcn_resnet(50, num_classes, pretrained, trainable_backbone_layers, {"size": size, **kwargs})


@register_model(task="detect", backbone="resnet101", input_size=(3, 600, 600), paper="Dai et al. 2016")
def rfcn_resnet101(num_classes: int = 20, pretrained: bool | str | os.PathLike = False,
                   trainable_backbone_layers: int | None = None, size: int | None = None,
                  **kwargs: Any) -> RFCN:
    """R-FCN on ResNet-101, the paper's main model."""
    return _rfcn_resnet(101, num_classes, pretrained, trainable_backbone_layers, {"size": size, **kwargs})


@register_model(task="detect", backbone="resnet18", input_size=(3, 600, 600), paper="Dai et al. 2016")
def rfcn_resnet18(num_classes: int = 20, pretrained: bool | str | os.PathLike = False,
                  trainable_backbone_layers: int | None = None, size: int | None = None,
                  **kwargs: Any) -> RFCN:
    """R-FCN on ResNet-18 for CPU speed (not in the paper): conv5 dilated likewise, conv5 reduced to
    256 channels (``reduced_channels=``)."""
    return _rfcn_resnet(18, num_classes, pretrained, trainable_backbone_layers, {"size": size, **kwargs})
