"""PASCAL VOC evaluation with the devkit's semantics (``voc_eval.py`` of the VOC development kit).

Per class: detections sorted by score (stable, highest first); each is compared with *all* ground-truth
boxes of its image and class; with the best one (largest IoU, first on ties): IoU > threshold and the
box not yet taken -> TP (the box is taken); taken -> FP (a duplicate); a 'difficult' box -> neither
TP nor FP; IoU <= threshold -> FP. Recall is over the non-difficult boxes only.

``plus_one=True`` measures areas as the devkit on 1-based inclusive pixel boxes (width = x2 - x1 + 1).
detseg stores boxes in the COCO convention (VOC's ``xmin`` becomes ``xmin - 1``), where the devkit's
"+1" is already inside the width, so the default ``plus_one=False`` on detseg boxes is the devkit's IoU.
Method ``lecture`` matches with IoU >= threshold (the lecture's rule); ``voc07``/``voc12`` with
IoU > threshold (the devkit's). A class without ground truth has AP NaN and is left out of the mAP.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from detseg.data.errors import DataError
from detseg.metrics.detection import METHODS, PRCurve, mean_ap, pr_curve


@dataclass
class VOCResult:
    """``mAP``; ``per_class``: name -> AP (NaN without ground truth); ``curves``: name -> PRCurve."""

    mAP: float
    per_class: dict[str, float]
    curves: dict[str, PRCurve]
    method: str
    iou: float
    num_gt: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"{'class':<24} {'AP':>8} {'num_gt':>7} {'best F1':>8} {'at score':>9}"]
        for name, ap in self.per_class.items():
            thr, f1, _, _ = self.curves[name].best_f1()
            lines.append(f"{name:<24} {ap * 100:7.2f}% {self.num_gt[name]:7d} {f1:8.3f} {thr:9.3f}")
        lines.append(f"{'mAP':<24} {self.mAP * 100:7.2f}%   ({self.method}, IoU {self.iou:g})")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        best = {
            n: dict(zip(("threshold", "f1", "precision", "recall"), c.best_f1(), strict=True))
            for n, c in self.curves.items()
        }
        return {
            "mAP": self.mAP,
            "per_class": self.per_class,
            "num_gt": self.num_gt,
            "method": self.method,
            "iou": self.iou,
            "best_f1": best,
        }


def match_detections(
    gt: dict, results: list[dict], iou: float = 0.5, plus_one: bool = False, inclusive: bool = False
) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """Devkit matching: category id -> (scores [N], tp [N], ignored [N], num_gt) in score order.

    Detections of a class are taken by score (stable); each only meets the boxes of its own image, so
    the work runs per (class, image) group in a compiled kernel.
    """
    from detseg.metrics import _coco_kernels as kern
    from detseg.metrics.coco import _boxes, _column, _ids, _indexed, no_gc

    with no_gc():
        img_ids = np.unique(
            _ids(_column(gt["images"], "id", "ground truth", "image"), "image ids", "ground truth")
        )
        cat_ids_list = [c["id"] for c in gt["categories"]]
        cat_ids = np.unique(_ids(cat_ids_list, "category ids", "ground truth"))
        anns = gt["annotations"]
        g_img = _indexed(anns, "image_id", img_ids, "ground truth", "annotation")
        g_cat = _indexed(anns, "category_id", cat_ids, "ground truth", "annotation")
        g_box = _boxes(_column(anns, "bbox", "ground truth", "annotation"), "ground truth", "annotation")
        g_hard = np.array([bool(a.get("difficult", 0) or a.get("iscrowd", 0)) for a in anns], bool)
        d_img = _indexed(results, "image_id", img_ids, "results", "result")
        d_cat = _indexed(results, "category_id", cat_ids, "results", "result")
        d_box = _boxes(_column(results, "bbox", "results", "result"), "results", "result")
        score = np.asarray(_column(results, "score", "results", "result"), dtype=np.float64).reshape(-1)
    bad = ~np.isfinite(score)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError("results", f"field 'score' is {score[i]}", f"result {i}")
    n_img = len(img_ids)
    gkey, dkey = g_cat * n_img + g_img, d_cat * n_img + d_img
    g_order = np.argsort(gkey, kind="stable")
    by_score = np.argsort(-score, kind="stable")
    d_order = by_score[np.argsort(dkey[by_score], kind="stable")]
    gkey_s, dkey_s = gkey[g_order], dkey[d_order]
    keys = np.unique(dkey_s)
    g_start = np.searchsorted(gkey_s, keys, "left")
    g_count = np.searchsorted(gkey_s, keys, "right") - g_start
    d_start = np.searchsorted(dkey_s, keys, "left")
    d_count = np.searchsorted(dkey_s, keys, "right") - d_start
    xyxy = lambda b: np.ascontiguousarray(np.c_[b[:, :2], b[:, :2] + b[:, 2:]])  # noqa: E731
    tp = np.zeros(len(d_order), bool)
    ignored = np.zeros(len(d_order), bool)
    kern.voc_match(
        xyxy(d_box[d_order]),
        xyxy(g_box[g_order]),
        np.ascontiguousarray(g_hard[g_order]),
        d_start,
        d_count,
        g_start,
        g_count,
        float(iou),
        bool(inclusive),
        1.0 if plus_one else 0.0,
        tp,
        ignored,
    )
    # Back to file order, then per class by score (stable), as the devkit sorts.
    tp_file, ign_file = np.zeros_like(tp), np.zeros_like(ignored)
    tp_file[d_order], ign_file[d_order] = tp, ignored
    num_gt = np.bincount(g_cat[~g_hard], minlength=len(cat_ids))
    out = {}
    for c in cat_ids_list:
        k = int(np.searchsorted(cat_ids, c))
        sel = by_score[d_cat[by_score] == k]
        out[c] = (score[sel], tp_file[sel], ign_file[sel], int(num_gt[k]))
    return out


def evaluate_voc(
    gt: dict, results: list[dict], iou: float = 0.5, method: str = "voc12", plus_one: bool = False
) -> VOCResult:
    """VOC-style per-class AP and mAP of ``results`` (COCO results list) against ``gt`` (COCO dict).

    ``method``: ``voc12`` (all-point, devkit 2010+), ``voc07`` (11-point), ``lecture`` (no
    interpolation) or ``coco101`` (101-point on the same single-threshold matching).
    """
    if method not in METHODS:
        raise ValueError(f"evaluate_voc: method must be one of {', '.join(METHODS)}, got {method!r}")
    matches = match_detections(gt, results, iou, plus_one, inclusive=method == "lecture")
    names = {c["id"]: str(c.get("name", c["id"])) for c in gt["categories"]}
    per_class, curves, num_gt = {}, {}, {}
    for c, (scores, tp, ignored, n) in matches.items():
        curve = pr_curve(scores, tp, n, ignore=ignored)
        name = names[c]
        curves[name] = curve
        num_gt[name] = n
        per_class[name] = curve.average_precision(method) if n > 0 else float("nan")
    return VOCResult(
        mAP=mean_ap(per_class), per_class=per_class, curves=curves, method=method, iou=iou, num_gt=num_gt
    )
