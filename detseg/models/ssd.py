"""SSD300 and SSD512 on VGG-16 (Liu et al. 2016, "SSD: Single Shot MultiBox Detector").

Built on torchvision's SSD meta-architecture (transform -> backbone -> head -> default boxes ->
loss or post-processing), its ``DefaultBoxGenerator``, ``BoxCoder`` (variances 0.1/0.2),
``SSDMatcher`` (IoU >= 0.5 plus each ground truth's best default box) and ``batched_nms``
(per-class NMS). detseg adds what torchvision lacks:

- SSD512 as in the paper (torchvision has none): 7 feature maps 64, 32, 16, 8, 4, 2, 1 -> 24564 boxes;
- the multibox loss as a plain function (:func:`multibox_loss`, checked against torchvision's);
- 0-based labels, input checks and offline pre-trained weights (:mod:`detseg.models.detection_utils`).
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import VGG16_Weights
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD, SSDFeatureExtractorVGG, _vgg_extractor, _xavier_init
from torchvision.models.vgg import cfgs as vgg_cfgs
from torchvision.models.vgg import make_layers

from detseg.models.detection_utils import ZeroBasedLabels, load_pretrained, trainable_layers
from detseg.models.registry import register_model

# The paper's default boxes (Caffe release): scales s_k of each map, aspect ratios {1, 2, 1/2(, 3, 1/3)}.
SSD300_BOXES = dict(
    aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]],
    scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
    steps=[8, 16, 32, 64, 100, 300],
)
SSD512_BOXES = dict(
    aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]],
    scales=[0.07, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 1.05],
    steps=[8, 16, 32, 64, 128, 256, 512],
)
# VGG16_Weights.IMAGENET1K_FEATURES expect Caffe-style input: 0..255 minus the mean.
CAFFE_MEAN, CAFFE_STD = [0.48235, 0.45882, 0.40784], [1.0 / 255.0] * 3
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def multibox_loss(
    cls_logits: Tensor,
    bbox_regression: Tensor,
    cls_targets: Tensor,
    regression_targets: Tensor,
    neg_to_pos_ratio: float = 3.0,
    min_negatives: int = 0,
) -> dict[str, Tensor]:
    """SSD's loss L = (L_conf + L_loc) / N over the N matched (positive) default boxes of the batch.

    Args:
        cls_logits: ``Tensor[B, A, C+1]`` class scores per default box (column 0 = background).
        bbox_regression: ``Tensor[B, A, 4]`` predicted offsets.
        cls_targets: ``int64 [B, A]``, 0 for background, else the matched box's class + 1.
        regression_targets: ``Tensor[B, A, 4]`` encoded matched boxes (used where ``cls_targets > 0``).
        neg_to_pos_ratio: hard negative mining keeps the ``ratio * positives`` background boxes with
            the highest confidence loss in each image (3:1 in the paper).
        min_negatives: negatives kept in an image even without positives (0 as in the paper, where an
            image without objects adds no loss).

    Returns ``{"bbox_regression": smooth L1 / N, "classification": softmax CE / N}``.
    """
    positive = cls_targets > 0
    num_pos = positive.sum(1, keepdim=True)
    loc = F.smooth_l1_loss(bbox_regression[positive], regression_targets[positive], reduction="sum")
    ce = F.cross_entropy(cls_logits.flatten(0, 1), cls_targets.flatten(), reduction="none")
    ce = ce.view_as(cls_targets)
    # Rank the background boxes of each image by their loss; positives go last.
    negative_ce = ce.detach().masked_fill(positive, -float("inf"))
    rank = negative_ce.argsort(1, descending=True).argsort(1)
    num_neg = (neg_to_pos_ratio * num_pos).clamp(min=min_negatives)
    hard_negative = (rank < num_neg) & ~positive
    n = max(1, int(num_pos.sum()))
    return {"bbox_regression": loc / n, "classification": (ce[positive].sum() + ce[hard_negative].sum()) / n}


class SSDDetector(ZeroBasedLabels, SSD):
    """torchvision's SSD with detseg's contract: ``num_classes`` user classes, 0-based labels.

    ``model(images, targets)`` -> ``{"bbox_regression", "classification"}`` in training; in eval a list
    of ``{"boxes": FloatTensor[N, 4] XYXY, "labels": int64 [N] (0-based), "scores": FloatTensor[N]}``.
    Other keyword arguments go to torchvision's ``SSD`` (score_thresh 0.01, nms_thresh 0.45,
    detections_per_img 200, topk_candidates 400, iou_thresh 0.5, positive_fraction 0.25 -> 3:1).
    """

    def __init__(
        self,
        backbone: nn.Module,
        anchor_generator: DefaultBoxGenerator,
        size: tuple[int, int],
        num_classes: int,
        min_negatives: int = 0,
        min_box_size: float = 1.0,
        **kwargs: Any,
    ):
        if num_classes < 1:
            raise ValueError(f"num_classes counts the user's classes (no background) and must be >= 1, "
                             f"got {num_classes}")
        super().__init__(backbone, anchor_generator, size, num_classes + 1, **kwargs)
        self.num_classes = num_classes
        self.min_negatives = min_negatives
        self.min_box_size = min_box_size

    def compute_loss(
        self,
        targets: list[dict[str, Tensor]],
        head_outputs: dict[str, Tensor],
        anchors: list[Tensor],
        matched_idxs: list[Tensor],
    ) -> dict[str, Tensor]:
        """Targets per default box from the matches, then :func:`multibox_loss`."""
        cls_logits, bbox_regression = head_outputs["cls_logits"], head_outputs["bbox_regression"]
        cls_targets = torch.zeros(cls_logits.shape[:2], dtype=torch.int64, device=cls_logits.device)
        regression_targets = torch.zeros_like(bbox_regression, dtype=torch.float32)  # bf16 under autocast
        for i, (target, anchors_i, matched) in enumerate(zip(targets, anchors, matched_idxs, strict=True)):
            fg = torch.where(matched >= 0)[0]
            cls_targets[i, fg] = target["labels"][matched[fg]]
            regression_targets[i, fg] = self.box_coder.encode_single(target["boxes"][matched[fg]],
                                                                     anchors_i[fg])
        return multibox_loss(cls_logits, bbox_regression, cls_targets, regression_targets,
                             self.neg_to_pos_ratio, self.min_negatives)


def _ssd512_extractor(extractor: SSDFeatureExtractorVGG) -> SSDFeatureExtractorVGG:
    """Turn torchvision's SSD300 VGG extractor into the paper's SSD512 one (conv8_2..conv12_2 at 16..1).

    torchvision's ``highres`` option keeps SSD300's unpadded 3x3 convs (maps 6 and 4, not 4 and 2).
    """
    def block(kernel: int, stride: int, padding: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(256, 128, kernel_size=1), nn.ReLU(inplace=True),
            nn.Conv2d(128, 256, kernel_size=kernel, stride=stride, padding=padding), nn.ReLU(inplace=True),
        )

    new = [block(3, 2, 1), block(3, 2, 1), block(4, 1, 1)]  # conv10_2, conv11_2, conv12_2
    _xavier_init(nn.ModuleList(new))
    extractor.extra = nn.ModuleList([*extractor.extra[:3], *new])
    return extractor


def vgg16_features() -> nn.Module:
    """VGG-16's convolutional part under ``.features`` (state-dict keys as torchvision's ``vgg16``).

    Building torchvision's whole ``vgg16`` would also initialise its 120M-parameter classifier, unused.
    """
    holder = nn.Module()
    holder.features = make_layers(vgg_cfgs["D"])
    for m in holder.features.modules():
        if isinstance(m, nn.Conv2d):  # torchvision's VGG initialisation
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return holder


def _ssd_vgg16(
    size: int,
    num_classes: int,
    pretrained: bool | str | os.PathLike,
    trainable_backbone_layers: int | None,
    kwargs: dict[str, Any],
) -> SSDDetector:
    trainable = trainable_layers(trainable_backbone_layers, pretrained, 5, 4)
    vgg = vgg16_features()
    load_pretrained(vgg, pretrained, VGG16_Weights.IMAGENET1K_FEATURES)
    extractor = _vgg_extractor(vgg, False, trainable)
    boxes = SSD300_BOXES if size == 300 else SSD512_BOXES
    if size == 512:
        extractor = _ssd512_extractor(extractor)
    # Declared, so that torchvision's SSD does not run a forward pass at full size to find them.
    extractor.out_channels = [512, 1024, 512, 256, 256, 256] + ([256] if size == 512 else [])
    anchor_generator = DefaultBoxGenerator(**boxes)
    # Caffe-style input for the ImageNet weights; unit-scale input trains better from scratch.
    mean, std = (CAFFE_MEAN, CAFFE_STD) if pretrained else (IMAGENET_MEAN, IMAGENET_STD)
    kwargs = {"image_mean": mean, "image_std": std, **kwargs}
    return SSDDetector(extractor, anchor_generator, (size, size), num_classes, **kwargs)


@register_model(task="detect", backbone="vgg16", input_size=(3, 300, 300), paper="Liu et al. 2016",
                default_boxes=8732, torchvision="ssd300_vgg16")
def ssd300_vgg16(
    num_classes: int = 20,
    pretrained: bool | str | os.PathLike = False,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> SSDDetector:
    """SSD300: VGG-16 with conv4_3 + L2Norm, dilated fc6/fc7, conv8_2..conv11_2; 8732 default boxes.

    ``pretrained``: True loads torchvision's ImageNet VGG-16 features from the torch.hub cache (or
    says which file to put where), a path loads that file. ``trainable_backbone_layers`` (0-5, default
    4 with pre-trained weights, else 5) counts trainable VGG stages from the top.
    """
    return _ssd_vgg16(300, num_classes, pretrained, trainable_backbone_layers, kwargs)


@register_model(task="detect", backbone="vgg16", input_size=(3, 512, 512), paper="Liu et al. 2016",
                default_boxes=24564)
def ssd512_vgg16(
    num_classes: int = 20,
    pretrained: bool | str | os.PathLike = False,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> SSDDetector:
    """SSD512: SSD300 plus conv12_2, maps 64..1, 24564 default boxes (paper, footnote 5)."""
    return _ssd_vgg16(512, num_classes, pretrained, trainable_backbone_layers, kwargs)
