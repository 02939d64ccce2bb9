"""Instance-level IoU (iIoU), as Cityscapes' pixel-level benchmark defines it
(cityscapesScripts ``evaluation/evalPixelLevelSemanticLabeling.py``; Cordts et al., CVPR 2016).

Plain IoU lets large objects dominate: a missed pedestrian costs a few hundred pixels, a car's bumper
thousands. iIoU weights every ground-truth instance's pixels by ``avg_size[c] / instance size``, so each
instance counts about as much as an average instance of its class:

    iTP_c = sum over instances i of class c of  w_i * |pixels of i predicted as c|
    iFN_c = sum over instances i of class c of  w_i * |pixels of i predicted as anything else|
    FP_c  = pixels predicted as c whose truth is another (not ignored) class     (not weighted)
    iIoU_c = iTP_c / (iTP_c + FP_c + iFN_c),   w_i = avg_size[c] / |pixels of i|

Only classes with an average size (Cityscapes: the 8 instance classes) have an iIoU; the mean is taken
over the classes whose iIoU is defined (not NaN). Pixels of an instance class without an instance id
(Cityscapes' crowd regions) are neither iTP nor iFN, and predicting their own class there is no FP.
Pixels whose truth is ``ignore_index`` count nowhere (their instances do count, as in the reference).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


class InstanceIoU:
    """Streaming iIoU: ``update`` per image, then ``compute``.

    ``avg_size``: class index -> average instance size in pixels (the classes that have an iIoU).
    ``update(pred, target, instances, instance_classes)``:
      - ``pred``, ``target``: integer class maps ``[H, W]`` (``target == ignore_index`` is void);
      - ``instances``: ``int [H, W]``, 0 where no instance, ``k >= 1`` on the pixels of instance k;
      - ``instance_classes``: ``int [K + 1]`` (or a mapping k -> class): the class of instance k.
    """

    def __init__(self, num_classes: int, avg_size: Mapping[int, float], ignore_index: int | None = 255):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.avg_size = np.full(self.num_classes, np.nan)
        for c, size in avg_size.items():
            if not 0 <= int(c) < self.num_classes or not size > 0:
                raise ValueError(f"avg_size: class {c} must be in [0, {self.num_classes}) with a size > 0")
            self.avg_size[int(c)] = float(size)
        self.reset()

    def reset(self) -> None:
        k = self.num_classes
        self.tp_weighted, self.fn_weighted = np.zeros(k), np.zeros(k)
        self.tp, self.fn = np.zeros(k, np.int64), np.zeros(k, np.int64)  # unweighted, for reference
        self.fp = np.zeros(k, np.int64)
        self.instances = np.zeros(k, np.int64)

    def update(self, pred, target, instances, instance_classes) -> None:
        p, t, ids = _to_numpy(pred), _to_numpy(target), _to_numpy(instances)
        if not p.shape == t.shape == ids.shape or p.ndim != 2:
            raise ValueError(
                f"prediction {p.shape}, target {t.shape} and instances {ids.shape} must be the same [H, W]"
            )
        if isinstance(instance_classes, Mapping):
            table = np.full(int(max(instance_classes, default=0)) + 1, -1, np.int64)
            for key, value in instance_classes.items():
                table[int(key)] = int(value)
        else:
            table = _to_numpy(instance_classes).astype(np.int64).reshape(-1)
        p, t, ids = p.astype(np.int64).ravel(), t.astype(np.int64).ravel(), ids.astype(np.int64).ravel()
        k = self.num_classes
        if len(p) and (p.min() < 0 or p.max() >= k):
            raise ValueError(f"prediction has a class outside [0, {k})")
        counted = t != self.ignore_index if self.ignore_index is not None else np.ones_like(t, bool)
        wrong = counted & (t != p)
        self.fp += np.bincount(p[wrong], minlength=k)[:k]

        inside = ids > 0
        if not inside.any():
            return
        if ids.max() >= len(table):
            raise ValueError(f"instance {ids.max()} has no class in instance_classes (length {len(table)})")
        inst = ids[inside]
        cls = table[inst]
        if cls.min() < 0 or cls.max() >= k:
            raise ValueError(f"an instance's class is outside [0, {k})")
        sizes = np.bincount(inst)
        hits = np.bincount(inst, weights=(p[inside] == cls)).astype(np.int64)
        for i in np.nonzero(sizes)[0]:
            c = table[i]
            if np.isnan(self.avg_size[c]):
                continue  # a class without an average size has no iIoU
            weight = self.avg_size[c] / sizes[i]
            self.tp[c] += hits[i]
            self.fn[c] += sizes[i] - hits[i]
            self.tp_weighted[c] += weight * hits[i]
            self.fn_weighted[c] += weight * (sizes[i] - hits[i])
            self.instances[c] += 1

    def compute(self) -> dict:
        """``{"iiou": [per class, NaN without an average size or any data], "miiou": mean of the defined,
        "instances": per-class counts}``."""
        denom = self.tp_weighted + self.fp + self.fn_weighted
        has = ~np.isnan(self.avg_size) & (denom > 0)
        iiou = np.full(self.num_classes, np.nan)
        iiou[has] = self.tp_weighted[has] / denom[has]
        defined = iiou[~np.isnan(iiou)]
        return {
            "iiou": iiou.tolist(),
            "miiou": float(defined.mean()) if len(defined) else float("nan"),
            "instances": self.instances.tolist(),
        }
