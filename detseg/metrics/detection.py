"""Precision-recall curves and average precision by every common definition.

Given the detections of one class sorted by score (highest first), ``tp[i]`` says whether detection i
is a true positive and ``num_gt`` is the number of ground-truth objects; then after the first n
detections recall R_n = TP_n / num_gt and precision P_n = TP_n / n.

AP definitions (``average_precision(recall, precision, method)``):

- ``lecture``: sum_n (R_n - R_{n-1}) P_n with R_0 = 0: the area under the raw PR curve, no
  interpolation (the lecture's 6-box example gives 1/3 + 1/3 + 0.75/3 = 0.91667).
- ``voc07``: the PASCAL VOC 2007 11-point AP: the mean over t in {0, 0.1, ..., 1} of the largest
  precision at recall >= t (0 where recall never reaches t). Same example: (7 + 4 * 0.75) / 11 = 0.90909.
- ``voc12``: the VOC 2010+ devkit's all-point interpolated AP: precision replaced by its envelope
  (max precision at any higher recall), area under that step curve. Same example: 0.91667.
- ``coco101``: pycocotools' AP: the envelope sampled at 101 recall points 0, 0.01, ..., 1 (the first
  detection whose recall reaches the point; 0 beyond the largest recall), averaged.
  Same example: (34 + 33 + 34 * 0.75) / 101 = 0.91584.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHODS = ("lecture", "voc07", "voc12", "coco101")


@dataclass
class PRCurve:
    """One class's precision-recall curve: entry i is after keeping the i+1 highest-scored detections.

    ``thresholds[i]`` is the score of detection i (keep scores >= it); arrays are ``float64 [N]``.
    """

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray
    num_gt: int

    @property
    def f1(self) -> np.ndarray:
        """F1 = 2PR / (P + R) at each threshold (0 where P + R = 0)."""
        s = self.precision + self.recall
        return np.divide(2 * self.precision * self.recall, s, out=np.zeros_like(s), where=s > 0)

    def best_f1(self) -> tuple[float, float, float, float]:
        """(threshold, f1, precision, recall) at the F1-optimal score threshold (the lowest score among
        the tied best, so the deployed model keeps as many detections as that F1 allows)."""
        if len(self.thresholds) == 0:
            return float("nan"), 0.0, 0.0, 0.0
        f1 = self.f1
        # Only a threshold at the last of a run of equal scores is realisable: take the last index of ties.
        last = np.r_[self.thresholds[1:] != self.thresholds[:-1], True]
        i = int(np.flatnonzero(last)[np.argmax(f1[last])])
        return float(self.thresholds[i]), float(f1[i]), float(self.precision[i]), float(self.recall[i])

    def at_threshold(self, score: float) -> tuple[float, float, float]:
        """(precision, recall, f1) when keeping detections with score >= ``score``."""
        n = int(np.count_nonzero(self.thresholds >= score))
        if n == 0:
            return 0.0, 0.0, 0.0
        p, r = float(self.precision[n - 1]), float(self.recall[n - 1])
        return p, r, (2 * p * r / (p + r) if p + r > 0 else 0.0)

    def average_precision(self, method: str = "voc12") -> float:
        return average_precision(self.recall, self.precision, method)


def pr_curve(scores: np.ndarray, tp: np.ndarray, num_gt: int, ignore: np.ndarray | None = None) -> PRCurve:
    """PR curve of one class from detection ``scores [N]``, true-positive flags ``tp [N]`` and ``num_gt``.

    Detections are sorted by score with a stable sort (ties keep their given order); those flagged in
    ``ignore`` (e.g. VOC 'difficult' matches, COCO crowd matches) count as neither TP nor FP.
    """
    scores = np.asarray(scores, dtype=np.float64)
    tp = np.asarray(tp, dtype=bool)
    keep = np.ones(len(scores), bool) if ignore is None else ~np.asarray(ignore, dtype=bool)
    order = np.argsort(-scores[keep], kind="stable")
    s, t = scores[keep][order], tp[keep][order]
    ctp = np.cumsum(t, dtype=np.float64)
    n = np.arange(1, len(t) + 1, dtype=np.float64)
    recall = ctp / num_gt if num_gt > 0 else np.zeros_like(ctp)
    return PRCurve(precision=ctp / n, recall=recall, thresholds=s, num_gt=int(num_gt))


def precision_envelope(precision: np.ndarray) -> np.ndarray:
    """Each precision replaced by the largest precision at the same or a later (higher-recall) point."""
    p = np.asarray(precision, dtype=np.float64)
    return np.maximum.accumulate(p[::-1])[::-1] if len(p) else p


def average_precision(recall: np.ndarray, precision: np.ndarray, method: str = "voc12") -> float:
    """AP of one class from a PR curve (``recall``, ``precision``: ``[N]``, in detection order).

    ``method``: ``lecture`` | ``voc07`` | ``voc12`` | ``coco101`` (definitions in the module docstring).
    An empty curve has AP 0.
    """
    r = np.asarray(recall, dtype=np.float64)
    p = np.asarray(precision, dtype=np.float64)
    if method not in METHODS:
        raise ValueError(f"average_precision: method must be one of {', '.join(METHODS)}, got {method!r}")
    if len(r) == 0:
        return 0.0
    if method == "lecture":
        return float(np.sum(np.diff(np.r_[0.0, r]) * p))
    if method == "voc07":
        # As the VOC devkit's voc_ap(use_07_metric=True): thresholds 0, 0.1, ..., 1.
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            ap += (np.max(p[r >= t]) if np.any(r >= t) else 0.0) / 11.0
        return float(ap)
    if method == "voc12":
        mrec = np.r_[0.0, r, 1.0]
        mpre = precision_envelope(np.r_[0.0, p, 0.0])
        i = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))
    # coco101: as pycocotools' accumulate.
    rec_thrs = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
    env = precision_envelope(p)
    idx = np.searchsorted(r, rec_thrs, side="left")
    q = np.where(idx < len(env), env[np.minimum(idx, len(env) - 1)], 0.0)
    return float(np.mean(q))


def mean_ap(per_class: dict[str, float]) -> float:
    """mAP: the mean over classes (NaN entries, classes without ground truth, left out)."""
    vals = np.array([v for v in per_class.values() if v is not None], dtype=np.float64)
    vals = vals[~np.isnan(vals)]
    return float(vals.mean()) if len(vals) else float("nan")


def pool_curves(curves: dict[str, PRCurve]) -> PRCurve:
    """All classes as one: every class's detections and ground truth pooled into one PR curve."""
    scores, tps, n = [], [], 0
    for c in curves.values():
        tp_count = np.rint(c.recall * c.num_gt) if c.num_gt > 0 else np.zeros(len(c.recall))
        tps.append(np.diff(np.r_[0.0, tp_count]) > 0.5)
        scores.append(c.thresholds)
        n += c.num_gt
    if not scores:
        return PRCurve(np.zeros(0), np.zeros(0), np.zeros(0), 0)
    return pr_curve(np.concatenate(scores), np.concatenate(tps), n)
