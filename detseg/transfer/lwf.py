"""Learning without Forgetting (Li and Hoiem 2016) for a head extended with new classes.

While the extended model learns the new classes from new data, the old model (frozen, eval mode)
looks at the same training images, and the new model's outputs on the *old* classes are pulled
towards the old model's with a distillation loss at temperature T:

    softmax heads:  L_d = T^2 * mean_rows KL( softmax(z_old / T) || softmax(z_new[:, :K_old] / T) )
    sigmoid heads:  L_d = T^2 * mean BCE( sigmoid(z_new[:, :K_old] / T), target = sigmoid(z_old / T) )

``loss = task loss + weight * L_d``. Which outputs are compared depends on the model: a segmenter's
logits per pixel; a classifier's logits per image; SSD/SSDLite's and RetinaNet's per-anchor class
logits; R-FCN's and Faster R-CNN's RoI class logits, the old head being run on the new model's
proposals (so both score the same RoIs).
The new model's outputs are taken by forward hooks during its ordinary training forward pass.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.transfer.wrapper import OldModelTask


def distillation_loss(
    new_logits: Tensor, old_logits: Tensor, temperature: float = 2.0, kind: str = "softmax"
) -> Tensor:
    """The LwF loss between logits ``[N, K_old]`` (classes last) of the new and the old model.

    ``softmax``: T^2 KL(p_old || p_new) averaged over rows, with p = softmax(z / T); its gradient with
    respect to the new logits is ``T * (p_new - p_old) / N``. ``sigmoid``: T^2 BCE of sigmoid(z_new / T)
    against sigmoid(z_old / T), averaged over all N * K_old entries; gradient ``T * (q_new - q_old) /
    (N K_old)``. (Both gradients vanish when the logits agree; the sigmoid form's value is then the
    teacher's entropy, not 0.)
    """
    if new_logits.shape != old_logits.shape:
        raise ValueError(
            f"new logits {tuple(new_logits.shape)} and old logits {tuple(old_logits.shape)} differ"
        )
    t = float(temperature)
    if t <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    new, old = new_logits.float() / t, old_logits.detach().float() / t
    if kind == "softmax":
        rows = max(1, new.numel() // max(1, new.shape[-1]))
        return (
            F.kl_div(new.log_softmax(-1), old.log_softmax(-1), reduction="sum", log_target=True)
            * t
            * t
            / rows
        )
    if kind == "sigmoid":
        return F.binary_cross_entropy_with_logits(new, old.sigmoid()) * t * t
    raise ValueError(f"distillation kind must be 'softmax' or 'sigmoid', got {kind!r}")


def _as_list(features: Any) -> list[Tensor]:
    if isinstance(features, Tensor):
        return [features]
    return list(features.values())


class _Capture:
    """Forward hooks that keep the inputs/outputs of named sub-modules while ``active``."""

    def __init__(self, model: nn.Module, names: list[str], with_output: set[str]) -> None:
        self.active = False
        self.seen: dict[str, Any] = {}
        modules = dict(model.named_modules())
        for name in names:
            modules[name].register_forward_hook(self._hook(name, name in with_output))

    def _hook(self, name: str, keep_output: bool):
        def hook(module, inputs, output):  # noqa: ARG001
            if self.active:
                self.seen[name] = (inputs, output if keep_output else None)

        return hook


class LwFTask(OldModelTask):
    """A task wrapper adding LwF distillation to ``task``'s training loss; evaluation is ``task``'s.

    ``old_model`` is the model before extension (``K_old`` classes); ``model`` the extended one being
    trained (hooks are put on it here, so pass the bare model, not its DDP wrapper).
    """

    def __init__(
        self, task: Any, model: nn.Module, old_model: nn.Module, weight: float = 1.0, temperature: float = 2.0
    ) -> None:
        from detseg.models.classifier import ImageClassifier
        from detseg.models.rfcn import RFCN
        from detseg.models.ssd import SSDDetector
        from detseg.models.torchvision_detectors import FasterRCNNDetector, RetinaNetDetector
        from detseg.nn.segmenter import Segmenter

        super().__init__(task, old_model)
        self.weight, self.temperature = float(weight), float(temperature)
        if isinstance(model, (Segmenter, ImageClassifier)) or task.name in ("segment", "classify"):
            self.family, names, outs = "segment", [""], {""}  # the model's output: logits, classes in dim 1
        elif isinstance(model, (SSDDetector, RetinaNetDetector)):
            self.family, names, outs = "dense", ["backbone", "head"], {"head"}
        elif isinstance(model, RFCN):
            self.family = "rfcn"
            names, outs = ["backbone", "roi_heads.box_predictor"], {"roi_heads.box_predictor"}
        elif isinstance(model, FasterRCNNDetector):
            self.family = "fasterrcnn"
            names = ["backbone", "roi_heads.box_roi_pool", "roi_heads.box_predictor"]
            outs = {"roi_heads.box_predictor"}
        else:
            raise ValueError(f"LwF distillation does not know the outputs of a {type(model).__name__}")
        self.kind = "sigmoid" if isinstance(model, RetinaNetDetector) else "softmax"
        self.capture = _Capture(model, names, outs)

    def _old_and_new(self) -> tuple[Tensor, Tensor]:
        """(new model's logits on the old classes, with their graph; old model's logits), classes last."""
        seen, old = self.capture.seen, self.old_model
        if self.family == "segment":
            (x, *_), logits = seen[""]
            with torch.no_grad():
                z_old = old(x)
            return logits[:, : z_old.shape[1]].movedim(1, -1), z_old.movedim(1, -1)
        x = seen["backbone"][0][0]
        with torch.no_grad():
            if self.family == "dense":
                z_new = seen["head"][1]["cls_logits"]
                z_old = old.head(_as_list(old.backbone(x)))["cls_logits"]
            elif self.family == "rfcn":
                _, proposals = seen["roi_heads.box_predictor"][0]
                z_new = seen["roi_heads.box_predictor"][1][0]
                z_old = old.roi_heads.box_predictor(old.backbone(x)[1], proposals)[0]
            else:
                _, proposals, image_shapes = seen["roi_heads.box_roi_pool"][0]
                z_new = seen["roi_heads.box_predictor"][1][0]
                pooled = old.roi_heads.box_roi_pool(old.backbone(x), proposals, image_shapes)
                z_old = old.roi_heads.box_predictor(old.roi_heads.box_head(pooled))[0]
        # Sliced outside no_grad: z_new keeps this step's graph.
        return z_new[..., : z_old.shape[-1]], z_old

    def train_step(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[Tensor, dict]:
        self.old_model.to(device)
        self.capture.active, self.capture.seen = True, {}
        try:
            loss, parts = self.task.train_step(model, batch, device)
        finally:
            self.capture.active = False
        z_new, z_old = self._old_and_new()
        distill = distillation_loss(z_new, z_old, self.temperature, self.kind)
        self.capture.seen = {}
        parts = dict(parts)
        parts["distill"] = distill.detach()
        return loss + self.weight * distill, parts
