"""numba kernels of the COCO evaluation: IoUs, greedy matching and accumulation, one loop per group.

Every loop follows pycocotools' ``cocoeval.py`` / ``maskApi.c`` statement by statement, with the same
floating-point operations in the same order, so the results are bit-identical. A *group* is one
(category, image) pair; its detections are sorted by score (stable) and cut to the largest maxDets.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def bbox_ious(dt_box, gt_box, gt_crowd, d_start, d_count, g_start, g_count, iou_off, out):  # pragma: no cover
    """Fill ``out[iou_off[k] + d * G + g]`` with the IoU of (x, y, w, h) boxes as maskApi.c's bbIou."""
    for k in range(len(d_start)):
        nd, ng = d_count[k], g_count[k]
        if nd == 0 or ng == 0:
            continue
        for g in range(ng):
            gi = g_start[k] + g
            gx, gy, gw, gh = gt_box[gi, 0], gt_box[gi, 1], gt_box[gi, 2], gt_box[gi, 3]
            ga = gw * gh
            crowd = gt_crowd[gi]
            for d in range(nd):
                di = d_start[k] + d
                dx, dy, dw, dh = dt_box[di, 0], dt_box[di, 1], dt_box[di, 2], dt_box[di, 3]
                da = dw * dh
                o = 0.0
                w = min(dw + dx, gw + gx) - max(dx, gx)
                if w > 0:
                    h = min(dh + dy, gh + gy) - max(dy, gy)
                    if h > 0:
                        i = w * h
                        u = da if crowd else da + ga - i
                        o = i / u
                out[iou_off[k] + d * ng + g] = o


@njit(cache=True, nogil=True)
def match(
    ious,
    iou_off,
    d_start,
    d_count,
    g_start,
    g_count,
    gt_area,
    gt_crowd,
    gt_id_ok,
    dt_area,
    area_lo,
    area_hi,
    iou_thrs,
    matched,
    dt_ignore,
    gt_ignore,
):  # pragma: no cover
    """pycocotools' evaluateImg for every group, area range and IoU threshold.

    Writes ``matched[a, t, d]`` (the detection has a ground-truth match that counts), ``dt_ignore[a, t, d]``
    and ``gt_ignore[a, g]``. ``gt_id_ok[g]`` is False for ground truth that pycocotools cannot credit
    (annotation id 0, its ``dtm == 0`` test).
    """
    n_area = len(area_lo)
    n_thr = len(iou_thrs)
    for k in range(len(d_start)):
        nd, ng = d_count[k], g_count[k]
        d0, g0, off = d_start[k], g_start[k], iou_off[k]
        order = np.empty(ng, np.int64)
        ig = np.empty(ng, np.bool_)
        taken = np.empty(ng, np.bool_)
        for a in range(n_area):
            lo, hi = area_lo[a], area_hi[a]
            for g in range(ng):
                ar = gt_area[g0 + g]
                ig[g] = gt_crowd[g0 + g] or ar < lo or ar > hi
                gt_ignore[a, g0 + g] = ig[g]
            # np.argsort(_ignore, kind="mergesort"): regular ground truth first, each part in file order.
            j = 0
            for g in range(ng):
                if not ig[g]:
                    order[j] = g
                    j += 1
            for g in range(ng):
                if ig[g]:
                    order[j] = g
                    j += 1
            for t in range(n_thr):
                thr = min(iou_thrs[t], 1 - 1e-10)
                taken[:] = False
                for d in range(nd):
                    di = d0 + d
                    best = thr
                    m = -1
                    if ng > 0:
                        for jj in range(ng):
                            g = order[jj]
                            if taken[g] and not gt_crowd[g0 + g]:
                                continue
                            if m > -1 and not ig[m] and ig[g]:
                                break
                            v = ious[off + d * ng + g]
                            if v < best:
                                continue
                            best = v
                            m = g
                    is_match = False
                    dig = False
                    if m > -1:
                        taken[m] = True
                        dig = ig[m]
                        is_match = gt_id_ok[g0 + m]
                    if not is_match:
                        ar = dt_area[di]
                        if ar < lo or ar > hi:
                            dig = True
                    matched[a, t, di] = is_match
                    dt_ignore[a, t, di] = dig


@njit(cache=True, nogil=True)
def accumulate(
    cat_start,
    cat_end,
    rank,
    dt_score,
    matched,
    dt_ignore,
    npig,
    has_any,
    max_dets,
    rec_thrs,
    precision,
    recall,
    scores,
):  # pragma: no cover
    """pycocotools' accumulate. The detection arrays are in (category, -score, image, rank) order, the
    order of pycocotools' mergesort over the per-image lists concatenated in image order;
    category k is ``[cat_start[k], cat_end[k])``.

    Fills ``precision [T, R, K, A, M]``, ``recall [T, K, A, M]`` and ``scores [T, R, K, A, M]``
    (left at -1 where pycocotools leaves them).
    """
    eps = np.spacing(1.0)
    n_thr = matched.shape[1]
    n_area = matched.shape[0]
    n_rec = len(rec_thrs)
    for k in range(len(cat_start)):
        if not has_any[k]:
            continue
        idx = np.empty(cat_end[k] - cat_start[k], np.int64)
        for mi in range(len(max_dets)):
            nd = 0
            for j in range(cat_start[k], cat_end[k]):
                if rank[j] < max_dets[mi]:
                    idx[nd] = j
                    nd += 1
            rc = np.empty(nd)
            pr = np.empty(nd)
            for a in range(n_area):
                n_pos = npig[k, a]
                if n_pos == 0:
                    continue
                for t in range(n_thr):
                    tp = 0.0
                    fp = 0.0
                    for i in range(nd):
                        o = idx[i]
                        if not dt_ignore[a, t, o]:
                            if matched[a, t, o]:
                                tp += 1.0
                            else:
                                fp += 1.0
                        rc[i] = tp / n_pos
                        pr[i] = tp / (fp + tp + eps)
                    recall[t, k, a, mi] = rc[nd - 1] if nd > 0 else 0.0
                    for i in range(nd - 1, 0, -1):
                        if pr[i] > pr[i - 1]:
                            pr[i - 1] = pr[i]
                    # np.searchsorted(rc, rec_thrs, side="left"); beyond the last recall: 0.
                    i = 0
                    for r in range(n_rec):
                        while i < nd and rc[i] < rec_thrs[r]:
                            i += 1
                        if i < nd:
                            precision[t, r, k, a, mi] = pr[i]
                            scores[t, r, k, a, mi] = dt_score[idx[i]]
                        else:
                            for rr in range(r, n_rec):
                                precision[t, rr, k, a, mi] = 0.0
                                scores[t, rr, k, a, mi] = 0.0
                            break


@njit(cache=True, nogil=True)
def voc_match(
    dt_box, gt_box, gt_hard, d_start, d_count, g_start, g_count, thr, inclusive, one, tp, ignored
):  # pragma: no cover
    """The VOC devkit's matching per (class, image) group, detections in score order; boxes (x1, y1, x2, y2).

    Each detection takes its best-IoU box (first on ties, as np.argmax); IoU > thr (>= when
    ``inclusive``): a difficult box -> ignored, a taken box -> FP (duplicate), else TP.
    IoU as the devkit computes it (``one`` = 1.0 for its '+1 pixel' areas, else 0.0).
    """
    for k in range(len(d_start)):
        ng = g_count[k]
        if ng == 0:
            continue
        g0 = g_start[k]
        taken = np.zeros(ng, np.bool_)
        for d in range(d_count[k]):
            di = d_start[k] + d
            bx1, by1, bx2, by2 = dt_box[di, 0], dt_box[di, 1], dt_box[di, 2], dt_box[di, 3]
            best = -1.0
            j = -1
            for g in range(ng):
                gi = g0 + g
                iw = min(bx2, gt_box[gi, 2]) - max(bx1, gt_box[gi, 0]) + one
                ih = min(by2, gt_box[gi, 3]) - max(by1, gt_box[gi, 1]) + one
                inter = max(iw, 0.0) * max(ih, 0.0)
                uni = (
                    (bx2 - bx1 + one) * (by2 - by1 + one)
                    + (gt_box[gi, 2] - gt_box[gi, 0] + one) * (gt_box[gi, 3] - gt_box[gi, 1] + one)
                    - inter
                )
                o = inter / uni if uni > 0 else 0.0
                if o > best:
                    best = o
                    j = g
            if (best >= thr) if inclusive else (best > thr):
                if gt_hard[g0 + j]:
                    ignored[di] = True
                elif not taken[j]:
                    tp[di] = True
                    taken[j] = True
