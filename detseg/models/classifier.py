"""Image classifiers: a torchvision backbone (``weights=None``) and one linear layer, the shape that
transfer learning replaces or freezes.

    model = create_model("resnet18_classifier", num_classes=2, pretrained="resnet18.pth")
    logits = model(images)           # images float [B, 3, H, W] in [0, 1] -> logits [B, num_classes]
    model.encoder / model.backbone   # images -> pooled features [B, num_features]
    model.head                       # nn.Linear(num_features, num_classes)
    model.reset_classifier(5)        # a new, untrained head for 5 classes

The backbone is torchvision's network with its last linear layer taken out, so its parameter names
are torchvision's under ``encoder.`` and that last layer is ``head``: a torchvision state dict
(``conv1.weight`` ..., ``fc.weight``) loads whole (the head too when the class counts agree), and so do
detseg checkpoints of these models and of encoders with torchvision's names. The ImageNet
normalisation happens inside (``mean``/``std`` buffers, not saved), as torchvision's detectors do.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from detseg.models.backbones import load_pretrained
from detseg.models.registry import register_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageClassifier(nn.Module):
    """``logits = head(dropout(encoder(normalise(x))))``.

    ``encoder``: ``Tensor[B, 3, H, W]`` (normalised) -> pooled features ``Tensor[B, num_features]``.
    ``head``: ``nn.Linear(num_features, num_classes)``. Any input size the backbone accepts (its global
    average pool makes the features independent of H, W).
    """

    def __init__(
        self,
        encoder: nn.Module,
        num_features: int,
        num_classes: int,
        drop_rate: float = 0.0,
        arch: str = "",
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.encoder = encoder
        self.num_features = num_features
        self.drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(num_features, num_classes)
        self.arch = arch
        # Not in the state dict: checkpoints hold torchvision's keys and the head only.
        self.register_buffer("mean", torch.tensor(mean).reshape(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).reshape(1, -1, 1, 1), persistent=False)

    @property
    def backbone(self) -> nn.Module:
        """The encoder (the name transfer-learning code and torchvision's detectors use)."""
        return self.encoder

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] ``[B, 3, H, W]`` -> pooled features ``[B, num_features]``."""
        return self.encoder(self.normalize(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[B, num_features]`` -> logits ``[B, num_classes]``."""
        return self.head(self.drop(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a new one for ``num_classes`` (PyTorch's default initialisation)."""
        device = self.head.weight.device
        self.head = nn.Linear(self.num_features, num_classes).to(device)


# torchvision's name of each network's last linear layer, which becomes ``head``.
_LAST_LAYER = {"resnet": "fc", "mobilenet_v3": "classifier.3"}


def _family(arch: str) -> str:
    return next(f for f in _LAST_LAYER if arch.startswith(f))


def build_classifier(
    arch: str, num_classes: int = 1000, pretrained: str | None = None, drop_rate: float = 0.0
) -> ImageClassifier:
    """A classifier on torchvision's ``arch`` (resnet*, mobilenet_v3_*), ``pretrained`` loaded by
    :func:`detseg.models.backbones.load_pretrained` (a file, a detseg checkpoint, or a cached torchvision
    weights name such as ``"IMAGENET1K_V1"``); its report is kept as ``model.load_report``."""
    net = getattr(torchvision.models, arch)(weights=None)
    last = _LAST_LAYER[_family(arch)]
    parent = net.get_submodule(last.rpartition(".")[0]) if "." in last else net
    child = last.rpartition(".")[2]
    num_features = getattr(parent, child).in_features
    setattr(parent, child, nn.Identity())  # the encoder now ends at the pooled (pre-logit) features
    model = ImageClassifier(net, num_features, num_classes, drop_rate, arch)
    # torchvision's last layer -> head; every other key -> encoder. (A detseg checkpoint's keys become
    # encoder.encoder.* and encoder.head.*, which load_pretrained's "encoder." prefix pairing undoes.)
    key_map = {f"{last}.": "head.", "": "encoder."}
    model.load_report = load_pretrained(model, pretrained, arch=arch, key_map=key_map)
    return model


# torchvision's ImageNet classifiers are these models whole: their weights names load head and all.
RESNET_KEY_MAP = {"fc.": "head.", "": "encoder."}
MOBILENET_V3_KEY_MAP = {"classifier.3.": "head.", "": "encoder."}


@register_model(task="classify", backbone="resnet18", input_size=(3, 224, 224), outputs="labels",
                torchvision="resnet18", torchvision_key_map=RESNET_KEY_MAP)
def resnet18_classifier(
    num_classes: int = 1000, pretrained: str | None = None, drop_rate: float = 0.0
) -> ImageClassifier:
    """ResNet-18 (He et al. 2016) + a linear head; 512 features."""
    return build_classifier("resnet18", num_classes, pretrained, drop_rate)


@register_model(task="classify", backbone="resnet50", input_size=(3, 224, 224), outputs="labels",
                torchvision="resnet50", torchvision_key_map=RESNET_KEY_MAP)
def resnet50_classifier(
    num_classes: int = 1000, pretrained: str | None = None, drop_rate: float = 0.0
) -> ImageClassifier:
    """ResNet-50 (He et al. 2016) + a linear head; 2048 features."""
    return build_classifier("resnet50", num_classes, pretrained, drop_rate)


@register_model(task="classify", backbone="mobilenet_v3_large", input_size=(3, 224, 224), outputs="labels",
                torchvision="mobilenet_v3_large", torchvision_key_map=MOBILENET_V3_KEY_MAP)
def mobilenet_v3_large_classifier(
    num_classes: int = 1000, pretrained: str | None = None, drop_rate: float = 0.0
) -> ImageClassifier:
    """MobileNetV3-Large (Howard et al. 2019) + a linear head; 1280 features (torchvision's 960 -> 1280
    pre-logit layer, with its dropout 0.2, stays in the encoder)."""
    return build_classifier("mobilenet_v3_large", num_classes, pretrained, drop_rate)
