"""Replacing and extending a model's output layer for a new class list.

- :func:`class_keys`: the state-dict keys whose shape depends on the number of classes (the head),
  found by building the model with one more class and comparing shapes.
- :func:`load_replacing_head`: load a checkpoint trained on other classes; everything that fits is
  loaded, the class-dependent layers keep their fresh initialisation (a new head).
- :func:`extend_head`: a model for ``old classes + new classes`` that gives exactly the old model's
  outputs on the old classes: every other layer is copied, and the old classes' rows of each
  class-dependent layer are copied into the right channels:

  ========================  ==========================================================================
  segmenters                1x1 (or 3x3) head: channel c -> c; FCN's class-to-class upsampling too,
                            with the new classes' inputs to the old outputs set to zero
  classifiers               linear head: row c -> c
  SSD / SSDLite             per-anchor interleaved: channel a*(C_old+1) + c -> a*(C_new+1) + c
  RetinaNet                 per-anchor interleaved, no background: a*C_old + c -> a*C_new + c
  R-FCN                     class-major k*k position-sensitive maps: block c -> block c
  Faster R-CNN              cls_score row c -> c; bbox_pred rows 4c..4c+3 -> the same
  ========================  ==========================================================================

  Softmax detectors (all but RetinaNet) normalise over every class, so a new class's logit would take
  probability from the old ones: its weights start at zero and its bias at ``NEW_CLASS_BIAS`` (-20,
  a probability below float32's resolution), so the old classes' scores are unchanged until training
  moves it. RetinaNet's sigmoid scores are independent per class: a new class's weights start at zero
  and its bias stays at the focal-loss prior (score 0.01, under the 0.05 threshold). So an extended
  detector gives the old detector's detections exactly, until it is trained. Segmenters and
  classifiers keep their new classes' rows as built (the lecture's "new output layer"): the old
  classes' logits are unchanged, the argmax may move to a new class until training has taught it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

#: Bias of a new class's logit in softmax detectors: exp(-20) ~ 2e-9, invisible next to the old classes.
NEW_CLASS_BIAS = -20.0


@dataclass
class HeadReport:
    """What a transfer load did: ``loaded`` keys, ``replaced`` (class-dependent, freshly initialised),
    ``extended`` (old classes' rows copied, new rows initialised), ``kept`` (shape differs: left as built)."""

    source: str
    action: str  # "loaded" | "replaced head" | "extended head"
    loaded: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    extended: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    old_classes: list[str] = field(default_factory=list)
    new_classes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        def few(keys: list[str]) -> str:  # one line, however many maps the head has
            return ", ".join(keys[:4]) + (f", ... (+{len(keys) - 4})" if len(keys) > 4 else "")

        parts = [f"{self.action} from {self.source}: loaded {len(self.loaded)} tensors"]
        if self.replaced:
            parts.append(f"replaced {len(self.replaced)} head tensors ({few(self.replaced)})")
        if self.extended:
            added = [c for c in self.new_classes if c not in self.old_classes]
            parts.append(f"extended {len(self.extended)} head tensors ({few(self.extended)}) with {added}")
        if self.kept:
            parts.append(f"{len(self.kept)} tensors of another shape left as built ({few(self.kept)})")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "action": self.action,
            "loaded": len(self.loaded),
            "replaced": list(self.replaced),
            "extended": list(self.extended),
            "kept": list(self.kept),
            "old_classes": list(self.old_classes),
            "new_classes": list(self.new_classes),
        }


def class_keys(model_name: str, kwargs: Mapping[str, Any]) -> set[str]:
    """State-dict keys of zoo model ``model_name`` whose shape changes with ``num_classes``.

    Two throw-away models (``num_classes`` n and n + 1, no pre-trained weights) are compared, built on
    the meta device (shapes only: no memory, no time, no draw from the random generator).
    """
    from detseg.models.zoo import create_model

    base = {k: v for k, v in kwargs.items() if k != "pretrained"}
    n = int(base.get("num_classes", 2))

    def shapes(num_classes: int) -> dict[str, torch.Size]:
        return {
            k: v.shape
            for k, v in create_model(model_name, **{**base, "num_classes": num_classes}).state_dict().items()
        }

    try:
        with torch.device("meta"):
            a, b = shapes(n), shapes(n + 1)
    except (NotImplementedError, RuntimeError):  # a builder that needs real tensors
        a, b = shapes(n), shapes(n + 1)
    return {k for k in a if k in b and a[k] != b[k]}


def _load_exact(model: nn.Module, state: Mapping[str, Tensor], skip: set[str], source: str) -> HeadReport:
    own = model.state_dict()
    report = HeadReport(source, "loaded")
    fitting = {}
    for key, want in own.items():
        if key in skip:
            continue
        value = state.get(key)
        if value is None:
            continue
        if value.shape == want.shape:
            fitting[key] = value
            report.loaded.append(key)
        else:
            report.kept.append(f"{key} {tuple(value.shape)}->{tuple(want.shape)}")
    wanted = len(own) - len(skip & set(own))
    if len(fitting) * 2 < wanted:  # a few biases that happen to fit are no transfer
        raise ValueError(
            f"{source}: only {len(fitting)} of the {wanted} tensors of {type(model).__name__} fit "
            f"(another architecture?); its keys start {list(state)[:3]}, the model's {list(own)[:3]}"
        )
    model.load_state_dict(fitting, strict=False)
    return report


def load_replacing_head(
    model: nn.Module,
    state: Mapping[str, Tensor],
    head_keys: set[str],
    source: str,
    replace: bool = True,
) -> HeadReport:
    """Load ``state`` into ``model``; with ``replace`` the ``head_keys`` keep the model's fresh
    initialisation (a new head for another class list), else they load too where their shapes fit."""
    report = _load_exact(model, state, set(head_keys) if replace else set(), source)
    if replace:
        report.action = "replaced head"
        report.replaced = sorted(k for k in head_keys if k in model.state_dict())
    return report


def check_extension(old_classes: list[str], new_classes: list[str], where: str = "") -> None:
    """The new class list must start with the old one, in the same order, and add at least one class."""
    head = list(new_classes[: len(old_classes)])
    if head != list(old_classes) or len(new_classes) <= len(old_classes):
        raise ValueError(
            f"{where + ': ' if where else ''}to extend a head the data's classes must be the old classes "
            f"in the same order followed by the new ones; old {list(old_classes)}, data {list(new_classes)}"
        )


def _interleaved(anchors: int, k_old: int, k_new: int) -> tuple[Tensor, Tensor, Tensor]:
    """(old channel, new channel) pairs of a per-anchor interleaved layout, and the new-only channels."""
    old = torch.tensor([a * k_old + c for a in range(anchors) for c in range(k_old)])
    new = torch.tensor([a * k_new + c for a in range(anchors) for c in range(k_old)])
    added = torch.tensor([a * k_new + c for a in range(anchors) for c in range(k_old, k_new)])
    return old, new, added


@torch.no_grad()
def _copy_rows(
    model: nn.Module,
    state: Mapping[str, Tensor],
    prefix: str,
    old_idx: Tensor,
    new_idx: Tensor,
    added: Tensor | None,
    added_bias: float | None = NEW_CLASS_BIAS,
) -> list[str]:
    """Copy rows (dim 0) ``old_idx`` of ``state[prefix.weight/bias]`` to rows ``new_idx`` of the model's.
    ``added`` rows (the new classes' logits) get zero weights and bias ``added_bias`` (None: the bias
    stays as built, e.g. RetinaNet's prior-probability bias)."""
    params = dict(model.named_parameters())
    done = []
    for suffix in ("weight", "bias"):
        key = f"{prefix}.{suffix}"
        if key not in params:
            continue
        target, source = params[key], state[key].to(params[key].device, params[key].dtype)
        target.index_copy_(0, new_idx.to(target.device), source.index_select(0, old_idx.to(source.device)))
        if added is not None and len(added):
            fill = 0.0 if suffix == "weight" else added_bias
            if fill is not None:
                target.index_fill_(0, added.to(target.device), fill)
        done.append(key)
    return done


def _last_conv(module: nn.Module) -> tuple[str, nn.Conv2d]:
    convs = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Conv2d)]
    return convs[-1]


def _detector_rows(
    model: nn.Module, n_old: int, n_new: int
) -> list[tuple[str, Tensor, Tensor, Tensor | None, float | None]]:
    """(parameter prefix, old rows, new rows, new-class logit rows, their bias) for each class layer of a
    detector (see :func:`_copy_rows`)."""
    from detseg.models.rfcn import RFCN
    from detseg.models.ssd import SSDDetector
    from detseg.models.torchvision_detectors import FasterRCNNDetector, RetinaNetDetector

    rows = []
    if isinstance(model, SSDDetector):
        k_old, k_new = n_old + 1, n_new + 1  # column 0 = background
        for i, module in enumerate(model.head.classification_head.module_list):
            name, conv = _last_conv(module)
            prefix = f"head.classification_head.module_list.{i}" + (f".{name}" if name else "")
            rows.append((prefix, *_interleaved(conv.out_channels // k_new, k_old, k_new), NEW_CLASS_BIAS))
    elif isinstance(model, RetinaNetDetector):
        conv = model.head.classification_head.cls_logits
        # Sigmoid scores: a new class with zero weights scores the prior probability (0.01) everywhere,
        # below the score threshold (0.05), so the detections stay the old model's until it learns.
        old, new, added = _interleaved(conv.out_channels // n_new, n_old, n_new)
        rows.append(("head.classification_head.cls_logits", old, new, added, None))
    elif isinstance(model, RFCN):
        kk = model.roi_heads.box_predictor.k**2
        k_old, k_new = n_old + 1, n_new + 1
        rows.append(
            (
                "roi_heads.box_predictor.cls_maps",
                torch.arange(k_old * kk),
                torch.arange(k_old * kk),
                torch.arange(k_old * kk, k_new * kk),
                NEW_CLASS_BIAS,
            )
        )
    elif isinstance(model, FasterRCNNDetector):
        k_old, k_new = n_old + 1, n_new + 1
        rows.append(
            (
                "roi_heads.box_predictor.cls_score",
                torch.arange(k_old),
                torch.arange(k_old),
                torch.arange(k_old, k_new),
                NEW_CLASS_BIAS,
            )
        )
        # The new classes' box regressors stay as built (read only for their own class).
        old = torch.arange(4 * k_old)
        rows.append(("roi_heads.box_predictor.bbox_pred", old, old, None, None))
        if getattr(model.roi_heads, "mask_predictor", None) is not None:  # Mask R-CNN: one mask per class
            old = torch.arange(k_old)
            rows.append(("roi_heads.mask_predictor.mask_fcn_logits", old, old, None, None))
    else:
        raise ValueError(f"extending the head of a {type(model).__name__} is not supported")
    return rows


@torch.no_grad()
def _extend_segmenter(model: nn.Module, state: Mapping[str, Tensor], keys: set[str], n_old: int) -> list[str]:
    """Copy the old classes' block of every class-dependent tensor; zero new-class inputs to old outputs."""
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    done = []
    for key in sorted(keys):
        if key not in params:
            continue
        target, source = params[key], state[key].to(params[key].device, params[key].dtype)
        dims = [d for d in range(target.ndim) if target.shape[d] != source.shape[d]]
        if any(source.shape[d] != n_old for d in dims):
            raise ValueError(f"{key}: shape {tuple(source.shape)} does not have {n_old} old classes")
        target[tuple(slice(0, n_old) if d in dims else slice(None) for d in range(target.ndim))] = source
        if len(dims) == 2:  # class -> class (FCN's upsampling): no new input may reach an old output
            module = modules[key.rsplit(".", 1)[0]]
            out_dim = 1 if isinstance(module, nn.ConvTranspose2d) else 0
            cross = [slice(None)] * target.ndim
            cross[out_dim], cross[1 - out_dim] = slice(0, n_old), slice(n_old, None)
            target[tuple(cross)] = 0.0
        done.append(key)
    return done


def extend_head(
    model: nn.Module,
    state: Mapping[str, Tensor],
    head_keys: set[str],
    old_classes: list[str],
    new_classes: list[str],
    source: str = "checkpoint",
) -> HeadReport:
    """Load an old model's ``state`` into ``model`` (built for ``new_classes``), keeping the old classes'
    head weights in their channels (see the module docstring). Returns a :class:`HeadReport`.

    For segmenters the classes are the output channels (background included, as in the data's list);
    for detectors they are the user's classes (no background).
    """
    check_extension(old_classes, new_classes, source)
    report = _load_exact(model, state, set(head_keys), source)
    if report.kept:
        raise ValueError(
            f"{source}: not the same architecture as the model to extend ({len(report.kept)} tensors differ "
            f"in shape, e.g. {report.kept[:3]}); build it with the checkpoint's model arguments"
        )
    missing = [k for k, v in model.named_parameters() if k not in head_keys and k not in state]
    if missing:
        raise ValueError(f"{source}: lacks {len(missing)} of the model's tensors (e.g. {missing[:3]})")
    from detseg.models.classifier import ImageClassifier
    from detseg.nn.segmenter import Segmenter

    n_old, n_new = len(old_classes), len(new_classes)
    if isinstance(model, (Segmenter, ImageClassifier)):  # class = output channel / logit row
        if model.num_classes != n_new:
            raise ValueError(
                f"the model has {model.num_classes} output channels for {n_new} classes (a one-channel "
                "binary model cannot be extended; train it with --loss ce)"
            )
        done = _extend_segmenter(model, state, head_keys, n_old)
    else:
        done = []
        for prefix, old_idx, new_idx, added, bias in _detector_rows(model, n_old, n_new):
            done += _copy_rows(model, state, prefix, old_idx, new_idx, added, bias)
    left = sorted(
        set(head_keys) - set(done) - {k for k in head_keys if k not in dict(model.named_parameters())}
    )
    if left:
        raise ValueError(f"extending {type(model).__name__}: class-dependent tensors {left} were not handled")
    report.action, report.extended = "extended head", sorted(done)
    report.old_classes, report.new_classes = list(old_classes), list(new_classes)
    return report
