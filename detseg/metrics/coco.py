"""COCO evaluation (bbox and segm) with pycocotools' exact semantics, vectorized and compiled.

``evaluate(gt, results, iou_type="bbox")`` gives the same 12 stats as ``pycocotools.cocoeval.COCOeval``
(bit for bit): area ranges (inclusive at both ends), maxDets per image and category, crowds (ignored
ground truth matched by intersection over the detection's area, any number of times), stable sorting
of equal scores, 101 recall thresholds on the precision envelope, -1 where a category has no ground
truth. Two documented pycocotools bugs are reproduced by default and fixed behind flags:

- ``fix_stat0_maxdets``: stat 0 (AP) uses maxDets=100 hard-coded, so with custom ``max_dets`` not
  ending in 100 it reads no column (-1); the fix uses the largest maxDets.
- ``fix_gt_id_zero``: a ground-truth annotation with ``id`` 0 is consumed by the detection that
  matches it, but that detection counts as a false positive (pycocotools tests ``dtm == 0``).

Differences on *bad* input, on purpose: results naming an unknown image or category, NaN or infinite
scores or boxes, negative box sizes, ground truth on unknown images or duplicate annotation ids raise
``DataError`` (pycocotools asserts, crashes or silently drops). Ground truth without ``area`` gets the
area computed (segmentation area when present, else w * h) and without ``iscrowd`` gets 0, with one
warning.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import operator
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from detseg.data.errors import DataError
from detseg.metrics.detection import PRCurve


class COCOStat(NamedTuple):
    """One of pycocotools' 12 summary numbers: AP or AR, at one IoU threshold (None: the mean over all of
    them, 0.50:0.95), over one area range, with :attr:`COCOParams.max_dets` ``[max_dets_index]``."""

    name: str
    ap: bool
    iou: float | None
    area: str
    max_dets_index: int


#: pycocotools' 12 summary numbers, in the order of its ``stats`` (the first one's maxDets is 100 whatever
#: the parameters say, as in pycocotools: see ``fix_stat0_maxdets``).
COCO_STATS = (
    COCOStat("AP", True, None, "all", 2),
    COCOStat("AP50", True, 0.5, "all", 2),
    COCOStat("AP75", True, 0.75, "all", 2),
    COCOStat("APs", True, None, "small", 2),
    COCOStat("APm", True, None, "medium", 2),
    COCOStat("APl", True, None, "large", 2),
    COCOStat("AR1", False, None, "all", 0),
    COCOStat("AR10", False, None, "all", 1),
    COCOStat("AR100", False, None, "all", 2),
    COCOStat("ARs", False, None, "small", 2),
    COCOStat("ARm", False, None, "medium", 2),
    COCOStat("ARl", False, None, "large", 2),
)
STAT_NAMES = tuple(stat.name for stat in COCO_STATS)
AREA_LABELS = ("all", "small", "medium", "large")


@dataclass
class COCOParams:
    """Evaluation parameters; the defaults are pycocotools' for bbox and segm."""

    iou_thresholds: np.ndarray = field(
        default_factory=lambda: np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
    )
    rec_thresholds: np.ndarray = field(
        default_factory=lambda: np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
    )
    max_dets: list[int] = field(default_factory=lambda: [1, 10, 100])
    area_ranges: list[list[float]] = field(
        default_factory=lambda: [[0**2, 1e5**2], [0**2, 32**2], [32**2, 96**2], [96**2, 1e5**2]]
    )
    area_labels: list[str] = field(default_factory=lambda: list(AREA_LABELS))


@dataclass
class COCOResult:
    """What ``evaluate`` returns.

    ``precision``: ``[T, R, K, A, M]`` and ``recall``: ``[T, K, A, M]`` exactly as pycocotools'
    ``eval['precision']`` / ``eval['recall']`` (T IoU thresholds, R recall points, K categories,
    A area ranges, M maxDets); ``stats``: the 12 summary numbers by name; ``stats_list``: the same as
    pycocotools' ``stats`` order; ``per_category``: name -> {AP, AP50, AP75, AR100, num_gt}.
    """

    stats: dict[str, float]
    stats_list: list[float]
    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray
    params: COCOParams
    iou_type: str
    category_ids: list
    category_names: list[str]
    per_category: dict[str, dict[str, float]]
    _matches: dict = field(default_factory=dict, repr=False)

    def summary(self) -> str:
        """The 12-line table as pycocotools' ``summarize()`` prints it."""
        p = self.params
        lines = []
        for (ap, iou_thr, area, max_det), value in zip(_stat_specs(p), self.stats_list, strict=True):
            title = "Average Precision" if ap else "Average Recall"
            kind = "(AP)" if ap else "(AR)"
            iou = (
                f"{p.iou_thresholds[0]:0.2f}:{p.iou_thresholds[-1]:0.2f}"
                if iou_thr is None
                else f"{iou_thr:0.2f}"
            )
            lines.append(
                f" {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6s} | maxDets={max_det:>3d} ]"
                f" = {value:0.3f}"
            )
        return "\n".join(lines)

    def per_category_table(self) -> str:
        """Per-category AP (IoU 0.50:0.95), AP50 and AR100, one line each."""
        lines = [f"{'category':<24} {'AP':>7} {'AP50':>7} {'AP75':>7} {'AR100':>7} {'num_gt':>7}"]
        for name, row in self.per_category.items():
            lines.append(
                f"{name:<24} {row['AP']:7.3f} {row['AP50']:7.3f} {row['AP75']:7.3f} {row['AR100']:7.3f}"
                f" {row['num_gt']:7d}"
            )
        return "\n".join(lines)

    def pr_curves(self, iou_threshold: float = 0.5) -> dict[str, PRCurve]:
        """Per category, the PR curve at one of the IoU thresholds, area 'all', the largest maxDets
        (detections matching crowds or outside the range count as neither TP nor FP, as in COCO)."""
        m = self._matches
        if not m:
            raise ValueError("pr_curves needs the matches: call evaluate(..., keep_matches=True)")
        t = int(np.argmin(np.abs(self.params.iou_thresholds - iou_threshold)))
        out = {}
        for k, name in enumerate(self.category_names):
            sel = slice(m["start"][k], m["end"][k])  # one category, already by score (stable)
            out[name] = _pr_from(m["score"][sel], m["matched"][t, sel], m["ignore"][t, sel], m["npig"][k])
        return out

    def to_dict(self) -> dict:
        """JSON-ready: the 12 stats by name, the list, and the per-category table."""
        return {
            **self.stats,
            "stats": list(self.stats_list),
            "per_category": self.per_category,
            "iou_type": self.iou_type,
        }


def _pr_from(scores: np.ndarray, tp: np.ndarray, ignore: np.ndarray, num_gt: int) -> PRCurve:
    from detseg.metrics.detection import pr_curve

    return pr_curve(scores, tp, int(num_gt), ignore=ignore)


def _stat_specs(p: COCOParams, fix_stat0: bool = False) -> list[tuple[int, float | None, str, int]]:
    """``(ap, iou, area, maxDets)`` of each of :data:`COCO_STATS` under the parameters ``p``."""
    specs = [(int(stat.ap), stat.iou, stat.area, p.max_dets[stat.max_dets_index]) for stat in COCO_STATS]
    specs[0] = (*specs[0][:3], p.max_dets[-1] if fix_stat0 else 100)
    return specs


def _summarize(precision, recall, p: COCOParams, ap: int, iou_thr, area: str, max_det: int) -> float:
    # pycocotools' _summarize, operation for operation (np.mean over the same array: same rounding).
    aind = [i for i, a in enumerate(p.area_labels) if a == area]
    mind = [i for i, m in enumerate(p.max_dets) if m == max_det]
    if ap == 1:
        s = precision
        if iou_thr is not None:
            s = s[np.where(iou_thr == p.iou_thresholds)[0]]
        s = s[:, :, :, aind, mind]
    else:
        s = recall
        if iou_thr is not None:
            s = s[np.where(iou_thr == p.iou_thresholds)[0]]
        s = s[:, :, aind, mind]
    if len(s[s > -1]) == 0:
        return -1.0
    return float(np.mean(s[s > -1]))


# ----------------------------------------------------------------------------------------------------
# Reading the inputs into arrays


def _ids(values: list, what: str, src: str) -> np.ndarray:
    try:
        arr = np.asarray(values)
    except ValueError as exc:
        raise DataError(src, f"{what}: {exc}") from None
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and len(arr) and np.all(arr == np.round(arr)):
            return arr.astype(np.int64)
        if len(arr):
            raise DataError(src, f"{what} must be integers (got {arr.dtype})")
        return arr.astype(np.int64)
    return arr.astype(np.int64)


def _column(items: list[dict], key: str, src: str, kind: str, default=None) -> list:
    try:
        if default is None:
            return list(map(operator.itemgetter(key), items))  # faster than a comprehension on 500k
        return [d.get(key, default) for d in items]
    except KeyError:
        i = next(i for i, d in enumerate(items) if key not in d)
        raise DataError(src, f"missing field '{key}'", f"{kind} {i}") from None
    except TypeError:
        i = next(i for i, d in enumerate(items) if not isinstance(d, dict))
        raise DataError(src, f"not an object: {items[i]!r:.80}", f"{kind} {i}") from None


def _boxes(values: list, src: str, kind: str, ids=None) -> np.ndarray:
    if len(values) == 0:
        return np.zeros((0, 4))
    try:
        # Flattened through fromiter: several times faster than np.asarray on 500k small lists.
        if not np.all(np.fromiter(map(len, values), np.int64, count=len(values)) == 4):
            raise ValueError
        b = np.fromiter(itertools.chain.from_iterable(values), np.float64, count=4 * len(values)).reshape(
            -1, 4
        )
    except (ValueError, TypeError):
        i = next((i for i, v in enumerate(values) if not (isinstance(v, list | tuple) and len(v) == 4)), 0)
        raise DataError(
            src, f"field 'bbox' must be [x, y, w, h], got {values[i]!r:.80}", _entry(kind, i, ids)
        ) from None
    bad = ~np.isfinite(b).all(1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(src, f"field 'bbox' is not finite: {values[i]}", _entry(kind, i, ids))
    neg = (b[:, 2] < 0) | (b[:, 3] < 0)
    if neg.any():
        i = int(np.flatnonzero(neg)[0])
        raise DataError(
            src, f"field 'bbox' has a negative width or height: {values[i]}", _entry(kind, i, ids)
        )
    return b.reshape(-1, 4)


def _entry(kind: str, i: int, ids=None) -> str:
    return f"{kind} {i}" if ids is None else f"{kind} {i} (id {ids[i]})"


def _lookup(values: np.ndarray, known: np.ndarray, src: str, what: str, kind: str, ids=None) -> np.ndarray:
    """Index of each value in the sorted array ``known``; an unknown value raises naming the entry."""
    pos = np.searchsorted(known, values)
    pos_c = np.minimum(pos, max(len(known) - 1, 0))
    bad = (pos >= len(known)) | (known[pos_c] != values) if len(known) else np.ones(len(values), bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            src, f"unknown {what} {values[i]} (not in the ground truth's {what}s)", _entry(kind, i, ids)
        )
    return pos_c.astype(np.int64)


def _indexed(items: list[dict], key: str, known: np.ndarray, src: str, kind: str, ids=None) -> np.ndarray:
    """Positions in ``known`` of each item's ``key`` (``image_id`` or ``category_id``), checked."""
    what = "image ids" if key == "image_id" else "category ids"
    return _lookup(_ids(_column(items, key, src, kind), what, src), known, src, key, kind, ids)


def _ann_to_rle(segm, h: int, w: int):
    """pycocotools' COCO.annToRLE: polygons merged, uncompressed RLE compressed, RLE as is."""
    from pycocotools import mask as mask_utils

    if isinstance(segm, list):
        return mask_utils.merge(mask_utils.frPyObjects(segm, h, w))
    if isinstance(segm.get("counts"), list):
        return mask_utils.frPyObjects(segm, h, w)
    return segm


class _Gt:
    """The ground truth as arrays (annotations in file order)."""

    def __init__(self, gt: dict, iou_type: str, src: str):
        if not isinstance(gt, dict) or "images" not in gt or "annotations" not in gt:
            raise DataError(src, "a COCO ground-truth dict needs 'images', 'annotations' and 'categories'")
        images = gt["images"]
        anns = gt["annotations"]
        cats = gt.get("categories") or []
        if not cats:
            raise DataError(src, "no 'categories' in the ground truth")
        self.img_ids_raw = _ids(_column(images, "id", src, "image"), "image ids", src)
        self.img_ids = np.unique(self.img_ids_raw)
        cat_ids = _ids(_column(cats, "id", src, "category"), "category ids", src)
        self.cat_ids = np.unique(cat_ids)
        by_id = {int(c["id"]): c for c in cats}
        self.cat_names = [str(by_id[int(c)].get("name", c)) for c in self.cat_ids]
        self.img_size = {int(im["id"]): (int(im.get("height", 0)), int(im.get("width", 0))) for im in images}
        ann_ids = _ids(_column(anns, "id", src, "annotation"), "annotation ids", src)
        if len(np.unique(ann_ids)) != len(ann_ids):
            u, c = np.unique(ann_ids, return_counts=True)
            raise DataError(
                src,
                "duplicate annotation id (pycocotools would keep only the last)",
                f"annotation id {u[c > 1][0]}",
            )
        self.ann_id = ann_ids
        self.img = _indexed(anns, "image_id", self.img_ids, src, "annotation", ann_ids)
        self.cat = _indexed(anns, "category_id", self.cat_ids, src, "annotation", ann_ids)
        missing = []
        crowd = _column(anns, "iscrowd", src, "annotation", default=-1)
        self.crowd = np.array([bool(c) and c != -1 for c in crowd], dtype=bool)
        if any(c == -1 for c in crowd):
            missing.append("iscrowd (taken as 0)")
        has_segm = iou_type == "segm" or any("segmentation" in a for a in anns[:1])
        self.box = None
        if iou_type == "bbox" or all("bbox" in a for a in anns):
            self.box = _boxes(_column(anns, "bbox", src, "annotation"), src, "annotation", ann_ids)
        area = [a.get("area") for a in anns]
        if any(a is None for a in area):
            missing.append("area (computed from the segmentation, else w * h)")
            for i, a in enumerate(area):
                if a is None:
                    area[i] = self._area_of(anns[i], ann_ids[i], src, has_segm)
        self.area = np.asarray(area, dtype=np.float64)
        if missing:
            warnings.warn(f"{src}: ground truth without {' and '.join(missing)}", stacklevel=3)
        self.rle = None
        if iou_type == "segm":
            self.rle = []
            for i, a in enumerate(anns):
                if "segmentation" not in a:
                    raise DataError(
                        src,
                        "missing field 'segmentation' (iou_type='segm')",
                        _entry("annotation", i, ann_ids),
                    )
                h, w = self.img_size[int(self.img_ids[self.img[i]])]
                self.rle.append(_ann_to_rle(a["segmentation"], h, w))

    def _area_of(self, ann: dict, ann_id, src: str, has_segm: bool) -> float:
        from pycocotools import mask as mask_utils

        h, w = self.img_size.get(int(ann.get("image_id", -1)), (0, 0))
        if has_segm and ann.get("segmentation") and h > 0 and w > 0:
            return float(mask_utils.area(_ann_to_rle(ann["segmentation"], h, w)))
        if "bbox" not in ann:
            raise DataError(
                src, "no 'area', 'bbox' or 'segmentation' to compute the area from", f"annotation id {ann_id}"
            )
        return float(ann["bbox"][2] * ann["bbox"][3])


def _rle_areas(rles: list, src: str) -> np.ndarray:
    """Mask areas ``float64 [N]``; pycocotools.mask.area overflows on lists longer than 255: chunks."""
    from pycocotools import mask as mask_utils

    out = []
    for i in range(0, len(rles), 200):
        try:
            out.append(np.asarray(mask_utils.area(rles[i : i + 200]), np.float64).reshape(-1))
        except Exception:  # find the malformed one to name it
            for j in range(i, min(i + 200, len(rles))):
                try:
                    mask_utils.area([rles[j]])
                except Exception as exc:
                    raise DataError(
                        src, f"field 'segmentation' is not a valid RLE: {exc!r}", f"result {j}"
                    ) from None
            raise
    return np.concatenate(out) if out else np.zeros(0)


class _Dt:
    """The results as arrays (in file order; pycocotools' result id is the position + 1)."""

    def __init__(self, results: list, gt: _Gt, iou_type: str, src: str):
        from pycocotools import mask as mask_utils

        if not isinstance(results, list):
            raise DataError(
                src, "COCO results must be a JSON list of {image_id, category_id, bbox|segmentation, score}"
            )
        n = len(results)
        self.img = _indexed(results, "image_id", gt.img_ids, src, "result")
        self.cat = _indexed(results, "category_id", gt.cat_ids, src, "result")
        score = _column(results, "score", src, "result")
        try:
            self.score = np.asarray(score, dtype=np.float64).reshape(n)
        except (TypeError, ValueError):
            raise DataError(src, "field 'score' must be a number in every result") from None
        bad = ~np.isfinite(self.score)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(src, f"field 'score' is {results[i]['score']}", f"result {i}")
        # pycocotools' loadRes decides by the first result: a non-empty bbox gives area = w * h.
        box_mode = n > 0 and "bbox" in results[0] and results[0]["bbox"] != []
        self.rle = None
        if box_mode:
            self.box = _boxes(_column(results, "bbox", src, "result"), src, "result")
            self.area = self.box[:, 2] * self.box[:, 3]
            if iou_type == "segm":
                self.rle = [self._rle(r, i, gt, src) for i, r in enumerate(results)]
        elif n:
            segs = _column(results, "segmentation", src, "result")
            # Compressed RLE (the usual results format) is used as is; polygons are converted.
            self.rle = [
                s if type(s) is dict and type(s.get("counts")) is str else self._rle(results[i], i, gt, src)
                for i, s in enumerate(segs)
            ]
            self.area = _rle_areas(self.rle, src)
            self.box = None
            if iou_type == "bbox":  # segm results evaluated as boxes: pycocotools' toBbox when missing
                box = [r.get("bbox") for r in results]
                if any(b is None for b in box):
                    tb = np.concatenate(
                        [mask_utils.toBbox(self.rle[i : i + 200]).reshape(-1, 4) for i in range(0, n, 200)]
                    )
                    box = [b if b is not None else list(tb[i]) for i, b in enumerate(box)]
                self.box = _boxes(box, src, "result")
        else:
            self.box = np.zeros((0, 4))
            self.area = np.zeros(0)

    @staticmethod
    def _rle(r: dict, i: int, gt: _Gt, src: str):
        if "segmentation" not in r:
            if "bbox" not in r:
                raise DataError(src, "missing field 'segmentation'", f"result {i}")
            x, y, w, h = r["bbox"]
            segm = [[x, y, x, y + h, x + w, y + h, x + w, y]]
        else:
            segm = r["segmentation"]
        hh, ww = gt.img_size[int(r["image_id"])]
        try:
            return _ann_to_rle(segm, hh, ww)
        except Exception as exc:  # pycocotools raises several types for malformed masks
            raise DataError(
                src, f"field 'segmentation' is not a polygon or RLE: {exc}", f"result {i}"
            ) from None


# ----------------------------------------------------------------------------------------------------
# Evaluation


def evaluate(
    gt: dict | str | Path,
    results: list[dict] | str | Path,
    iou_type: str = "bbox",
    *,
    iou_thresholds: list[float] | None = None,
    max_dets: list[int] | None = None,
    area_ranges: dict[str, tuple[float, float]] | None = None,
    fix_stat0_maxdets: bool = False,
    fix_gt_id_zero: bool = False,
    keep_matches: bool = True,
) -> COCOResult:
    """COCO evaluation of ``results`` (a results list) against ``gt`` (a COCO dataset dict), or paths.

    ``iou_thresholds``, ``max_dets`` (three values, as pycocotools' summary reads three) and
    ``area_ranges`` ({label: (lo, hi)}, must include 'all', 'small', 'medium', 'large' for the 12
    stats) override pycocotools' defaults. Returns a ``COCOResult``.
    """
    gt_src = str(gt) if isinstance(gt, str | Path) else "ground truth"
    dt_src = str(results) if isinstance(results, str | Path) else "results"
    with no_gc():
        if isinstance(gt, str | Path):
            gt = load_json(gt)
        if isinstance(results, str | Path):
            results = load_json(results)
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    p = COCOParams()
    if iou_thresholds is not None:
        p.iou_thresholds = np.asarray(iou_thresholds, dtype=np.float64)
    if max_dets is not None:
        p.max_dets = sorted(int(m) for m in max_dets)
    if area_ranges is not None:
        p.area_labels = list(area_ranges)
        p.area_ranges = [list(map(float, v)) for v in area_ranges.values()]
    with no_gc():
        g = _Gt(gt, iou_type, gt_src)
        d = _Dt(results, g, iou_type, dt_src)
    return _evaluate_arrays(g, d, p, iou_type, fix_stat0_maxdets, fix_gt_id_zero, keep_matches)


@contextlib.contextmanager
def no_gc():
    """Pause Python's cyclic garbage collector: building or walking 500k small dicts (no cycles) otherwise
    triggers hundreds of full collections, which doubles the time to read a large results file."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def load_json(path: str | Path):
    """Read a JSON file (orjson when installed: several times faster on large result files)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    data = path.read_bytes()
    try:
        import orjson

        return orjson.loads(data)
    except ImportError:  # pragma: no cover
        import json

        return json.loads(data)
    except ValueError as exc:
        raise DataError(path, f"not valid JSON: {exc}") from None


def _evaluate_arrays(
    g: _Gt, d: _Dt, p: COCOParams, iou_type: str, fix_stat0: bool, fix_id0: bool, keep_matches: bool
) -> COCOResult:
    from detseg.metrics import _coco_kernels as kern

    n_img, n_cat = len(g.img_ids), len(g.cat_ids)
    max_det_all = int(max(p.max_dets))
    # Groups: (category, image) pairs holding ground truth or detections.
    gkey = g.cat * n_img + g.img
    dkey = d.cat * n_img + d.img
    g_order = np.argsort(gkey, kind="stable")  # file order inside a group, as pycocotools' imgToAnns
    # By (group, -score), stable (equal scores keep file order): two stable sorts beat one lexsort.
    by_score = np.argsort(-d.score, kind="stable")
    d_order = by_score[np.argsort(dkey[by_score], kind="stable")]
    gkey_s, dkey_s = gkey[g_order], dkey[d_order]
    # Rank of each detection inside its group; only the best max_det_all take part (computeIoU's cut).
    d_first = np.searchsorted(dkey_s, dkey_s, side="left")
    rank_s = np.arange(len(dkey_s)) - d_first
    keep = rank_s < max_det_all
    d_order, dkey_s, rank_s = d_order[keep], dkey_s[keep], rank_s[keep]
    keys = np.concatenate((gkey_s, dkey_s))
    keys.sort(kind="stable")
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if len(keys) else keys
    g_start = np.searchsorted(gkey_s, keys, "left")
    g_count = np.searchsorted(gkey_s, keys, "right") - g_start
    d_start = np.searchsorted(dkey_s, keys, "left")
    d_count = np.searchsorted(dkey_s, keys, "right") - d_start
    pair = d_count.astype(np.int64) * g_count
    iou_off = np.concatenate(([0], np.cumsum(pair)[:-1])).astype(np.int64)
    ious = np.zeros(int(pair.sum()), np.float64)

    g_box = g.box[g_order] if iou_type == "bbox" else None
    g_area = np.ascontiguousarray(g.area[g_order])
    g_crowd = np.ascontiguousarray(g.crowd[g_order])
    g_ok = np.ones(len(g_order), bool) if fix_id0 else (g.ann_id[g_order] != 0)
    d_area = np.ascontiguousarray(d.area[d_order])
    d_score = np.ascontiguousarray(d.score[d_order])
    if iou_type == "bbox":
        kern.bbox_ious(
            np.ascontiguousarray(d.box[d_order]),
            np.ascontiguousarray(g_box),
            g_crowd,
            d_start,
            d_count,
            g_start,
            g_count,
            iou_off,
            ious,
        )
    else:
        _segm_ious(g, d, g_order, d_order, d_start, d_count, g_start, g_count, iou_off, ious)

    n_a, n_t = len(p.area_ranges), len(p.iou_thresholds)
    nd = len(d_order)
    matched = np.zeros((n_a, n_t, nd), bool)
    dt_ignore = np.zeros((n_a, n_t, nd), bool)
    gt_ignore = np.zeros((n_a, len(g_order)), bool)
    area_lo = np.array([r[0] for r in p.area_ranges], np.float64)
    area_hi = np.array([r[1] for r in p.area_ranges], np.float64)
    kern.match(
        ious,
        iou_off,
        d_start,
        d_count,
        g_start,
        g_count,
        g_area,
        g_crowd,
        g_ok,
        d_area,
        area_lo,
        area_hi,
        np.asarray(p.iou_thresholds, np.float64),
        matched,
        dt_ignore,
        gt_ignore,
    )
    del ious

    # Accumulate: per category, detections by (-score, image, rank): pycocotools' mergesort over the
    # per-image lists concatenated in image order.
    d_cat = d.cat[d_order]
    # The detections are already in (category, image, rank) order: a stable sort by (category, -score)
    # keeps (image, rank) order among equal scores.
    acc = np.lexsort((-d_score, d_cat))
    cat_start = np.searchsorted(d_cat[acc], np.arange(n_cat), "left")
    cat_end = np.searchsorted(d_cat[acc], np.arange(n_cat), "right")
    # Gathered once into that order, so that the accumulation reads memory sequentially.
    matched, dt_ignore, rank_acc, score_acc = (
        matched[:, :, acc],
        dt_ignore[:, :, acc],
        rank_s[acc],
        d_score[acc],
    )
    g_cat = g.cat[g_order]
    npig = np.zeros((n_cat, n_a), np.int64)
    for a in range(n_a):
        npig[:, a] = np.bincount(g_cat[~gt_ignore[a]], minlength=n_cat)
    has_any = (np.bincount(g_cat, minlength=n_cat) + np.bincount(d_cat, minlength=n_cat)) > 0
    n_m, n_r = len(p.max_dets), len(p.rec_thresholds)
    precision = -np.ones((n_t, n_r, n_cat, n_a, n_m))
    recall = -np.ones((n_t, n_cat, n_a, n_m))
    scores = -np.ones((n_t, n_r, n_cat, n_a, n_m))
    kern.accumulate(
        cat_start,
        cat_end,
        rank_acc,
        score_acc,
        matched,
        dt_ignore,
        npig,
        has_any,
        np.asarray(p.max_dets, np.int64),
        np.asarray(p.rec_thresholds, np.float64),
        precision,
        recall,
        scores,
    )

    specs = _stat_specs(p, fix_stat0)
    stats_list = [_summarize(precision, recall, p, *s) for s in specs]
    stats = dict(zip(STAT_NAMES, stats_list, strict=True))
    per_category = _per_category(
        precision, recall, p, g.cat_names, np.bincount(g_cat[~g_crowd], minlength=n_cat)
    )
    matches = {}
    if keep_matches:
        matches = {
            "start": cat_start,
            "end": cat_end,
            "score": score_acc,
            "matched": matched[0],
            "ignore": dt_ignore[0],
            "npig": npig[:, 0],
        }
    return COCOResult(
        stats=stats,
        stats_list=stats_list,
        precision=precision,
        recall=recall,
        scores=scores,
        params=p,
        iou_type=iou_type,
        category_ids=g.cat_ids.tolist(),
        category_names=g.cat_names,
        per_category=per_category,
        _matches=matches,
    )


def _per_category(precision, recall, p: COCOParams, names: list[str], num_gt: np.ndarray) -> dict:
    """Per category (area 'all', largest maxDets): AP (IoU 0.5:0.95), AP50, AP75, AR; -1 without GT."""

    def mean_valid(x):
        x = x[x > -1]
        return float(np.mean(x)) if len(x) else -1.0

    t50 = np.flatnonzero(np.isclose(p.iou_thresholds, 0.5))
    t75 = np.flatnonzero(np.isclose(p.iou_thresholds, 0.75))
    out = {}
    for k, name in enumerate(names):
        pk = precision[:, :, k, 0, -1]
        out[name] = {
            "AP": mean_valid(pk),
            "AP50": mean_valid(pk[t50]) if len(t50) else -1.0,
            "AP75": mean_valid(pk[t75]) if len(t75) else -1.0,
            "AR100": mean_valid(recall[:, k, 0, -1]),
            "num_gt": int(num_gt[k]),
        }
    return out


def _segm_ious(g: _Gt, d: _Dt, g_order, d_order, d_start, d_count, g_start, g_count, iou_off, out) -> None:
    """Mask IoUs of every group with pycocotools' own RLE code (one call per group: a call per image
    would compute every cross-category pair too, which costs more than the calls save)."""
    from pycocotools import mask as mask_utils

    g_rle = [g.rle[i] for i in g_order]
    d_rle = [d.rle[i] for i in d_order]
    crowd = g.crowd[g_order].astype(int).tolist()
    iou = mask_utils.iou
    both = np.flatnonzero((d_count > 0) & (g_count > 0))
    for ds, dn, gs, gn, off in zip(
        d_start[both].tolist(),
        d_count[both].tolist(),
        g_start[both].tolist(),
        g_count[both].tolist(),
        iou_off[both].tolist(),
        strict=True,
    ):
        block = iou(d_rle[ds : ds + dn], g_rle[gs : gs + gn], crowd[gs : gs + gn])
        out[off : off + dn * gn] = np.asarray(block, dtype=np.float64).reshape(-1)
