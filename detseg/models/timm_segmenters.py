"""Segmenters on timm encoders: ``backbone="timm:NAME"`` (``--backbone timm:NAME``) for U-Net, FCN,
DeepLabv3 and DeepLabv3+, as segmentation_models_pytorch does.

    model = create_model("unet", backbone="timm:tf_efficientnet_lite0", pretrained="in1k", num_classes=12)
    model = create_model("timm_deeplabv3plus", backbone="timm:resnet18", num_classes=2)

The encoder is timm's ``features_only`` network: a list of maps, shallow to deep, whose strides and
channels come from its ``feature_info`` (``encoder.strides``, ``encoder.out_channels``); its parameter
names are timm's (``encoder.conv_stem.weight`` ...), so timm's weights load into it by name.
``pretrained``: a timm tag (``"in1k"``) or True (the backbone's tag, else timm's default), resolved by
:func:`detseg.models.timm_weights.resolve_timm_weights` (offline: the copy a package ships); or a
file / detseg checkpoint. The weights' input normalisation becomes the segmenter's ``mean``/``std``,
kept in the state dict (so train, eval, predict and export apply the same one).

Decoders (every output has the input's H, W; the multi-level ones, U-Net, FCN and FPN, pad the input
with the mean colour to a multiple of the encoder's coarsest stride and crop the logits back, so that
each level is exactly twice the next coarser one at any size, as on training crops):
- ``timm_unet``: U-Net decoder (upsample x2, concatenate the skip, two conv-BN-ReLU) per stage;
- ``timm_fcn``: FCN-8s: class scores of the stride-8/16/32 maps, upsampled and added (skips start at 0);
- ``timm_deeplabv3``: ASPP on the deepest map at output stride 16 (timm's dilation);
- ``timm_deeplabv3plus``: DeepLabv3+ (Chen et al. 2018): ASPP output upsampled to the stride-4 map,
  concatenated with its 48-channel projection, two 3x3 conv-BN-ReLU, classifier, upsampled x4;
- ``timm_fpn``: Semantic FPN (Kirillov et al. 2019, :mod:`detseg.models.fpn`): the pyramid on the maps
  at strides 4-32, each level brought to stride 4 and summed, classifier, upsampled x4.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from detseg.models.deeplab import DeepLabDecoder
from detseg.models.fpn import SemanticFPNHead
from detseg.models.registry import register_model
from detseg.models.timm_weights import (
    check_timm_name,
    import_timm,
    resolve_timm_weights,
    split_timm_name,
    timm_normalization,
    weights_tag,
)
from detseg.models.unet import EncoderUNetDecoder
from detseg.models.weights import (
    load_pretrained,
    load_state_dict_into,
    offline_requested,
)
from detseg.nn import ConvBNReLU, Segmenter, channel_stats, pad_to_multiple, resize_to

DEFAULT_BACKBONE = "timm:tf_efficientnet_lite0"

#: detseg segmenter family -> the timm-encoder model that ``backbone="timm:..."`` builds.
FAMILIES = {
    "unet": "timm_unet",
    "fcn": "timm_fcn",
    "deeplabv3plus": "timm_deeplabv3plus",
    "deeplabv3": "timm_deeplabv3",
    "fpn": "timm_fpn",
    "fasterrcnn": "timm_fasterrcnn",  # detectors: detseg.models.timm_detectors
    "retinanet": "timm_retinanet",
    "ssdlite": "timm_ssdlite",
}


def timm_segmenter_name(name: str) -> str:
    """The timm-encoder model for zoo model ``name`` (``"unet"``, ``"fcn8s_vgg16"``, ``"deeplabv3_*"``,
    ``"fasterrcnn_*"``, ``"retinanet_*"``, ``"ssdlite*"``)."""
    if name in FAMILIES.values():
        return name
    for family, timm_name in FAMILIES.items():
        if name.startswith(family):
            return timm_name
    raise ValueError(
        f"--backbone timm:... works with {', '.join(FAMILIES)} (models "
        f"{', '.join(FAMILIES.values())}); {name!r} is not one of them"
    )


def timm_encoder(backbone: str, in_channels: int = 3, output_stride: int = 32) -> nn.Module:
    """timm's ``features_only`` network for ``backbone`` (``"timm:NAME[.TAG]"``) with ``out_channels``
    and ``strides`` from its ``feature_info``; ``output_stride`` 8 or 16 dilates the last stages.
    A name timm does not know, or a network without ``features_only``, raises ValueError in one line."""
    name, _ = split_timm_name(backbone)
    check_timm_name(name)
    timm = import_timm()
    kwargs: dict[str, Any] = {"features_only": True, "pretrained": False, "in_chans": in_channels}
    if output_stride != 32:
        kwargs["output_stride"] = output_stride
    try:
        encoder = timm.create_model(name, **kwargs)
    except Exception as err:  # timm raises RuntimeError, TypeError, AssertionError... for these
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        where = f" at output stride {output_stride}" if output_stride != 32 else ""
        raise ValueError(f"timm model {name!r} has no features_only encoder{where}: {first}") from err
    encoder.out_channels = list(encoder.feature_info.channels())
    encoder.strides = list(encoder.feature_info.reduction())
    return encoder


class TimmSegmenter(Segmenter):
    """Base of the timm-encoder segmenters: builds ``encoder``, sets the weights' normalisation (saved
    in the state dict) and loads ``pretrained``; subclasses add ``decoder``/``head``."""

    def __init__(
        self, backbone: str, num_classes: int, in_channels: int = 3, output_stride: int = 32
    ) -> None:
        super().__init__(num_classes, in_channels)
        self.backbone_name = backbone
        self.encoder = timm_encoder(backbone, in_channels, output_stride)
        mean, std = channel_stats(in_channels, *timm_normalization(backbone))
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=True)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=True)

    def load_weights(self, pretrained: Any, offline: bool | None = None) -> Any:
        """Load ``pretrained`` (see the module docstring); returns the load report (None: nothing)."""
        tag, timm_weights = weights_tag(self.backbone_name, pretrained)
        if not timm_weights:
            return load_pretrained(self, pretrained)  # None for no weights
        name = split_timm_name(self.backbone_name)[0]
        state, description, cfg = resolve_timm_weights(name, tag, offline=offline_requested(offline))
        report = load_state_dict_into(self.encoder, state, description)
        # The classifier's layers have no place in a features_only encoder.
        mean, std = channel_stats(self.in_channels, cfg["mean"], cfg["std"])
        self.mean.copy_(torch.tensor(mean).view(1, -1, 1, 1))
        self.std.copy_(torch.tensor(std).view(1, -1, 1, 1))
        return report

    def reset_classifier(self, num_classes: int) -> None:
        old = self.head
        self.head = nn.Conv2d(old.in_channels, num_classes, old.kernel_size, padding=old.padding).to(
            old.weight.device
        )
        self.num_classes = num_classes


class TimmUNet(TimmSegmenter):
    """U-Net decoder on a timm encoder: one decoder block per encoder map (the last one upsamples to
    the input without a skip)."""

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        num_classes: int = 2,
        in_channels: int = 3,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
    ) -> None:
        super().__init__(backbone, num_classes, in_channels)
        n = len(self.encoder.out_channels)
        channels = list(decoder_channels)
        if len(channels) < n:
            channels = [channels[0]] * (n - len(channels)) + channels
        channels = channels[-n:]
        self.decoder = EncoderUNetDecoder(self.encoder.out_channels, channels)
        self.head = nn.Conv2d(channels[-1], num_classes, 3, padding=1)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, max(self.encoder.strides))
        return self.head(self.decoder(self.encoder(x), (x.shape[-2], x.shape[-1])))[..., :h, :w]


class TimmFPN(SemanticFPNHead, TimmSegmenter):
    """Semantic FPN on a timm encoder (the maps at strides 4, 8, 16 and 32 are C2..C5)."""

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        num_classes: int = 2,
        in_channels: int = 3,
        pyramid_channels: int = 256,
        segmentation_channels: int = 128,
        smooth: bool = True,
    ) -> None:
        super().__init__(backbone, num_classes, in_channels)
        self.build_fpn(pyramid_channels, segmentation_channels, smooth)


def _index_of_stride(strides: Sequence[int], stride: int) -> int:
    """The last map at ``stride`` (else the first deeper one)."""
    at = [i for i, s in enumerate(strides) if s == stride]
    if at:
        return at[-1]
    deeper = [i for i, s in enumerate(strides) if s > stride]
    return deeper[0] if deeper else len(strides) - 1


class ScoreFusion(nn.Module):
    """FCN's decoder: score maps deep to shallow ``[B, K, h_i, w_i]``, each upsampled (bilinear) to the
    next and added, the sum upsampled to ``size``."""

    def forward(self, scores: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        out = scores[0]
        for skip in scores[1:]:
            out = resize_to(out, (skip.shape[-2], skip.shape[-1])) + skip
        return resize_to(out, size)


class TimmFCN(TimmSegmenter):
    """FCN-8s on a timm encoder: 1x1 class scores of the stride-8, 16 and 32 maps; the deepest upsampled
    x2 (bilinear) and added to the next, twice, then upsampled to the input. The skip scores start at
    zero (as in the paper), so training begins from the stride-32 prediction."""

    def __init__(self, backbone: str = DEFAULT_BACKBONE, num_classes: int = 2, in_channels: int = 3) -> None:
        super().__init__(backbone, num_classes, in_channels)
        strides = self.encoder.strides
        self.taps = [_index_of_stride(strides, s) for s in (32, 16, 8)]
        self.decoder = ScoreFusion()
        self._build_head(num_classes)

    def _build_head(self, num_classes: int) -> None:
        ch = self.encoder.out_channels
        self.head = nn.ModuleList(nn.Conv2d(ch[i], num_classes, 1) for i in self.taps)
        for skip in self.head[1:]:
            nn.init.zeros_(skip.weight)
            nn.init.zeros_(skip.bias)

    def reset_classifier(self, num_classes: int) -> None:
        device = self.head[0].weight.device
        self._build_head(num_classes)
        self.head.to(device)
        self.num_classes = num_classes

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, max(self.encoder.strides))
        feats = self.encoder(x)
        scores = [score(feats[i]) for score, i in zip(self.head, self.taps, strict=True)]
        return self.decoder(scores, (x.shape[-2], x.shape[-1]))[..., :h, :w]


class TimmDeepLabV3(TimmSegmenter):
    """DeepLabv3 on a timm encoder at ``output_stride`` 16 (or 8): ASPP + 3x3 conv-BN-ReLU on the deepest
    map, 1x1 classifier, bilinear upsampling. Training needs batches of 2 or more (ASPP pooling)."""

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        num_classes: int = 2,
        in_channels: int = 3,
        output_stride: int = 16,
        atrous_rates: Sequence[int] | None = None,
    ) -> None:
        super().__init__(backbone, num_classes, in_channels, output_stride)
        rates = atrous_rates or ((12, 24, 36) if output_stride == 8 else (6, 12, 18))
        self.decoder = DeepLabDecoder(self.encoder.out_channels[-1], rates)
        self.head = nn.Conv2d(256, num_classes, 1)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        _check_batch(self, x)
        return resize_to(self.head(self.decoder(self.encoder(x)[-1])), (x.shape[-2], x.shape[-1]))


def _check_batch(model: nn.Module, x: torch.Tensor) -> None:
    if model.training and x.shape[0] < 2:
        raise ValueError(
            f"{type(model).__name__} trains on batches of 2 or more images: the ASPP image-pooling batch "
            "norm sees one value per channel and image (use batch size >= 2, or model.eval())"
        )


class DeepLabV3PlusDecoder(nn.Module):
    """ASPP on the deep map, upsampled to the low-level (stride 4) map, concatenated with its
    ``low_channels`` 1x1 projection, two 3x3 conv-BN-ReLU: ``-> Tensor[B, channels, H/4, W/4]``."""

    def __init__(
        self,
        deep_channels: int,
        low_channels_in: int,
        atrous_rates: Sequence[int],
        channels: int = 256,
        low_channels: int = 48,
    ) -> None:
        super().__init__()
        self.aspp = DeepLabDecoder(deep_channels, atrous_rates, channels)
        self.project = ConvBNReLU(low_channels_in, low_channels, 1)
        self.fuse = nn.Sequential(
            ConvBNReLU(channels + low_channels, channels, 3), ConvBNReLU(channels, channels, 3)
        )

    def forward(self, low: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        deep = resize_to(self.aspp(deep), (low.shape[-2], low.shape[-1]))
        return self.fuse(torch.cat([deep, self.project(low)], dim=1))


class TimmDeepLabV3Plus(TimmSegmenter):
    """DeepLabv3+ (Chen et al. 2018) on a timm encoder at ``output_stride`` 16 (or 8)."""

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        num_classes: int = 2,
        in_channels: int = 3,
        output_stride: int = 16,
        atrous_rates: Sequence[int] | None = None,
    ) -> None:
        super().__init__(backbone, num_classes, in_channels, output_stride)
        rates = atrous_rates or ((12, 24, 36) if output_stride == 8 else (6, 12, 18))
        self.low = _index_of_stride(self.encoder.strides, 4)
        self.decoder = DeepLabV3PlusDecoder(
            self.encoder.out_channels[-1], self.encoder.out_channels[self.low], rates
        )
        self.head = nn.Conv2d(256, num_classes, 1)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        _check_batch(self, x)
        feats = self.encoder(x)
        out = self.head(self.decoder(feats[self.low], feats[-1]))
        return F.interpolate(out, size=(x.shape[-2], x.shape[-1]), mode="bilinear", align_corners=False)


def _build(cls: type, pretrained: Any, offline: bool | None = None, **kwargs) -> TimmSegmenter:
    model = cls(**kwargs)
    model.pretrained_report = model.load_weights(pretrained, offline)
    return model


@register_model(task="segment", backbone="timm", input_size=(3, 512, 512), paper="Ronneberger et al. 2015")
def timm_unet(
    num_classes: int = 2,
    in_channels: int = 3,
    pretrained: Any = None,
    backbone: str = DEFAULT_BACKBONE,
    **kwargs,
) -> TimmUNet:
    """U-Net decoder on a timm encoder (``backbone="timm:NAME"``)."""
    return _build(TimmUNet, pretrained, backbone=backbone, num_classes=num_classes, in_channels=in_channels,
                  **kwargs)


@register_model(task="segment", backbone="timm", input_size=(3, 512, 512), paper="Long et al. 2015")
def timm_fcn(
    num_classes: int = 2, in_channels: int = 3, pretrained: Any = None, backbone: str = DEFAULT_BACKBONE
) -> TimmFCN:
    """FCN-8s-style decoder on a timm encoder."""
    return _build(TimmFCN, pretrained, backbone=backbone, num_classes=num_classes, in_channels=in_channels)


@register_model(task="segment", backbone="timm", input_size=(3, 513, 513), paper="Chen et al. 2017")
def timm_deeplabv3(
    num_classes: int = 2,
    in_channels: int = 3,
    pretrained: Any = None,
    backbone: str = DEFAULT_BACKBONE,
    **kwargs,
) -> TimmDeepLabV3:
    """DeepLabv3 on a timm encoder, output stride 16."""
    return _build(TimmDeepLabV3, pretrained, backbone=backbone, num_classes=num_classes,
                  in_channels=in_channels, **kwargs)


@register_model(task="segment", backbone="timm", input_size=(3, 513, 513), paper="Chen et al. 2018")
def timm_deeplabv3plus(
    num_classes: int = 2,
    in_channels: int = 3,
    pretrained: Any = None,
    backbone: str = DEFAULT_BACKBONE,
    **kwargs,
) -> TimmDeepLabV3Plus:
    """DeepLabv3+ on a timm encoder, output stride 16."""
    return _build(TimmDeepLabV3Plus, pretrained, backbone=backbone, num_classes=num_classes,
                  in_channels=in_channels, **kwargs)


@register_model(task="segment", backbone="timm", input_size=(3, 512, 512), paper="Kirillov et al. 2019")
def timm_fpn(
    num_classes: int = 2,
    in_channels: int = 3,
    pretrained: Any = None,
    backbone: str = DEFAULT_BACKBONE,
    **kwargs,
) -> TimmFPN:
    """Semantic FPN on a timm encoder."""
    return _build(TimmFPN, pretrained, backbone=backbone, num_classes=num_classes, in_channels=in_channels,
                  **kwargs)
