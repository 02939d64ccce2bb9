"""Encoders built from torchvision's classification networks (``weights=None``), with the same
parameter names so torchvision state dicts load, and the one pre-trained weight loader of detseg
(segmenters, classifiers and detectors all use :func:`load_pretrained`); it never downloads.

Every encoder maps ``Tensor[B, C_in, H, W]`` to a list of feature maps, shallow to deep, and lists
their ``out_channels`` and ``strides``.

Pre-trained weights (``pretrained=``) come from
- ``True`` (or ``"imagenet"``, ``"default"``, ``"torchvision"``): the builder's torchvision weights;
- a torchvision weights name (``"ResNet50_Weights.IMAGENET1K_V2"``, ``"IMAGENET1K_V1"``, ``"DEFAULT"``)
  when the file is already in torch's hub cache (``$TORCH_HOME/hub/checkpoints``); otherwise
  :class:`WeightsNotFoundError` says which file to put where;
- a local file (``.pth``/``.pt``); a SHA-256 (or its prefix) checks it, given as ``sha256=`` or as
  ``"path#sha256=HEX"``;
- a detseg checkpoint (a dict holding the model's state dict under ``"model"`` or ``"state_dict"``);
- ``"zoo:NAME"``: the checkpoint ``detseg zoo build NAME`` cached (see :mod:`detseg.zoo.build`).
Files are read with ``torch.load(weights_only=True)``. Keys are matched after removing ``module.`` and
trying the usual prefixes; a 3-channel first convolution is adapted to other input channel counts
(summed for greyscale) and VGG's fully connected fc6/fc7 are reshaped into convolutions.
:class:`LoadReport` says what loaded, what did not and why.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models import vgg as tv_vgg

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------
# Loading weights

#: ``pretrained`` strings meaning "the builder's torchvision weights" (as ``pretrained=True``).
PRETRAINED_NAMES = {"true", "imagenet", "default", "torchvision"}


class WeightsNotFoundError(FileNotFoundError, ValueError):
    """Pre-trained weights that are not on this machine (detseg never downloads). Both a
    ``FileNotFoundError`` and a ``ValueError``, so the CLI prints it as one line."""


class WeightsDeferred:
    """A true ``pretrained`` value that loads nothing: the builder makes the architecture it makes for
    pre-trained weights (frozen BatchNorm, full MobileNet tail, Caffe input scaling), and the caller
    loads a whole model's state dict afterwards (:func:`detseg.models.zoo.create_model` does)."""

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "WeightsDeferred()"


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did: keys loaded as they were, loaded after a reshape
    (first-conv channel adaptation, fc -> conv), skipped for a shape mismatch, missing in the source,
    unexpected (in the source but not in the model)."""

    source: str
    loaded: list[str] = field(default_factory=list)
    reshaped: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def summary(self) -> str:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" ... (+{len(keys) - 5})" if len(keys) > 5 else "")

        parts = [f"loaded {len(self.loaded)} tensors from {self.source}"]
        for name in ("reshaped", "mismatched", "missing", "unexpected"):
            keys = getattr(self, name)
            if keys:
                parts.append(f"{len(keys)} {name}: {few(keys)}")
        return "; ".join(parts)


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt conv weights ``[O, 3, k, k]`` to ``in_channels`` inputs: greyscale sums the three (a grey
    image repeated three times gives the same response); otherwise the RGB filters repeat cyclically,
    scaled by ``3 / in_channels`` to keep the response's scale (as timm does)."""
    if in_channels == weight.shape[1]:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = -(-in_channels // weight.shape[1])
    return weight.repeat(1, reps, 1, 1)[:, :in_channels] * (weight.shape[1] / in_channels)


def resolve_torchvision_weights(name: str, arch: str | None = None, default: Any = None):
    """A torchvision ``WeightsEnum`` member from ``"Enum.MEMBER"`` or ``"MEMBER"``/``"DEFAULT"``,
    resolved against ``arch`` (a torchvision model name) or the enum of ``default`` (a member)."""
    try:
        if "." in name:
            return torchvision.models.get_weight(name)
        if default is not None:
            enum = type(default)
        elif arch is not None:
            enum = torchvision.models.get_model_weights(arch)
        else:
            raise ValueError("no architecture to resolve it against")
        return enum.DEFAULT if name == "DEFAULT" else enum[name]
    except (KeyError, ValueError, AttributeError) as err:
        raise ValueError(f"unknown torchvision weights {name!r} for {arch or 'any model'}: {err}") from err


def cached_weights_path(weights: Any) -> Path:
    """Where torch.hub keeps the file of a torchvision ``WeightsEnum`` member."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file, as hex."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_sha256(path: Path, expected: str) -> None:
    actual = file_sha256(path)
    if not actual.startswith(expected.lower()):
        raise ValueError(f"{path}: SHA-256 is {actual}, expected {expected}; refusing to load it")


def _extract_state_dict(obj: object, where: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        ema = obj.get("ema")
        if isinstance(ema, Mapping) and isinstance(ema.get("model"), Mapping):
            obj = {"model": ema["model"]}  # a run trained with --ema: the averaged weights it was scored on
        for key in ("model", "state_dict", "model_state"):
            inner = obj.get(key)
            tensors = isinstance(inner, Mapping) and all(isinstance(v, torch.Tensor) for v in inner.values())
            if inner and tensors:
                return dict(inner)
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
    raise ValueError(f"{where}: no state dict found (expected tensors, or a checkpoint with a 'model' entry)")


def split_sha256(source: str | Path, sha256: str | None = None) -> tuple[str, str | None]:
    """``"path#sha256=HEX"`` -> ``("path", "HEX")``; an explicit ``sha256`` must agree with it."""
    text = str(source)
    match = re.fullmatch(r"(.*)#sha256=([0-9a-fA-F]+)", text)
    if not match:
        return text, sha256
    if sha256 and not (match.group(2).lower().startswith(sha256.lower()) or
                       sha256.lower().startswith(match.group(2).lower())):
        raise ValueError(f"{text}: the SHA-256 in the name disagrees with sha256={sha256}")
    return match.group(1), sha256 or match.group(2)


def read_weights_file(path: str | Path, sha256: str | None = None) -> Any:
    """``torch.load(path, weights_only=True)`` after checking the file's SHA-256 (or prefix) when given."""
    path = Path(path)
    if sha256:
        _check_sha256(path, sha256)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickled code (refused by weights_only) or a damaged file: say which file
        raise ValueError(f"{path}: not a file torch.load(weights_only=True) can read ({err})") from err


def read_state_dict(
    source: str | Path | bool,
    arch: str | None = None,
    sha256: str | None = None,
    weights: Any = None,
) -> tuple[dict[str, torch.Tensor], str]:
    """Read weights from a path, a detseg checkpoint, ``zoo:NAME`` or a cached torchvision weights name
    (``True`` and :data:`PRETRAINED_NAMES` mean ``weights``, a torchvision ``WeightsEnum`` member, or
    ``arch``'s default weights).

    Returns ``(state_dict, description)``. Never downloads; ``torch.load(weights_only=True)``.
    """
    if source is True or (isinstance(source, str) and source.lower() in PRETRAINED_NAMES):
        if weights is None and arch is None:
            raise ValueError(f"pretrained={source!r}: this model names no torchvision weights; pass a file")
        source = "DEFAULT" if weights is None else f"{type(weights).__name__}.{weights.name}"
    text, sha256 = split_sha256(source, sha256)
    if text.startswith("zoo:"):
        from detseg.zoo.build import zoo_weights

        path, recorded = zoo_weights(text.removeprefix("zoo:"))
        text, sha256 = str(path), sha256 or recorded
    path = Path(text)
    if path.is_file():
        return _extract_state_dict(read_weights_file(path, sha256), str(path)), str(path)
    if text.endswith((".pt", ".pth", ".ckpt", ".bin")) or "/" in text or os.sep in text:
        raise WeightsNotFoundError(f"pretrained weights file not found: {text}")
    resolved = resolve_torchvision_weights(text, arch, weights)
    cached = cached_weights_path(resolved)
    if not cached.is_file():
        raise WeightsNotFoundError(
            f"torchvision weights {resolved} ({cached.name}) are not on this machine and detseg never "
            f"downloads: fetch {resolved.url} and put it at {cached} (torch.hub's cache, $TORCH_HOME), "
            "or pass the path of a local copy as pretrained (or no pretrained to train from scratch)"
        )
    match = re.search(r"-([a-f0-9]{8,})\.", cached.name)  # torchvision names files <arch>-<sha256 prefix>.pth
    expected = sha256 or (match.group(1) if match else "")
    if expected:
        _check_sha256(cached, expected)
    return _extract_state_dict(read_weights_file(cached), str(cached)), f"{resolved} ({cached})"


_PREFIXES = (("", ""), ("", "encoder."), ("backbone.", "encoder."), ("encoder.", ""), ("backbone.", ""))


def _rename(state: Mapping[str, torch.Tensor], key_map: Mapping[str, str]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")  # DistributedDataParallel's wrapper
        for old, new in key_map.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = value
    return out


def load_state_dict_into(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str = "state dict",
    key_map: Mapping[str, str] | None = None,
) -> LoadReport:
    """Load what fits of ``state`` into ``module`` and report the rest (see the module docstring).

    ``key_map``: source key prefixes renamed first (e.g. VGG's ``classifier.0.`` -> ``fc6.``); then the
    prefix pairing (none, ``encoder.``, ``backbone.``) that matches most keys is used.
    """
    target = module.state_dict()
    renamed = _rename(state, key_map or {})
    best: dict[str, torch.Tensor] = renamed
    for src, dst in _PREFIXES:
        mapped = {dst + k[len(src) :] if k.startswith(src) else k: v for k, v in renamed.items()}
        if sum(k in target for k in mapped) > sum(k in target for k in best):
            best = mapped
    report = LoadReport(source)
    to_load = {}
    for key, value in best.items():
        if key not in target:
            # BatchNorm's step counter is no weight: FrozenBatchNorm2d has none, BatchNorm2d one each.
            if not key.endswith("num_batches_tracked"):
                report.unexpected.append(key)
            continue
        want = target[key]
        if value.shape == want.shape:
            to_load[key] = value
            report.loaded.append(key)
        elif (
            value.ndim == 4
            and want.ndim == 4
            and value.shape[0] == want.shape[0]
            and value.shape[2:] == want.shape[2:]
            and value.shape[1] == 3
        ):
            to_load[key] = adapt_first_conv(value, want.shape[1])
            report.reshaped.append(key)
        elif value.numel() == want.numel() and value.ndim == 2 and want.ndim == 4:
            to_load[key] = value.reshape(want.shape)  # a fully connected layer seen as a convolution (FCN)
            report.reshaped.append(key)
        else:
            report.mismatched.append(f"{key} {tuple(value.shape)}->{tuple(want.shape)}")
    module.load_state_dict(to_load, strict=False)
    report.missing = [k for k in target if k not in to_load and not k.endswith("num_batches_tracked")]
    log.info(report.summary())
    for reports in _COLLECTORS:
        reports.append(report)
    return report


_COLLECTORS: list[list[LoadReport]] = []


@contextmanager
def collect_reports() -> Iterator[list[LoadReport]]:
    """Gather the :class:`LoadReport` of every load in the block (``create_model`` attaches them to the
    model it returns: detector builders load into a backbone network and keep no report themselves)."""
    reports: list[LoadReport] = []
    _COLLECTORS.append(reports)
    try:
        yield reports
    finally:
        _COLLECTORS.remove(reports)


def load_pretrained(
    module: nn.Module,
    pretrained: str | Path | bool | WeightsDeferred | None,
    arch: str | None = None,
    sha256: str | None = None,
    key_map: Mapping[str, str] | None = None,
    weights: Any = None,
) -> LoadReport | None:
    """Load ``pretrained`` into ``module``; returns the :class:`LoadReport` (None when nothing loads:
    ``None``, ``False`` or :class:`WeightsDeferred`).

    ``arch``: the torchvision model name that torchvision weights names resolve against; ``weights``:
    the torchvision ``WeightsEnum`` member that ``True`` means (detector builders pass theirs).
    A source that matches no key at all raises ``ValueError`` (wrong file for this model).
    """
    if pretrained is None or pretrained is False or isinstance(pretrained, WeightsDeferred):
        return None
    state, description = read_state_dict(pretrained, arch=arch, sha256=sha256, weights=weights)
    report = load_state_dict_into(module, state, description, key_map)
    if not report.loaded and not report.reshaped:
        raise ValueError(
            f"{description}: none of its {len(state)} tensors fit {type(module).__name__}; {report.summary()}"
        )
    return report


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
