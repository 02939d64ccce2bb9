"""Freezing a model's backbone, or its first N stages, for feature extraction and fine-tuning.

    report = freeze(model, "backbone")      # or "stages:2", "bn", or "none"
    backbone_parameters(model)              # what --lr-backbone applies to

"Backbone" is the pre-trainable feature extractor: a segmenter's ``encoder``; a detector's
classification network (SSD's VGG, SSDLite's MobileNet, R-FCN's ResNet body and conv5, the ``body`` of
Faster R-CNN's and RetinaNet's FPN backbones). Necks (FPN, SSD's extra layers, R-FCN's 1x1 reduction)
and heads are not. A stage is a run of blocks at one resolution: a new stage starts at every block that
downsamples (U-Net: one level per stage; ResNet: stem, layer1..layer4; VGG's fc6/fc7 and a
MobileNetV3 classifier's pre-logit layer: one more stage). A timm classifier's encoder is its backbone
whole: its stages as above where it has them (EfficientNet's stride-2 blocks), the rest of it (the
pre-logit layers) one more stage, so that ``"backbone"`` leaves exactly the linear head trainable.

A frozen module gets ``requires_grad=False`` and stays in eval mode whatever ``model.train()`` says,
so its BatchNorm layers use and keep their running statistics (and its dropout is off): the features
a frozen backbone gives are exactly those of the pre-trained network. ``"bn"`` freezes only the
backbone's BatchNorm statistics (its BatchNorm layers stay in eval mode; every weight, their scales
and shifts included, still trains): MMDetection's ``norm_eval``, for fine-tuning on small batches of a
small data set, whose batch statistics would otherwise replace the pre-trained ones.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

from torch import nn

FREEZE_CHOICES = "backbone | stages:N | bn | none"


@dataclass
class FreezeReport:
    """What :func:`freeze` froze: ``stages`` of ``total_stages``, ``parameters`` (tensors) and
    ``batch_norms`` (layers kept in eval mode)."""

    spec: str
    stages: int = 0
    total_stages: int = 0
    parameters: int = 0
    batch_norms: int = 0
    names: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.spec.strip().lower() == "bn" and self.batch_norms:
            return (
                f"kept the backbone's {self.batch_norms} BatchNorm layers in eval mode (running statistics "
                "fixed; every weight trains)"
            )
        if not self.stages:
            return "nothing frozen"
        return (
            f"froze {self.stages} of {self.total_stages} backbone stages ({self.parameters} parameter "
            f"tensors, {self.batch_norms} BatchNorm layers kept in eval mode)"
        )


def parse_freeze(spec: str | None) -> int | str | None:
    """``"none"`` -> 0, ``"backbone"`` -> None (all stages), ``"stages:N"`` -> N, ``"bn"`` -> ``"bn"``;
    anything else raises."""
    text = (spec or "none").strip().lower()
    if text == "none":
        return 0
    if text == "bn":
        return "bn"
    if text == "backbone":
        return None
    if text.startswith("stages:"):
        try:
            n = int(text.split(":", 1)[1])
        except ValueError:
            n = -1
        if n >= 0:
            return n
    raise ValueError(f"--freeze {spec!r}: choose {FREEZE_CHOICES} (N a whole number of stages)")


def _downsamples(block: nn.Module) -> bool:
    for m in block.modules():
        stride = getattr(m, "stride", 1)
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            s = stride if isinstance(stride, int) else max(stride)
            if s > 1:
                return True
    return False


def _chain_stages(blocks: list[nn.Module]) -> list[list[nn.Module]]:
    stages: list[list[nn.Module]] = []
    for block in blocks:
        if not stages or _downsamples(block):
            stages.append([block])
        else:
            stages[-1].append(block)
    # A trailing pool alone (VGG's pool5) is no stage of its own.
    merged: list[list[nn.Module]] = []
    for stage in stages:
        if merged and not any(True for m in stage for _ in m.parameters()):
            merged[-1].extend(stage)
        else:
            merged.append(stage)
    return merged


def _resnet_stages(net: nn.Module) -> list[list[nn.Module]]:
    stem = [getattr(net, n) for n in ("conv1", "bn1", "relu", "maxpool") if hasattr(net, n)]
    return [stem] + [[getattr(net, f"layer{i}")] for i in range(1, 5) if hasattr(net, f"layer{i}")]


def _is_timm_efficientnet(net: nn.Module) -> bool:
    """timm's EfficientNets and MobileNets (whole or ``features_only``): a stem and stages of blocks."""
    return hasattr(net, "conv_stem") and hasattr(net, "blocks")


def _timm_stages(net: nn.Module) -> list[list[nn.Module]]:
    blocks = [net.conv_stem, getattr(net, "bn1", nn.Identity())]
    return _chain_stages(blocks + [block for stage in net.blocks for block in stage])


def backbone_stages(model: nn.Module) -> list[list[nn.Module]]:
    """The backbone's stages, shallow to deep, each a list of modules (see the module docstring)."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    encoder = getattr(model, "encoder", None)
    if isinstance(encoder, nn.Module):
        if hasattr(encoder, "levels"):  # U-Net: one level per stage
            return _with_rest(encoder, [[level] for level in encoder.levels])
        if hasattr(encoder, "layer1"):
            return _with_rest(encoder, _resnet_stages(encoder))
        if hasattr(encoder, "features"):
            stages = _chain_stages(list(encoder.features))
            if getattr(encoder, "fc_channels", None):  # VGG's fc6/fc7 as convolutions (FCN, DeconvNet)
                stages.append([encoder.fc6, encoder.fc7])
            tail = getattr(encoder, "classifier", None)  # MobileNetV3's pre-logit layer (classifiers)
            if isinstance(tail, nn.Module) and any(True for _ in tail.parameters()):
                stages.append([tail])
            return _with_rest(encoder, stages)
        if _is_timm_efficientnet(encoder):
            return _with_rest(encoder, _timm_stages(encoder))
        return [[encoder]]
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise ValueError(
            f"{type(model).__name__} has neither an 'encoder' (segmenter) nor a 'backbone' (detector) "
            "to freeze"
        )
    if hasattr(backbone, "conv5") and hasattr(backbone, "body"):  # R-FCN: ResNet body + dilated conv5
        body = list(backbone.body)
        return [body[:4], [body[4]], [body[5]], [body[6]], [backbone.conv5]]
    if hasattr(backbone, "body"):  # torchvision's BackboneWithFPN, detseg's timm detectors: the network
        body = backbone.body
        if _is_timm_efficientnet(body):
            return _timm_stages(body)
        return _resnet_stages(body) if hasattr(body, "layer1") else _chain_stages(list(body.children()))
    if hasattr(backbone, "features"):
        from torchvision.models.detection.ssd import SSDFeatureExtractorVGG

        features = backbone.features
        if isinstance(backbone, SSDFeatureExtractorVGG):  # VGG up to conv4_3, then the rest of VGG
            blocks = [*features, *backbone.extra[0]]
        else:  # SSDLite: the network split at the C4 expansion layer
            blocks = [*features[0], *features[1]]
        return _chain_stages(blocks)
    return [[backbone]]


def _with_rest(encoder: nn.Module, stages: list[list[nn.Module]]) -> list[list[nn.Module]]:
    """``stages`` and, as one more stage, the encoder's modules that hold parameters none of them has
    (a timm classifier's pre-logit layers: EfficientNet's ``conv_head``, VGG's ``pre_logits``...)."""
    covered = {id(p) for stage in stages for module in stage for p in module.parameters()}

    def rest(module: nn.Module) -> list[nn.Module]:
        out = []
        for child in module.children():
            ids = [id(p) for p in child.parameters()]
            if all(i in covered for i in ids):
                continue
            out += rest(child) if any(i in covered for i in ids) else [child]
        return out

    left = rest(encoder)
    return [*stages, left] if left else stages


def backbone_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter of the backbone (trainable or not), each once."""
    seen: dict[int, nn.Parameter] = {}
    for stage in backbone_stages(model):
        for module in stage:
            for p in module.parameters():
                seen.setdefault(id(p), p)
    return list(seen.values())


def _stay_in_eval(self: nn.Module, mode: bool = True) -> nn.Module:  # noqa: ARG001
    return nn.Module.train(self, False)


def keep_eval(module: nn.Module) -> None:
    """Make ``module`` (and everything in it) stay in eval mode from now on, whatever ``.train()`` says."""
    module.train = types.MethodType(_stay_in_eval, module)  # type: ignore[method-assign]
    module.eval()


def is_kept_in_eval(module: nn.Module) -> bool:
    train = module.__dict__.get("train")
    return isinstance(train, types.MethodType) and train.__func__ is _stay_in_eval


def freeze(model: nn.Module, spec: str | None = "backbone") -> FreezeReport:
    """Freeze the backbone (``"backbone"``), its first N stages (``"stages:N"``), its BatchNorm statistics
    alone (``"bn"``) or nothing (``"none"``).

    Frozen modules stop their gradients and stay in eval mode (BatchNorm statistics kept). Returns a
    :class:`FreezeReport`. N larger than the number of stages raises ``ValueError``.
    """
    n = parse_freeze(spec)
    report = FreezeReport(str(spec or "none"))
    if n == 0:
        return report
    if n == "bn":
        return _freeze_batch_norms(model, report)
    stages = backbone_stages(model)
    report.total_stages = len(stages)
    if n is None:
        n = len(stages)
    if n > len(stages):
        raise ValueError(
            f"--freeze {spec}: {type(getattr(model, 'module', model)).__name__} has only "
            f"{len(stages)} backbone stages"
        )
    report.stages = n
    names = {id(m): name for name, m in getattr(model, "module", model).named_modules()}
    for stage in stages[:n]:
        for module in stage:
            module.requires_grad_(False)
            keep_eval(module)
            report.parameters += sum(1 for _ in module.parameters())
            report.batch_norms += sum(
                isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()
            )
            report.names.append(names.get(id(module), type(module).__name__))
    return report


def _freeze_batch_norms(model: nn.Module, report: FreezeReport) -> FreezeReport:
    names = {id(m): name for name, m in getattr(model, "module", model).named_modules()}
    stages = backbone_stages(model)
    report.total_stages = len(stages)
    seen: set[int] = set()
    for stage in stages:
        for module in stage:
            for m in module.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in seen:
                    seen.add(id(m))
                    keep_eval(m)
                    report.batch_norms += 1
                    report.names.append(names.get(id(m), type(m).__name__))
    if not report.batch_norms:
        name = type(getattr(model, "module", model)).__name__
        raise ValueError(f"--freeze bn: {name}'s backbone has no BatchNorm layer")
    return report
