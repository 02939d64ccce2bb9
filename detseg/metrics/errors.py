"""Why is mAP low? A detection confusion matrix and a breakdown of errors by kind.

Both look at the detections kept at one score threshold (e.g. the F1-optimal one) and one IoU
threshold. Ground truth marked ``iscrowd`` or ``difficult`` is left out, and detections overlapping it
by at least the IoU threshold (for crowds: intersection over the detection's
area, as COCO) are dropped (they would be neither right nor wrong). With ``iou_type="segm"`` the
overlaps are mask IoUs (pycocotools' ``maskUtils.iou`` on the ``segmentation`` of ground truth and
results: polygons or RLE), so both tables describe instance masks instead of boxes.

Confusion matrix ``[K + 1, K + 1]`` (rows = truth, columns = prediction, last row/column = background):
per image, detections (highest score first) first take the unmatched same-class object of largest
IoU >= threshold (the diagonal); left-over detections then take a left-over object of another class
with IoU >= threshold (off-diagonal: confused classes); detections still left are background row
(false alarms), objects still left are the background column (missed).

Error breakdown (the kinds of the TIDE toolbox, Bolya et al. 2020), each kept detection, in score order,
is the first that applies: ``tp`` (same class, IoU >= fg, object not yet taken: takes it),
``duplicate`` (same class, IoU >= fg, object already taken), ``classification`` (another class,
IoU >= fg), ``localization`` (same class, bg <= IoU < fg), ``both`` (another class, bg <= IoU < fg),
``background`` (IoU < bg with everything); objects no ``tp`` took are ``missed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detseg.metrics.boxes import box_iou, xywh_to_xyxy

ERROR_KINDS = ("tp", "duplicate", "classification", "localization", "both", "background", "missed")


@dataclass
class DetectionConfusion:
    """``matrix``: ``int64 [K + 1, K + 1]``; ``labels``: the K class names then 'background'."""

    matrix: np.ndarray
    labels: list[str]
    score_threshold: float
    iou: float

    def to_dict(self) -> dict:
        return {
            "labels": self.labels,
            "matrix": self.matrix.tolist(),
            "score_threshold": self.score_threshold,
            "iou": self.iou,
        }


class _Masks:
    """An image's masks as RLEs, what :func:`_iou` compares for segm; indexed like a box array."""

    def __init__(self, rles: list):
        self.rles = rles

    def __len__(self) -> int:
        return len(self.rles)

    def __getitem__(self, keep) -> _Masks:
        return _Masks([r for r, k in zip(self.rles, np.asarray(keep, bool), strict=True) if k])


def _geometry(entries: list[dict], iou_type: str, size: tuple[int, int] | None):
    """Boxes ``xyxy [N, 4]`` or, for segm, the entries' masks (``_Masks``)."""
    if iou_type == "bbox":
        return xywh_to_xyxy(np.array([e["bbox"] for e in entries], np.float64).reshape(-1, 4))
    from detseg.metrics.coco import _ann_to_rle

    rles = []
    for e in entries:
        if "segmentation" not in e:
            where = f"image id {e.get('image_id')}"
            raise ValueError(f"iou_type='segm': {where} has an entry without 'segmentation'")
        segm = e["segmentation"]
        if isinstance(segm, list) or isinstance(segm.get("counts"), list):
            if size is None:
                raise ValueError(f"image id {e.get('image_id')}: polygons need the image's height and width")
            rles.append(_ann_to_rle(segm, *size))
        else:
            rles.append(segm)
    return _Masks(rles)


def _iou(d, g, crowd=None) -> np.ndarray:
    """IoU ``[D, G]`` of boxes or masks (crowds: intersection over the detection's area, as COCO)."""
    if not len(d) or not len(g):
        return np.zeros((len(d), len(g)))
    if isinstance(d, _Masks):
        from pycocotools import mask as mask_utils

        flags = [0] * len(g) if crowd is None else [int(c) for c in crowd]
        return np.asarray(mask_utils.iou(d.rles, g.rles, flags), np.float64).reshape(len(d), len(g))
    return box_iou(d, g) if crowd is None else box_iou(d, g, crowd=crowd)


def _per_image(gt: dict, results: list[dict], score_threshold: float, iou_type: str = "bbox"):
    """Yield per image: gt boxes xyxy (or masks), gt class, dt boxes (score order), dt class, hard ones."""
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"] if im.get("height")}
    cat_index = {c["id"]: i for i, c in enumerate(gt["categories"])}
    gts: dict = {}
    for a in gt["annotations"]:
        gts.setdefault(a["image_id"], []).append(a)
    dts: dict = {}
    for r in results:
        if r["score"] >= score_threshold:
            dts.setdefault(r["image_id"], []).append(r)
    for img in {im["id"] for im in gt["images"]} | set(dts):
        ga = gts.get(img, [])
        hard = np.array([bool(a.get("iscrowd", 0) or a.get("difficult", 0)) for a in ga], bool)
        gb = _geometry(ga, iou_type, sizes.get(img))
        gc = np.array([cat_index[a["category_id"]] for a in ga], np.int64)
        dl = sorted(dts.get(img, []), key=lambda r: -r["score"])
        db = _geometry(dl, iou_type, sizes.get(img))
        dc = np.array([cat_index[r["category_id"]] for r in dl], np.int64)
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in ga], bool)
        yield gb[~hard], gc[~hard], db, dc, (gb[hard], crowd[hard])


def _drop_hard(db, dc, hard, iou):
    hb, crowd = hard
    if len(hb) and len(db):
        # crowds: intersection over the detection's area (as COCO); difficult boxes: plain IoU
        keep = _iou(db, hb, crowd).max(1) < iou
        return db[keep], dc[keep]
    return db, dc


def detection_confusion(
    gt: dict, results: list[dict], score_threshold: float = 0.5, iou: float = 0.5, iou_type: str = "bbox"
) -> DetectionConfusion:
    """Detection confusion matrix of ``results`` (COCO results list) against ``gt`` (COCO dict);
    ``iou_type="segm"`` matches masks."""
    k = len(gt["categories"])
    cm = np.zeros((k + 1, k + 1), np.int64)
    for gb, gc, db, dc, hb in _per_image(gt, results, score_threshold, iou_type):
        db, dc = _drop_hard(db, dc, hb, iou)
        ov = _iou(db, gb)
        g_free = np.ones(len(gb), bool)
        d_free = np.ones(len(db), bool)
        for same in (True, False):
            for d in range(len(db)):
                if not d_free[d]:
                    continue
                cand = g_free & (ov[d] >= iou) & ((gc == dc[d]) if same else (gc != dc[d]))
                if cand.any():
                    g = int(np.flatnonzero(cand)[np.argmax(ov[d, cand])])
                    g_free[g] = d_free[d] = False
                    cm[gc[g], dc[d]] += 1
        np.add.at(cm, (np.full(int(d_free.sum()), k), dc[d_free]), 1)
        np.add.at(cm, (gc[g_free], np.full(int(g_free.sum()), k)), 1)
    labels = [str(c.get("name", c["id"])) for c in gt["categories"]] + ["background"]
    return DetectionConfusion(
        matrix=cm, labels=labels, score_threshold=float(score_threshold), iou=float(iou)
    )


def error_breakdown(
    gt: dict,
    results: list[dict],
    score_threshold: float = 0.5,
    fg_iou: float = 0.5,
    bg_iou: float = 0.1,
    iou_type: str = "bbox",
) -> dict[str, int]:
    """Counts of each kind in ``ERROR_KINDS`` (see the module docstring); ``iou_type="segm"``: on masks."""
    counts = dict.fromkeys(ERROR_KINDS, 0)
    for gb, gc, db, dc, hb in _per_image(gt, results, score_threshold, iou_type):
        db, dc = _drop_hard(db, dc, hb, fg_iou)
        ov = _iou(db, gb)
        taken = np.zeros(len(gb), bool)
        for d in range(len(db)):
            same = gc == dc[d]
            o = ov[d]
            free = same & ~taken & (o >= fg_iou)
            if free.any():
                g = int(np.flatnonzero(free)[np.argmax(o[free])])
                taken[g] = True
                kind = "tp"
            elif (same & (o >= fg_iou)).any():
                kind = "duplicate"
            elif (~same & (o >= fg_iou)).any():
                kind = "classification"
            elif (same & (o >= bg_iou)).any():
                kind = "localization"
            elif (~same & (o >= bg_iou)).any():
                kind = "both"
            else:
                kind = "background"
            counts[kind] += 1
        counts["missed"] += int((~taken).sum())
    return counts
