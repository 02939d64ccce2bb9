"""TIDE: which kind of error costs how much AP (Bolya et al., "TIDE: A General Toolbox for Identifying
Object Detection Errors", ECCV 2020).

Matching (per image, detections by score, highest first, at most ``max_dets`` per image): a detection
takes the unmatched object of its class with the largest IoU >= ``fg_iou`` (a true positive). An
unmatched detection overlapping an ignored object of its class (crowd: intersection over the
detection's area; VOC 'difficult': IoU) by more than ``fg_iou`` is ignored. Every other detection is a
false positive of the first kind that applies, with ``IoU_c`` its IoU with objects of its own class
(taken or not), ``IoU_o`` with objects of other classes:

- ``localization``: ``bg_iou <= max IoU_c <= fg_iou`` (right class, badly placed);
- ``classification``: ``max IoU_o >= fg_iou`` (well placed, wrong class);
- ``duplicate``: IoU >= ``fg_iou`` with an object of its class already taken by a higher score;
- ``background``: IoU <= ``bg_iou`` with every object (or an image without objects);
- ``both``: anything else (wrong class and badly placed);

and an object no detection took is ``missed`` unless a localization or classification error points at
it (fixing that error finds it).

dAP of a kind is the AP gained by fixing only the errors of that kind, everything else as it is:
a localization error becomes a true positive of its object (a classification error one of the
object's class), at its score, if that object was untaken and no higher-scored fixable error points at
it, and is removed otherwise; duplicate, background and both errors are removed; a missed object
leaves the ground truth. Two extra figures: ``false_positives`` (every false positive ranked below
every true positive) and ``false_negatives`` (every untaken object removed from the ground truth).

AP is pycocotools' 101-point interpolated AP at the single IoU ``fg_iou``; mAP averages the classes
with ground truth (as COCO; the TIDE toolbox also averages classes with detections only, as AP 0).
Everything is a fraction (0.25, not 25 %).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from detseg.metrics.boxes import box_iou, xywh_to_xyxy
from detseg.metrics.detection import average_precision, pr_curve, precision_envelope

#: False-positive kinds, then missed objects, in the order TIDE's summary prints them.
TIDE_ERRORS = ("classification", "localization", "both", "duplicate", "background", "missed")
SPECIAL_ERRORS = ("false_positives", "false_negatives")

# Per-detection / per-object kinds beyond the error kinds.
TP, IGNORED, SKIPPED, FIXABLE = "tp", "ignored", "skipped", "fixable"


@dataclass
class TIDEResult:
    """``ap``: mAP at ``fg_iou``; ``per_class_ap``: name -> AP (NaN without ground truth);
    ``dap``: kind -> mAP gained by fixing that kind (``TIDE_ERRORS`` and ``SPECIAL_ERRORS``);
    ``dap_per_class``: name -> kind -> AP gained; ``counts`` / ``counts_per_class``: how many of each
    kind (false positives under the detection's class, missed objects under theirs);
    ``det_kind``: per entry of ``results``, its kind (``tp``, an error kind, ``ignored`` or
    ``skipped`` beyond ``max_dets``); ``det_target``: the index into ``gt['annotations']`` a detection
    was matched with or pointed at (-1 if none); ``det_iou``: its largest IoU with any object;
    ``gt_kind``: per annotation ``tp``, ``missed``, ``fixable`` (untaken but a localization or
    classification error points at it) or ``ignored`` (crowd / difficult)."""

    ap: float
    per_class_ap: dict[str, float]
    dap: dict[str, float]
    dap_per_class: dict[str, dict[str, float]]
    counts: dict[str, int]
    counts_per_class: dict[str, dict[str, int]]
    det_kind: list[str]
    det_target: np.ndarray
    det_iou: np.ndarray
    gt_kind: list[str]
    fg_iou: float = 0.5
    bg_iou: float = 0.1
    classes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "AP": self.ap,
            "per_class_AP": self.per_class_ap,
            "dAP": self.dap,
            "dAP_per_class": self.dap_per_class,
            "counts": self.counts,
            "counts_per_class": self.counts_per_class,
            "fg_iou": self.fg_iou,
            "bg_iou": self.bg_iou,
        }

    def summary(self) -> str:
        head = " ".join(f"{k[:14]:>14}" for k in TIDE_ERRORS)
        lines = [
            f"TIDE errors (IoU fg {self.fg_iou:g}, bg {self.bg_iou:g}): AP {self.ap * 100:.2f}",
            f"{'':<8}{head}",
            f"{'dAP':<8}" + " ".join(f"{self.dap[k] * 100:14.2f}" for k in TIDE_ERRORS),
            f"{'count':<8}" + " ".join(f"{self.counts[k]:14d}" for k in TIDE_ERRORS),
            f"false positives dAP {self.dap['false_positives'] * 100:.2f}, false negatives dAP "
            f"{self.dap['false_negatives'] * 100:.2f}",
        ]
        return "\n".join(lines)


def _ap101(scores, tp, num_gt: int, grid: str = "coco") -> float:
    """101-point AP; ``grid`` "coco": pycocotools' recall points ``np.linspace(0, 1, 101)``, "tide": the
    TIDE toolbox's ``i / 100`` (they differ in the last bit, so a recall of exactly 0.15 can fall on
    either side of a point)."""
    if num_gt <= 0:
        return 0.0
    c = pr_curve(np.asarray(scores, np.float64), np.asarray(tp, bool), num_gt)
    if grid == "coco":
        return average_precision(c.recall, c.precision, "coco101")
    if len(c.recall) == 0:
        return 0.0
    env = precision_envelope(c.precision)
    idx = np.searchsorted(c.recall, np.arange(101) / 100, side="left")
    return float(np.mean(np.where(idx < len(env), env[np.minimum(idx, len(env) - 1)], 0.0)))


def tide(
    gt: dict,
    results: list[dict],
    fg_iou: float = 0.5,
    bg_iou: float = 0.1,
    max_dets: int | None = 100,
    plus_one: bool = False,
    recall_grid: str = "coco",
) -> TIDEResult:
    """TIDE error analysis of ``results`` (COCO results list, boxes) against ``gt`` (COCO dict).

    ``max_dets``: detections kept per image (highest scores; None keeps all); ``plus_one``: VOC's
    whole-pixel areas (see :func:`detseg.metrics.boxes.box_iou`); ``recall_grid``: "coco"
    (pycocotools' 101 recall points, so the base AP is COCO's) or "tide" (the TIDE toolbox's, to
    reproduce its figures: ``benchmarks/tide_agreement.py``).
    """
    if recall_grid not in ("coco", "tide"):
        raise ValueError(f"recall_grid must be 'coco' or 'tide', got {recall_grid!r}")
    cats = [c["id"] for c in gt["categories"]]
    names = [str(c.get("name", c["id"])) for c in gt["categories"]]
    cat_index = {c: i for i, c in enumerate(cats)}
    k = len(cats)
    anns = gt["annotations"]
    gt_kind = ["missed"] * len(anns)
    det_kind = [SKIPPED] * len(results)
    det_target = np.full(len(results), -1, np.int64)
    det_iou = np.zeros(len(results), np.float64)
    num_gt = np.zeros(k, np.int64)
    by_img_gt: dict = {}
    for j, a in enumerate(anns):
        by_img_gt.setdefault(a["image_id"], []).append(j)
    by_img_dt: dict = {}
    for i, r in enumerate(results):
        by_img_dt.setdefault(r["image_id"], []).append(i)
    # Fixable errors: (kind, det index, target annotation); per object the best score aimed at it.
    fixable: list[tuple[str, int, int]] = []
    best_fixer: dict[int, tuple[float, int]] = {}
    for img in {im["id"] for im in gt["images"]} | set(by_img_dt):
        g_idx = by_img_gt.get(img, [])
        hard = np.array([bool(anns[j].get("iscrowd", 0) or anns[j].get("difficult", 0)) for j in g_idx], bool)
        for j, h in zip(g_idx, hard, strict=True):
            if h:
                gt_kind[j] = IGNORED
            else:
                num_gt[cat_index[anns[j]["category_id"]]] += 1
        g_norm = [j for j, h in zip(g_idx, hard, strict=True) if not h]
        g_hard = [j for j, h in zip(g_idx, hard, strict=True) if h]
        d_idx = sorted(by_img_dt.get(img, []), key=lambda i: -results[i]["score"])
        if max_dets is not None:
            d_idx = d_idx[:max_dets]
        if not d_idx:
            continue
        db = xywh_to_xyxy(np.array([results[i]["bbox"] for i in d_idx], np.float64))
        dc = np.array([cat_index[results[i]["category_id"]] for i in d_idx], np.int64)
        gb = xywh_to_xyxy(np.array([anns[j]["bbox"] for j in g_norm], np.float64).reshape(-1, 4))
        gc = np.array([cat_index[anns[j]["category_id"]] for j in g_norm], np.int64)
        iou = box_iou(db, gb, plus_one=plus_one) if len(g_norm) else np.zeros((len(d_idx), 0))
        same = dc[:, None] == gc[None, :]
        iou_c = iou * same
        used = np.zeros(len(g_norm), bool)
        matched = np.zeros(len(d_idx), bool)
        for n, i in enumerate(d_idx):
            det_iou[i] = iou[n].max(initial=0.0)
            if len(g_norm):
                cand = np.where(used, 0.0, iou_c[n])
                g = int(np.argmax(cand))
                if cand[g] >= fg_iou:
                    used[g] = matched[n] = True
                    det_kind[i], det_target[i] = TP, g_norm[g]
                    gt_kind[g_norm[g]] = TP
        if g_hard:
            hb = xywh_to_xyxy(np.array([anns[j]["bbox"] for j in g_hard], np.float64))
            hc = np.array([cat_index[anns[j]["category_id"]] for j in g_hard], np.int64)
            crowd = np.array([bool(anns[j].get("iscrowd", 0)) for j in g_hard], bool)
            ov = box_iou(db, hb, crowd=crowd, plus_one=plus_one)
            ignore = ((ov > fg_iou) & (dc[:, None] == hc[None, :])).any(1) & ~matched
        else:
            ignore = np.zeros(len(d_idx), bool)
        kinds, targets = _fp_kinds(iou, same, used, fg_iou, bg_iou)
        for n, i in enumerate(d_idx):
            if matched[n]:
                continue
            if ignore[n]:
                det_kind[i] = IGNORED
                continue
            kind, target = kinds[n], int(targets[n])
            det_kind[i] = kind
            if target >= 0:
                det_target[i] = g_norm[target]
                if kind in ("localization", "classification") and not used[target]:
                    j = g_norm[target]
                    fixable.append((kind, i, j))
                    gt_kind[j] = FIXABLE
                    score = results[i]["score"]
                    if j not in best_fixer or best_fixer[j][0] < score:
                        best_fixer[j] = (score, i)
    return _fix_and_score(
        results, anns, cats, names, cat_index, num_gt, det_kind, det_target, det_iou, gt_kind,
        fixable, best_fixer, fg_iou, bg_iou, recall_grid,
    )  # fmt: skip


def _fp_kinds(iou, same, used, fg_iou, bg_iou) -> tuple[list[str], np.ndarray]:
    """For every detection (row of ``iou [D, G]``) the kind it has if it is a false positive and the
    object (column) it points at (-1 if none); ``same [D, G]``: same class, ``used [G]``: taken."""
    d = np.arange(iou.shape[0])
    if iou.shape[1] == 0:
        return ["background"] * len(d), np.full(len(d), -1)

    def best(m):
        g = np.argmax(m, 1)
        return m[d, g], g

    own, g_own = best(iou * same)
    other, g_other = best(iou * ~same)
    taken, g_taken = best(iou * same * used[None, :])
    top, g_top = best(iou)
    loc = (bg_iou <= own) & (own <= fg_iou)
    cls = ~loc & (other >= fg_iou)
    dup = ~loc & ~cls & (taken >= fg_iou)
    bkg = ~loc & ~cls & ~dup & (top <= bg_iou)
    kinds = np.select(
        [loc, cls, dup, bkg], ["localization", "classification", "duplicate", "background"], "both"
    )
    targets = np.select([loc, cls, dup, bkg], [g_own, g_other, g_taken, np.full(len(d), -1)], g_top)
    return kinds.tolist(), targets


def _fix_and_score(
    results, anns, cats, names, cat_index, num_gt, det_kind, det_target, det_iou, gt_kind,
    fixable, best_fixer, fg_iou, bg_iou, recall_grid="coco",
) -> TIDEResult:  # fmt: skip
    k = len(cats)
    fp_kinds = TIDE_ERRORS[:-1]
    fixed_as = {i: j for kind, i, j in fixable if best_fixer[j][1] == i}
    missed_per_class = np.zeros(k, np.int64)
    for j, kind in enumerate(gt_kind):
        if kind == "missed":
            missed_per_class[cat_index[anns[j]["category_id"]]] += 1
    untaken_per_class = np.zeros(k, np.int64)
    for j, kind in enumerate(gt_kind):
        if kind in ("missed", FIXABLE):
            untaken_per_class[cat_index[anns[j]["category_id"]]] += 1

    kind_arr = np.array(det_kind, dtype=object)
    d_cls = np.array([cat_index[r["category_id"]] for r in results], np.int64)
    d_score = np.array([float(r["score"]) for r in results], np.float64)
    fixed_cls = d_cls.copy()  # the class a fixed error counts in: its object's
    is_fixed = np.zeros(len(results), bool)
    for i, j in fixed_as.items():
        fixed_cls[i], is_fixed[i] = cat_index[anns[j]["category_id"]], True
    valid = (kind_arr != SKIPPED) & (kind_arr != IGNORED)
    is_tp = kind_arr == TP

    def mean_ap(fix: str | None) -> np.ndarray:
        """Per class AP with the errors of kind ``fix`` fixed (None: as they are)."""
        cls, score, tp = d_cls.copy(), d_score.copy(), is_tp.copy()
        keep = valid.copy()
        if fix in TIDE_ERRORS[:-1]:
            of_kind = kind_arr == fix
            keep &= ~of_kind | is_fixed  # removed, unless it becomes a true positive of its object
            tp |= of_kind & is_fixed
            cls = np.where(of_kind & is_fixed, fixed_cls, cls)
        elif fix == "false_positives":
            score = np.where(tp, 1.0, 0.0)
        n_gt = num_gt.copy()
        if fix == "missed":
            n_gt = n_gt - missed_per_class
        elif fix == "false_negatives":
            n_gt = n_gt - untaken_per_class
        cls, score, tp = cls[keep], score[keep], tp[keep]
        order = np.argsort(cls, kind="stable")
        bounds = np.searchsorted(cls[order], np.arange(k + 1))
        aps = []
        for c in range(k):
            sel = order[bounds[c] : bounds[c + 1]]
            aps.append(_ap101(score[sel], tp[sel], int(n_gt[c]), recall_grid))
        return np.array(aps)

    has_gt = num_gt > 0
    base = mean_ap(None)
    m_base = float(base[has_gt].mean()) if has_gt.any() else float("nan")
    dap, dap_cls = {}, {n: {} for n in names}
    for kind in TIDE_ERRORS + SPECIAL_ERRORS:
        aps = mean_ap(kind)
        dap[kind] = float(aps[has_gt].mean()) - m_base if has_gt.any() else float("nan")
        for c, n in enumerate(names):
            dap_cls[n][kind] = float(aps[c] - base[c]) if has_gt[c] else float("nan")
    counts = dict.fromkeys(TIDE_ERRORS, 0)
    counts_cls = {n: dict.fromkeys(TIDE_ERRORS, 0) for n in names}
    for i, kind in enumerate(det_kind):
        if kind in fp_kinds:
            counts[kind] += 1
            counts_cls[names[cat_index[results[i]["category_id"]]]][kind] += 1
    for j, kind in enumerate(gt_kind):
        if kind == "missed":
            counts["missed"] += 1
            counts_cls[names[cat_index[anns[j]["category_id"]]]]["missed"] += 1
    return TIDEResult(
        ap=m_base,
        per_class_ap={n: float(base[c]) if has_gt[c] else float("nan") for c, n in enumerate(names)},
        dap=dap,
        dap_per_class=dap_cls,
        counts=counts,
        counts_per_class=counts_cls,
        det_kind=det_kind,
        det_target=det_target,
        det_iou=det_iou,
        gt_kind=gt_kind,
        fg_iou=float(fg_iou),
        bg_iou=float(bg_iou),
        classes=names,
    )
