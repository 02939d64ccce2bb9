"""File-level evaluation behind ``detseg eval``: read the inputs, run the metric, build text/JSON/plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _is_coco_gt(data) -> bool:
    return isinstance(data, dict) and "images" in data and "annotations" in data and "categories" in data


def load_detection_inputs(gt_path: Path, dt_path: Path, box_format: str = "xyxy") -> tuple[dict, list[dict]]:
    """(COCO gt dict, COCO results list). Two COCO json files are read directly (the fast path); any
    other combination (VOC XML folder, text box folders, COCO-style detection dicts) goes through
    ``detseg.data.convert``, which matches classes by name and images by file stem."""
    from detseg.metrics.coco import load_json, no_gc

    gt_path, dt_path = Path(gt_path), Path(dt_path)
    if gt_path.is_file() and gt_path.suffix.lower() == ".json" and dt_path.is_file():
        with no_gc():
            gt = load_json(gt_path)
        if _is_coco_gt(gt) and dt_path.suffix.lower() == ".json":
            with no_gc():
                dt = load_json(dt_path)
            if isinstance(dt, list):
                return gt, dt
    from detseg.data.convert import load_detection_gt, load_detection_results

    gt = load_detection_gt(gt_path)
    return gt, load_detection_results(dt_path, gt, box_format=box_format)


def evaluate_detection_files(
    gt_path,
    dt_path,
    iou_type: str = "bbox",
    metric: str = "coco",
    iou: float = 0.5,
    plots: Path | None = None,
    box_format: str = "xyxy",
    fix_bugs: bool = False,
) -> dict:
    """Evaluate; returns {"text": printable report, "json": dict for --json, "plots": [paths]}."""
    gt, results = load_detection_inputs(gt_path, dt_path, box_format)
    return evaluate_detections(gt, results, iou_type, metric, iou, plots, fix_bugs)


def evaluate_detections(
    gt: dict,
    results: list[dict],
    iou_type: str = "bbox",
    metric: str = "coco",
    iou: float = 0.5,
    plots: Path | None = None,
    fix_bugs: bool = False,
) -> dict:
    """The report of ``evaluate_detection_files`` for a COCO gt dict and results list in memory."""
    from detseg.metrics.detection import pool_curves

    if metric == "coco":
        from detseg.metrics.coco import evaluate

        res = evaluate(gt, results, iou_type=iou_type, fix_stat0_maxdets=fix_bugs, fix_gt_id_zero=fix_bugs)
        curves = res.pr_curves(iou)
        text = [f"COCO {iou_type} evaluation", res.summary(), "", res.per_category_table()]
        out = res.to_dict()
    else:
        if iou_type != "bbox":
            raise ValueError(f"--metric {metric} evaluates boxes only; use --metric coco for --iou-type segm")
        from detseg.metrics.voc import evaluate_voc

        res = evaluate_voc(gt, results, iou=iou, method=metric)
        curves = res.curves
        text = [f"{metric} AP at IoU {iou:g}", res.summary()]
        out = res.to_dict()
    pooled = pool_curves(curves)
    thr, f1, p, r = pooled.best_f1()
    text.append(
        f"all classes: best F1 {f1:.3f} at score >= {thr:.4g} (precision {p:.3f}, recall {r:.3f},"
        f" IoU {iou:g})"
    )
    out["best_f1"] = {name: _best(c) for name, c in curves.items()}
    out["best_f1"]["all classes"] = _best(pooled)
    written: list[Path] = []
    if plots is not None:
        from detseg.metrics.errors import detection_confusion, error_breakdown
        from detseg.viz.plots import write_detection_plots

        score_thr = thr if np.isfinite(thr) else 0.5
        conf = detection_confusion(gt, results, score_threshold=score_thr, iou=iou)
        errors = error_breakdown(gt, results, score_threshold=score_thr, fg_iou=iou)
        out["confusion"] = conf.to_dict()
        out["errors"] = {"score_threshold": score_thr, **errors}
        text.append("errors at that threshold: " + ", ".join(f"{k} {v}" for k, v in errors.items()))
        written = write_detection_plots(curves, pooled, conf, plots)
    return {"text": "\n".join(text), "json": out, "plots": written}


def _best(curve) -> dict:
    thr, f1, p, r = curve.best_f1()
    return {"threshold": thr, "f1": f1, "precision": p, "recall": r}


def evaluate_segmentation_folders(
    gt, pred_dir, split: str = "val", num_classes: int | None = None, ignore_index: int = 255
) -> dict:
    """Segmentation metrics of the class-index PNGs in ``pred_dir`` against a spec's split or a folder
    of label PNGs (matched by file stem). Returns {"text", "json"}."""
    from detseg.data.errors import DataError
    from detseg.data.masks import find_mask, read_mask
    from detseg.metrics.segmentation import SegmentationMetrics

    gt, pred_dir = Path(gt), Path(pred_dir)
    if not pred_dir.is_dir():
        raise DataError(pred_dir, "prediction folder not found")
    pairs = []  # (stem, callable giving the truth [H, W])
    names = None
    if gt.is_dir():
        files = sorted(p for p in gt.iterdir() if p.suffix.lower() in (".png", ".bmp", ".tif", ".tiff"))
        if not files:
            raise DataError(gt, "no label images (.png) in the ground-truth folder")
        pairs = [(f.stem, lambda f=f: read_mask(f)) for f in files]
        if num_classes is None:
            top = max(int(np.max(np.where(m == ignore_index, 0, m))) for m in (read_mask(f) for f in files))
            num_classes = top + 1
    else:
        from detseg.data.dataset import SegmentationDataset

        ds = SegmentationDataset(gt, split)
        names, num_classes, ignore_index = ds.classes, ds.num_classes, ds.ignore_index
        pairs = [
            (Path(str(e[0])).stem, lambda i=i: ds[i][1]["semantic"].numpy()) for i, e in enumerate(ds.entries)
        ]
    metrics = SegmentationMetrics(num_classes, ignore_index)
    for stem, truth in pairs:
        path = find_mask(pred_dir, stem)
        if not path.is_file():
            raise DataError(path, f"no prediction for ground-truth image '{stem}'")
        t, p = truth(), read_mask(path)
        if p.shape != t.shape:
            raise DataError(path, f"prediction size {p.shape} differs from the ground truth's {t.shape}")
        metrics.update(p.astype(np.int64), t.astype(np.int64))
    scores = metrics.compute()
    names = names or [str(i) for i in range(num_classes)]
    lines = [f"{'class':<20} {'IoU':>7} {'Dice':>7} {'acc':>7}"]
    for n, i, d, a in zip(names, scores["iou"], scores["dice"], scores["accuracy"], strict=True):
        lines.append(f"{n:<20} {i:7.4f} {d:7.4f} {a:7.4f}")
    lines.append(
        f"mIoU {scores['miou']:.4f}  mDice {scores['mdice']:.4f}  pixel accuracy "
        f"{scores['pixel_accuracy']:.4f}  mean accuracy {scores['mean_accuracy']:.4f}  "
        f"fwIoU {scores['fwiou']:.4f}  ({len(pairs)} images)"
    )
    return {"text": "\n".join(lines), "json": {**scores, "classes": names, "images": len(pairs)}}
