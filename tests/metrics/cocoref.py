"""Shared helpers for the metrics tests: pycocotools as the reference, random COCO workloads."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def pycocotools_eval(gt: dict, results: list[dict], iou_type: str = "bbox", params=None) -> COCOeval:
    """pycocotools' evaluation on deep copies (loadRes changes its input), its prints swallowed."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        dt = coco.loadRes(copy.deepcopy(results)) if results else COCO()
        ev = COCOeval(coco, dt, iou_type)
        for k, v in (params or {}).items():
            setattr(ev.params, k, v)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def random_workload(seed: int, n_images: int, n_cats: int, segm: bool = False, max_dets: int = 40) -> tuple:
    """A random COCO gt dict and results list: crowds, empty images, categories without ground truth,
    quantized (tied) scores, tiny to large objects, sometimes an annotation with id 0."""
    rng = np.random.default_rng(seed)
    images, anns, results = [], [], []
    cats = [{"id": int(c), "name": f"c{c}"} for c in rng.choice(np.arange(1, 100), n_cats, replace=False)]
    cat_ids = [c["id"] for c in cats]
    gt_cats = cat_ids[: max(1, n_cats - 1)]  # the last category never has ground truth
    zero_id = rng.random() < 0.3
    for i in range(n_images):
        w, h = int(rng.integers(40, 260)), int(rng.integers(40, 260))
        img_id = int(rng.integers(1, 10**6)) * 10 + i  # unsorted, unique ids
        images.append({"id": img_id, "width": w, "height": h, "file_name": f"{i}.jpg"})
        n_gt = int(rng.integers(0, 8)) if rng.random() > 0.2 else 0
        boxes = []
        for _ in range(n_gt):
            box = _rand_box(rng, w, h)
            if boxes and rng.random() < 0.15:  # an exact duplicate: equal IoUs, the tie rule decides
                box = list(boxes[-1][1])
            crowd = int(rng.random() < 0.15)
            ann = {
                "id": len(anns) + (0 if zero_id else 1),
                "image_id": img_id,
                "category_id": int(rng.choice(gt_cats)),
                "bbox": box,
                "iscrowd": crowd,
            }
            if segm:
                ann["segmentation"] = _rand_segm(rng, box, w, h, rle=bool(crowd))
                ann["area"] = float(mask_utils.area(_to_rle(ann["segmentation"], h, w)))
            else:
                ann["area"] = box[2] * box[3] * float(rng.uniform(0.5, 1.0))
            anns.append(ann)
            boxes.append((ann["category_id"], box))
        if rng.random() < 0.15:
            continue  # an image without detections
        n_dt = int(rng.integers(0, max_dets + 1))
        for _ in range(n_dt):
            u = rng.random()
            if boxes and u < 0.15:  # the same box (IoU 1) or twice as high or wide (IoU 0.5 when integer)
                c, b = boxes[int(rng.integers(len(boxes)))]
                x, y, bw, bh = b
                box = [[x, y, bw, bh], [x, y, bw, 2 * bh], [x, y, 2 * bw, bh]][int(rng.integers(3))]
            elif boxes and u < 0.6:
                c, b = boxes[int(rng.integers(len(boxes)))]
                j = rng.normal(0, 0.15, 4) * np.array([b[2], b[3], b[2], b[3]])
                box = [b[0] + j[0], b[1] + j[1], abs(b[2] + j[2]), abs(b[3] + j[3])]
                c = c if rng.random() < 0.85 else int(rng.choice(cat_ids))
            else:
                box, c = _rand_box(rng, w, h), int(rng.choice(cat_ids))
            box = [round(float(v), 2) for v in box]
            r = {"image_id": img_id, "category_id": c, "score": float(np.round(rng.random(), 1))}
            if segm:
                rle = mask_utils.encode(np.asfortranarray(_box_mask(rng, box, w, h)))
                rle["counts"] = rle["counts"].decode()
                r["segmentation"] = rle
            else:
                r["bbox"] = box
            results.append(r)
    order = rng.permutation(len(anns))
    gt = {"images": images, "annotations": [anns[i] for i in order], "categories": cats}
    return gt, results


def _rand_box(rng, w, h) -> list[float]:
    # log-uniform side lengths: tiny (< 32^2 area) to the whole image
    bw = float(np.exp(rng.uniform(np.log(1), np.log(w))))
    bh = float(np.exp(rng.uniform(np.log(1), np.log(h))))
    box = [float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh)), bw, bh]
    # a third of the boxes on integer pixels: exact IoUs such as 0.5 occur
    return [float(round(v)) for v in box] if rng.random() < 0.33 else [round(v, 2) for v in box]


def _box_mask(rng, box, w, h) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    x0, y0 = int(max(box[0], 0)), int(max(box[1], 0))
    x1, y1 = int(min(box[0] + box[2] + 1, w)), int(min(box[1] + box[3] + 1, h))
    m[y0:y1, x0:x1] = 1
    # knock out a random quarter so masks are not rectangles
    if rng.random() < 0.5:
        m[y0 : (y0 + y1) // 2, x0 : (x0 + x1) // 2] = 0
    return m


def _rand_segm(rng, box, w, h, rle: bool):
    x, y, bw, bh = box
    if rle:  # crowds as uncompressed RLE, as in COCO
        m = _box_mask(rng, box, w, h)
        return {"size": [h, w], "counts": _uncompressed_counts(m)}
    cx, cy = x + bw / 2, y + bh / 2
    ang = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 9))))
    rad = rng.uniform(0.5, 1.0, len(ang))
    pts = np.c_[cx + np.cos(ang) * rad * bw / 2, cy + np.sin(ang) * rad * bh / 2]
    return [[round(float(v), 2) for v in pts.reshape(-1)]]


def _uncompressed_counts(m: np.ndarray) -> list[int]:
    flat = m.reshape(-1, order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.r_[0, change, len(flat)]
    counts = np.diff(bounds).tolist()
    return ([0] + counts) if flat[0] == 1 else counts


def _to_rle(segm, h, w):
    if isinstance(segm, list):
        return mask_utils.merge(mask_utils.frPyObjects(segm, h, w))
    return mask_utils.frPyObjects(segm, h, w)
