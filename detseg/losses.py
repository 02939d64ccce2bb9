"""Segmentation losses (LECTURE.md section 6): BCE, class-balanced BCE, soft Dice, cross-entropy, sums,
and the Lovasz-softmax loss (Berman et al., CVPR 2018), a convex surrogate of 1 - IoU.

Plain functions first, modules on top. Binary losses take logits by default (``from_logits=True``,
numerically stable); pass probabilities with ``from_logits=False``, as the lecture's examples do.

Dice on empty masks: with ``smooth=0`` and both the target and the prediction empty the Dice
coefficient is 0/0; detseg defines it as 1 (perfect agreement, loss 0). An empty target with a
non-empty prediction gives Dice 0 (loss 1). ``smooth > 0`` adds to numerator and denominator
(``(2 I + s) / (S + s)``), which gives the same 1 for two empty masks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

REDUCTIONS = ("mean", "sum", "none")


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _check_binary(input: torch.Tensor, target: torch.Tensor) -> None:
    if input.shape != target.shape:
        raise ValueError(
            f"prediction shape {tuple(input.shape)} differs from target shape {tuple(target.shape)}"
        )


def _log_terms(input: torch.Tensor, from_logits: bool, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p, log(1 - p)) from logits (stable) or probabilities (clamped to [eps, 1 - eps])."""
    if from_logits:
        return F.logsigmoid(input), F.logsigmoid(-input)
    p = input.clamp(eps, 1 - eps)
    return p.log(), (1 - p).log()


def binary_cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    from_logits: bool = True,
    reduction: str = "mean",
    log_base: float = math.e,
    eps: float = 1e-7,
) -> torch.Tensor:
    """``L = -(1/n) sum [y log p + (1 - y) log(1 - p)]`` over all elements (any shape, same for both).

    ``log_base=10`` with ``reduction="sum"`` reproduces the lecture's slide numbers.
    """
    _check_binary(input, target)
    target = target.to(input.dtype)
    log_p, log_q = _log_terms(input, from_logits, eps)
    loss = -(target * log_p + (1 - target) * log_q) / math.log(log_base)
    return _reduce(loss, reduction)


def balanced_binary_cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    beta: float | None = None,
    from_logits: bool = True,
    reduction: str = "mean",
    eps: float = 1e-7,
) -> torch.Tensor:
    """Class-balanced BCE: ``L = -(1/n) sum [beta y log p + (1 - beta)(1 - y) log(1 - p)]``.

    ``beta=None`` takes it from the batch: the fraction of negative pixels (HED, Xie and Tu 2015), so
    the rare positives weigh more; with 7 negatives per positive, beta = 7/8.
    """
    _check_binary(input, target)
    target = target.to(input.dtype)
    if beta is None:
        beta = float(1 - target.mean())
    if not 0 <= beta <= 1:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    log_p, log_q = _log_terms(input, from_logits, eps)
    loss = -(beta * target * log_p + (1 - beta) * (1 - target) * log_q)
    return _reduce(loss, reduction)


def _dice_from_sums(intersection: torch.Tensor, total: torch.Tensor, smooth: float) -> torch.Tensor:
    dice = (2 * intersection + smooth) / (total + smooth).clamp_min(1e-12)
    # 0/0 (both masks empty, smooth 0): perfect agreement by definition.
    return torch.where(total + smooth == 0, torch.ones_like(dice), dice)


def dice_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    from_logits: bool = True,
    smooth: float = 0.0,
    per_image: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    """Binary soft Dice loss ``1 - (2 sum y p + s) / (sum y + sum p + s)``.

    ``input``/``target``: ``[B, ...]`` (logits or probabilities; target in {0, 1}). Sums run over the
    whole batch (one Dice), or per image with ``per_image=True`` and then ``reduction``.
    Empty masks: see the module docstring.
    """
    _check_binary(input, target)
    p = torch.sigmoid(input) if from_logits else input
    target = target.to(p.dtype)
    dims = tuple(range(1, p.ndim)) if per_image else tuple(range(p.ndim))
    loss = 1 - _dice_from_sums((p * target).sum(dims), (p + target).sum(dims), smooth)
    return _reduce(loss, reduction) if per_image else loss


def _check_labels(target: torch.Tensor, num_classes: int, ignore_index: int | None) -> None:
    bad = (target < 0) | (target >= num_classes)
    if ignore_index is not None:
        bad &= target != ignore_index
    if bad.any():
        values = sorted(set(target[bad].unique().tolist()))[:10]
        raise ValueError(
            f"target has class values {values} outside 0..{num_classes - 1}"
            + (f" (ignore_index {ignore_index})" if ignore_index is not None else "")
        )


def multiclass_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int | None = 255,
    smooth: float = 0.0,
    classes_present_only: bool = True,
) -> torch.Tensor:
    """Soft Dice averaged over classes: softmax of ``logits [B, C, H, W]`` against ``target [B, H, W]``
    (int64 class indices); pixels equal to ``ignore_index`` count for no class.

    ``classes_present_only=True`` (as segmentation_models_pytorch) averages over the classes that occur in
    the target, because a class absent from the target has Dice 0 for any non-zero soft prediction, a
    constant 1 that only inflates the loss. If no class occurs (all pixels ignored) the loss is 0.
    """
    if (
        logits.ndim != target.ndim + 1
        or logits.shape[0] != target.shape[0]
        or logits.shape[2:] != target.shape[1:]
    ):
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} do not match")
    num_classes = logits.shape[1]
    _check_labels(target, num_classes, ignore_index)
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    probs = logits.softmax(1) * valid.unsqueeze(1)
    onehot = F.one_hot(torch.where(valid, target, 0), num_classes).movedim(-1, 1).to(probs.dtype)
    onehot = onehot * valid.unsqueeze(1)
    dims = (0, 2, 3) if logits.ndim == 4 else tuple(d for d in range(logits.ndim) if d != 1)
    dice = _dice_from_sums((probs * onehot).sum(dims), (probs + onehot).sum(dims), smooth)
    loss = 1 - dice
    if classes_present_only:
        present = onehot.sum(dims) > 0
        if not present.any():
            return logits.sum() * 0  # keeps the graph; nothing to learn from
        return loss[present].mean()
    return loss.mean()


def _lovasz_grad(fg_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss at errors sorted in decreasing order:
    ``J(1..i) - J(1..i-1)``, where ``J(1..i)`` is 1 - IoU when the ``i`` largest errors are mistakes."""
    total = fg_sorted.sum()
    intersection = total - fg_sorted.cumsum(0)
    union = total + (1 - fg_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])


def lovasz_softmax_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int | None = 255,
    classes_present_only: bool = True,
    per_image: bool = False,
) -> torch.Tensor:
    """Lovasz-softmax loss on ``logits [B, C, H, W]`` and ``target [B, H, W]`` (Berman et al. 2018).

    For each class, the pixel errors ``|[y = c] - p_c|`` sorted in decreasing order are weighted by the
    gradient of the Lovasz extension of the Jaccard loss; the result is the mean over classes (those
    present in the target, by default; with ``classes_present_only=False`` an absent class adds its
    largest probability, the cost of a false positive). On one-hot predictions it equals ``1 - IoU``
    averaged over the classes, so it optimises the mean IoU that segmentation is scored by.
    ``per_image`` averages the loss of each image instead of computing it over the whole batch.
    Ignored pixels are left out; a batch with nothing to learn from gives 0 (still in the graph).
    """
    if logits.ndim != target.ndim + 1 or (logits.shape[0], *logits.shape[2:]) != tuple(target.shape):
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} do not match")
    num_classes = logits.shape[1]
    _check_labels(target, num_classes, ignore_index)
    if per_image:
        losses = [
            lovasz_softmax_loss(logit[None], t[None], ignore_index, classes_present_only)
            for logit, t in zip(logits, target, strict=True)
        ]
        return torch.stack(losses).mean()
    probs = logits.softmax(1).movedim(1, -1).reshape(-1, num_classes)
    labels = target.reshape(-1)
    if ignore_index is not None:
        valid = labels != ignore_index
        probs, labels = probs[valid], labels[valid]
    losses = []
    for c in range(num_classes):
        fg = (labels == c).to(probs.dtype)
        if classes_present_only and not fg.any():
            continue
        errors = (fg - probs[:, c]).abs()
        errors_sorted, order = torch.sort(errors, descending=True)
        losses.append(torch.dot(errors_sorted, _lovasz_grad(fg[order])))
    if not losses:
        return logits.sum() * 0
    return torch.stack(losses).mean()


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: Sequence[float] | torch.Tensor | None = None,
    ignore_index: int = 255,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """``F.cross_entropy`` over pixels with class weights and ``ignore_index``, plus two fixes for
    segmentation: target values outside ``0..C-1`` (other than ``ignore_index``) raise a clear error
    instead of a CUDA assert, and a batch with every pixel ignored gives 0 instead of NaN."""
    _check_labels(target, logits.shape[1], ignore_index)
    if weight is not None and not isinstance(weight, torch.Tensor):
        weight = torch.tensor(list(weight), dtype=logits.dtype, device=logits.device)
    if not (target != ignore_index).any():
        return logits.sum() * 0
    return F.cross_entropy(
        logits, target, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing
    )


class BCELoss(nn.Module):
    def __init__(self, from_logits: bool = True, reduction: str = "mean") -> None:
        super().__init__()
        self.from_logits, self.reduction = from_logits, reduction

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return binary_cross_entropy(input, target, self.from_logits, self.reduction)


class BalancedBCELoss(nn.Module):
    def __init__(self, beta: float | None = None, from_logits: bool = True) -> None:
        super().__init__()
        self.beta, self.from_logits = beta, from_logits

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return balanced_binary_cross_entropy(input, target, self.beta, self.from_logits)


class DiceLoss(nn.Module):
    """Multi-class soft Dice on ``logits [B, C, H, W]`` and ``target [B, H, W]``."""

    def __init__(
        self, ignore_index: int | None = 255, smooth: float = 0.0, classes_present_only: bool = True
    ):
        super().__init__()
        self.ignore_index, self.smooth, self.classes_present_only = ignore_index, smooth, classes_present_only

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return multiclass_dice_loss(logits, target, self.ignore_index, self.smooth, self.classes_present_only)


class LovaszSoftmaxLoss(nn.Module):
    """Lovasz-softmax on ``logits [B, C, H, W]`` and ``target [B, H, W]`` (:func:`lovasz_softmax_loss`)."""

    def __init__(
        self, ignore_index: int | None = 255, classes_present_only: bool = True, per_image: bool = False
    ):
        super().__init__()
        self.ignore_index, self.per_image = ignore_index, per_image
        self.classes_present_only = classes_present_only

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        present = self.classes_present_only
        return lovasz_softmax_loss(logits, target, self.ignore_index, present, self.per_image)


class CrossEntropyLoss(nn.Module):
    """Pixel cross-entropy on ``logits [B, C, H, W]`` and ``target [B, H, W]`` (see :func:`cross_entropy`)."""

    def __init__(
        self, weight: Sequence[float] | None = None, ignore_index: int = 255, label_smoothing: float = 0.0
    ):
        super().__init__()
        self.register_buffer(
            "weight", None if weight is None else torch.tensor(list(weight), dtype=torch.float32)
        )
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.to(logits.dtype)
        return cross_entropy(logits, target, weight, self.ignore_index, self.label_smoothing)


class WeightedSumLoss(nn.Module):
    """``sum_i w_i L_i(input, target)``.

    Example: ``WeightedSumLoss([(1.0, CrossEntropyLoss()), (1.0, DiceLoss())])``.
    """

    def __init__(self, terms: Sequence[tuple[float, nn.Module]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("WeightedSumLoss needs at least one (weight, loss) term")
        self.weights = [float(w) for w, _ in terms]
        self.losses = nn.ModuleList(loss for _, loss in terms)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * loss(input, target) for w, loss in zip(self.weights, self.losses, strict=True))


def segmentation_loss(
    name: str = "ce",
    ignore_index: int = 255,
    class_weights: Sequence[float] | None = None,
    dice_weight: float = 1.0,
) -> nn.Module:
    """A multi-class segmentation loss on ``(logits [B, C, H, W], target [B, H, W])`` by name:
    ``"ce"`` (cross-entropy), ``"dice"`` (soft Dice), ``"ce+dice"`` (their sum, Dice weighted by
    ``dice_weight``), ``"lovasz"`` (Lovasz-softmax) and ``"ce+lovasz"`` (their sum, Lovasz weighted by
    ``dice_weight`` too)."""
    ce = CrossEntropyLoss(class_weights, ignore_index)
    losses = {"ce": ce, "dice": DiceLoss(ignore_index), "lovasz": LovaszSoftmaxLoss(ignore_index)}
    if name in losses:
        return losses[name]
    first, _, second = name.partition("+")
    if first == "ce" and second in ("dice", "lovasz"):
        return WeightedSumLoss([(1.0, ce), (dice_weight, losses[second])])
    raise ValueError(f"unknown segmentation loss {name!r}; choose ce, dice, ce+dice, lovasz or ce+lovasz")
