"""Classification metrics from a confusion matrix: accuracy, per-class precision, recall and F1.

Everything follows from ``C[i, j]`` = images of true class ``i`` predicted as ``j``:

- accuracy = trace(C) / sum(C)
- precision_k = C[k, k] / sum_i C[i, k]  (of those predicted k, how many are k)
- recall_k = C[k, k] / sum_j C[k, j]  (of the true k, how many were found)
- F1_k = 2 P_k R_k / (P_k + R_k)
- balanced accuracy = the mean recall; macro precision / recall / F1 = the plain means over classes.

A ratio with a zero denominator is 0 (torchmetrics' and scikit-learn's ``zero_division=0``). The
confusion matrix is summed over batches (and processes), so the metrics are exact over a whole split.
"""

from __future__ import annotations

import numpy as np
import torch


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``int64 [K, K]`` from predicted and true labels ``[N]``; rows = true class, columns = predicted."""
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    if pred.shape != target.shape:
        raise ValueError(f"confusion_matrix: {pred.numel()} predictions for {target.numel()} labels")
    bad = (target < 0) | (target >= num_classes) | (pred < 0) | (pred >= num_classes)
    if bool(bad.any()):
        raise ValueError(f"confusion_matrix: labels must lie in 0..{num_classes - 1}")
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def classification_scores(confusion: np.ndarray | torch.Tensor) -> dict[str, np.ndarray | float]:
    """Metrics of a confusion matrix ``[K, K]``: ``accuracy``, ``balanced_accuracy``,
    ``macro_precision``, ``macro_recall``, ``macro_f1`` (floats) and ``precision``, ``recall``, ``f1``,
    ``support`` (arrays ``[K]``, ``support`` = true images per class)."""
    c = np.asarray(confusion, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"classification_scores: need a square confusion matrix, got shape {c.shape}")
    tp = np.diag(c)
    support, predicted = c.sum(1), c.sum(0)
    precision, recall = _ratio(tp, predicted), _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    total = c.sum()
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "balanced_accuracy": float(recall.mean()),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": support.astype(np.int64),
    }


def accuracy(logits: torch.Tensor, target: torch.Tensor, topk: int = 1) -> float:
    """Share of rows of ``logits [N, K]`` whose true class ``target [N]`` is among the ``topk`` highest."""
    if len(target) == 0:
        return 0.0
    top = logits.topk(min(topk, logits.shape[1]), dim=1).indices
    return float((top == target.reshape(-1, 1)).any(1).float().mean())
