"""Encoders built from torchvision's classification networks (``weights=None``), with the same
parameter names so torchvision state dicts load.

Every encoder maps ``Tensor[B, C_in, H, W]`` to a list of feature maps, shallow to deep, and lists
their ``out_channels`` and ``strides``. Pre-trained weights are resolved and loaded by
:mod:`detseg.models.weights` (its names are re-exported here for the modules that import them from
this one).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models import vgg as tv_vgg

from detseg.models.weights import (  # noqa: F401 (re-exported)
    PRETRAINED_NAMES,
    LoadReport,
    WeightsDeferred,
    WeightsNotFoundError,
    _extract_state_dict,
    adapt_first_conv,
    cached_weights_path,
    collect_reports,
    file_sha256,
    load_pretrained,
    load_state_dict_into,
    read_state_dict,
    read_weights_file,
    resolve_torchvision_weights,
    split_sha256,
)


def replace_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A copy of ``conv`` taking ``in_channels`` inputs (weights adapted by :func:`adapt_first_conv`)."""
    if conv.in_channels == in_channels:
        return conv
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        conv.bias is not None,
    )
    with torch.no_grad():
        new.weight.copy_(adapt_first_conv(conv.weight, in_channels))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


# ---------------------------------------------------------------------------------------------------
# VGG-16


VGG16_CFG = tv_vgg.cfgs["D"]


class VGGEncoder(nn.Module):
    """VGG-16 ``features`` (torchvision names: ``features.N``), split into 5 stages at the max pools,
    optionally followed by fc6/fc7 as convolutions (FCN: 7x7 conv and 1x1 conv with ``fc_channels``).

    ``forward(x) -> [pool1, pool2, pool3, pool4, pool5(, fc7)]`` at strides 2..32 (fc7 at 32).
    ``width`` scales every channel count (1.0 is VGG-16; small values for fast tests).
    """

    torchvision_key_map = {"classifier.0.": "fc6.", "classifier.3.": "fc7."}

    def __init__(
        self,
        in_channels: int = 3,
        batch_norm: bool = False,
        width: float = 1.0,
        fc_channels: int | None = None,
        fc6_kernel: int = 7,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        cfg = [v if v == "M" else max(1, round(v * width)) for v in VGG16_CFG]
        self.features = tv_vgg.make_layers(cfg, batch_norm=batch_norm)
        self.features[0] = replace_first_conv(self.features[0], in_channels)
        self.pool_positions = [i for i, m in enumerate(self.features) if isinstance(m, nn.MaxPool2d)]
        widths = [v for v in cfg if v != "M"]
        self.out_channels = [widths[1], widths[3], widths[6], widths[9], widths[12]]
        self.strides = [2, 4, 8, 16, 32]
        self.fc_channels = fc_channels
        if fc_channels:
            # fc6 as a 7x7 conv; padding 3 keeps the map's size, so any input size works (the paper
            # pads the input by 100 instead and crops).
            self.fc6 = nn.Conv2d(widths[-1], fc_channels, fc6_kernel, padding=fc6_kernel // 2)
            self.fc7 = nn.Conv2d(fc_channels, fc_channels, 1)
            self.drop = nn.Dropout2d(dropout)
            self.out_channels.append(fc_channels)
            self.strides.append(32)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's VGG initialisation (make_layers alone keeps PyTorch's default, under which the
        # signal fades through 13 plain convolutions and an untrained VGG-16 barely learns).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_fc(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(F.relu(self.fc6(x)))
        return self.drop(F.relu(self.fc7(x)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.pool_positions:
                outs.append(x)
        if self.fc_channels:
            outs.append(self.forward_fc(x))
        return outs

    def forward_with_indices(self, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, tuple]]]:
        """Run the conv layers, pooling with remembered indices (DeconvNet): returns the pool5 map and
        ``[(indices, pre-pool size)]`` for pool1..pool5."""
        remembered = []
        for layer in self.features:
            if isinstance(layer, nn.MaxPool2d):
                size = (x.shape[-2], x.shape[-1])
                x, idx = F.max_pool2d(x, layer.kernel_size, layer.stride, return_indices=True)
                remembered.append((idx, size))
            else:
                x = layer(x)
        return x, remembered


# ---------------------------------------------------------------------------------------------------
# ResNet


RESNETS = {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"}


class ResNetEncoder(nn.Module):
    """torchvision ResNet without avgpool/fc (same parameter names: ``conv1``, ``layer1.0.conv1`` ...).

    ``output_stride`` 32, 16 or 8: the last one or two stages trade their stride for dilation
    (``replace_stride_with_dilation``, bottleneck ResNets only). ``multi_grid`` (DeepLabv3, e.g.
    (1, 2, 4)) sets layer4's unit dilations to ``rate * grid[i]``, ``rate`` being layer4's dilation.
    ``forward(x) -> [stem, layer1, layer2, layer3, layer4]`` at strides 2, 4, 8, 16|8, 32|16|8.
    """

    def __init__(
        self,
        name: str = "resnet50",
        in_channels: int = 3,
        output_stride: int = 32,
        multi_grid: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if name not in RESNETS:
            raise ValueError(f"unknown ResNet {name!r}; choose from {sorted(RESNETS)}")
        dilate = {32: [False, False, False], 16: [False, False, True], 8: [False, True, True]}
        if output_stride not in dilate:
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        if output_stride != 32 and name in ("resnet18", "resnet34"):
            raise ValueError(f"{name} (basic blocks) cannot be dilated; use output_stride=32 or resnet50+")
        builder = getattr(torchvision.models, name)
        net = builder(weights=None, replace_stride_with_dilation=dilate[output_stride])
        self.conv1 = replace_first_conv(net.conv1, in_channels)
        self.bn1, self.relu, self.maxpool = net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        if multi_grid is not None:
            rate = 32 // output_stride
            if len(multi_grid) != len(self.layer4):
                raise ValueError(f"multi_grid needs {len(self.layer4)} rates, got {tuple(multi_grid)}")
            for block, grid in zip(self.layer4, multi_grid, strict=True):
                conv = block.conv2  # the 3x3 convolution of a unit (both block types)
                conv.dilation = (rate * grid, rate * grid)
                conv.padding = (rate * grid, rate * grid)
        expansion = 4 if name in ("resnet50", "resnet101", "resnet152") else 1
        self.out_channels = [64, 64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion]
        self.strides = [2, 4, 8, min(16, output_stride), output_stride]
        self.arch = name

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        c2 = self.layer1(self.maxpool(stem))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        return [stem, c2, c3, c4, self.layer4(c4)]


# ---------------------------------------------------------------------------------------------------
# MobileNets


class MobileNetEncoder(nn.Module):
    """torchvision MobileNetV2 or MobileNetV3-Large ``features`` (names ``features.N...``), returning the
    output of the last block at each stride.

    ``mobilenet_v2``: strides 2, 4, 8, 16, 32 (channels 16, 24, 32, 96, 1280).
    ``mobilenet_v3_large`` with ``dilated=True`` (as torchvision's DeepLabv3): strides 2, 4, 8, 16
    (channels 16, 24, 40, 960), the last stage dilated instead of strided.
    """

    def __init__(self, name: str = "mobilenet_v2", in_channels: int = 3, dilated: bool = False) -> None:
        super().__init__()
        if name == "mobilenet_v2":
            self.features = torchvision.models.mobilenet_v2(weights=None).features
            self.stage_ends = [1, 3, 6, 13, 18]
            self.strides = [2, 4, 8, 16, 32]
        elif name == "mobilenet_v3_large":
            self.features = torchvision.models.mobilenet_v3_large(weights=None, dilated=dilated).features
            self.stage_ends = [1, 3, 6, 12, 16] if not dilated else [1, 3, 6, 16]
            self.strides = [2, 4, 8, 16, 32] if not dilated else [2, 4, 8, 16]
        else:
            raise ValueError(f"unknown MobileNet {name!r}; choose mobilenet_v2 or mobilenet_v3_large")
        self.features[0][0] = replace_first_conv(self.features[0][0], in_channels)
        self.out_channels = [_out_channels(self.features[i]) for i in self.stage_ends]
        self.arch = name

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, block in enumerate(self.features):
            x = block(x)
            if i in self.stage_ends:
                outs.append(x)
        return outs


def _out_channels(block: nn.Module) -> int:
    if hasattr(block, "out_channels"):
        return int(block.out_channels)
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


def build_encoder(name: str, in_channels: int = 3, **kwargs) -> nn.Module:
    """An encoder by torchvision name: vgg16, vgg16_bn, resnet*, mobilenet_v2, mobilenet_v3_large."""
    if name in ("vgg16", "vgg16_bn"):
        return VGGEncoder(in_channels, batch_norm=name == "vgg16_bn", **kwargs)
    if name in RESNETS:
        return ResNetEncoder(name, in_channels, **kwargs)
    if name.startswith("mobilenet"):
        return MobileNetEncoder(name, in_channels, **kwargs)
    raise ValueError(f"unknown encoder {name!r}")
