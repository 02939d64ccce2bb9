"""Semantic segmentation metrics from a streaming confusion matrix.

``confusion[t, p]`` counts pixels of true class t predicted as p (rows = truth, columns = prediction,
``int64 [C, C]``), so any number of images is summed without holding them and DDP can all-reduce it.
With TP_c = confusion[c, c], FP_c = column sum - TP_c, FN_c = row sum - TP_c:

- IoU_c = TP / (TP + FP + FN); Dice_c = F1_c = 2 TP / (2 TP + FP + FN);
- pixel accuracy = sum TP / all counted pixels; class accuracy_c = TP / (TP + FN) (recall);
- frequency-weighted IoU = sum_c (truth pixels of c / all pixels) * IoU_c.

NaN rules: a class absent from both truth and prediction has IoU and Dice NaN (0/0) and is left out
of ``miou``/``mdice`` (nanmean); a class absent from the truth has accuracy NaN (left out of
``mean_accuracy``), while a class predicted but never true has IoU 0 and counts in ``miou``. Pixels
whose truth is ``ignore_index`` are not counted at all.
"""

from __future__ import annotations

import numpy as np


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def segmentation_scores(confusion) -> dict:
    """All metrics of a confusion matrix ``[C, C]`` (rows truth, columns prediction) as a dict.

    Keys: ``iou``, ``dice``, ``accuracy`` (per class lists), ``miou``, ``mdice``, ``pixel_accuracy``,
    ``mean_accuracy``, ``fwiou`` (floats) and ``confusion`` (list of lists).
    """
    c = _to_numpy(confusion).astype(np.int64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"confusion must be a square [C, C] matrix, got shape {c.shape}")
    cf = c.astype(np.float64)
    tp = np.diag(cf)
    truth = cf.sum(1)
    pred = cf.sum(0)
    fp, fn = pred - tp, truth - tp
    total = cf.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)
        dice = np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
        acc = np.where(truth > 0, tp / truth, np.nan)
    present = truth > 0
    return {
        "iou": iou.tolist(),
        "miou": _nanmean(iou),
        "dice": dice.tolist(),
        "mdice": _nanmean(dice),
        "accuracy": acc.tolist(),
        "pixel_accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
        "mean_accuracy": _nanmean(acc),
        "fwiou": float(np.sum(truth[present] / total * iou[present])) if total > 0 else float("nan"),
        "confusion": c.tolist(),
    }


def _nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if len(x) else float("nan")


class SegmentationMetrics:
    """Streaming segmentation metrics: ``update`` many times, then ``compute``.

    ``update(pred, target)``: integer class maps ``[H, W]`` or ``[B, H, W]`` (numpy or torch) of the
    same shape; ``target == ignore_index`` pixels are skipped. Only ``confusion`` ``int64 [C, C]`` is kept.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)

    def reset(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, pred, target) -> None:
        p, t = _to_numpy(pred), _to_numpy(target)
        if p.shape != t.shape:
            raise ValueError(f"prediction shape {p.shape} differs from target shape {t.shape}")
        if p.ndim not in (2, 3):
            raise ValueError(f"expected class maps [H, W] or [B, H, W], got shape {p.shape}")
        if p.dtype.kind not in "iub" or t.dtype.kind not in "iub":
            raise ValueError(
                f"class maps must be integer arrays, got {p.dtype} and {t.dtype} (take argmax first)"
            )
        p = p.reshape(-1).astype(np.int64)
        t = t.reshape(-1).astype(np.int64)
        if self.ignore_index is not None:
            keep = t != self.ignore_index
            p, t = p[keep], t[keep]
        k = self.num_classes
        for name, a in (("target", t), ("prediction", p)):
            if len(a) and (a.min() < 0 or a.max() >= k):
                bad = a[(a < 0) | (a >= k)][0]
                raise ValueError(
                    f"{name} has class {bad} outside [0, {k}) (ignore_index={self.ignore_index})"
                )
        self.confusion += np.bincount(t * k + p, minlength=k * k).reshape(k, k)

    def compute(self) -> dict:
        """``segmentation_scores`` of the confusion so far (see the module docstring for NaN rules)."""
        return segmentation_scores(self.confusion)
