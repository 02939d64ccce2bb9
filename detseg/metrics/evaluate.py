"""File-level evaluation behind ``detseg eval``: read the inputs, run the metric, build text/JSON/plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _is_coco_gt(data) -> bool:
    return isinstance(data, dict) and "images" in data and "annotations" in data and "categories" in data


BOX_CONVENTIONS = ("voc", "coco")


def load_detection_inputs(
    gt_path: Path, dt_path: Path, box_format: str = "xyxy", box_convention: str | None = None
) -> tuple[dict, list[dict]]:
    """(COCO gt dict, COCO results list). Two COCO json files are read directly (the fast path); any
    other combination (VOC XML folder, text box folders, COCO-style detection dicts) goes through
    ``detseg.data.convert``, which matches classes by name and images by file stem.

    ``box_convention``: how the files' coordinates count pixels. ``voc``: whole pixels, ``x2`` is the
    last pixel inside the box (width ``x2 - x1 + 1``, as the VOC devkit and Padilla's tool measure);
    ``coco``: continuous (width ``x2 - x1``). The boxes come back in detseg's continuous frame either
    way. None (default): VOC XML ground truth (and text detections scored against it) ``voc``, COCO
    json and text files ``coco``."""
    from detseg.metrics.coco import load_json, no_gc

    if box_convention not in (None, *BOX_CONVENTIONS):
        choices = ", ".join(BOX_CONVENTIONS)
        raise ValueError(f"box convention must be one of {choices}, got {box_convention!r}")
    gt_path, dt_path = Path(gt_path), Path(dt_path)
    if gt_path.is_file() and gt_path.suffix.lower() == ".json" and dt_path.is_file():
        with no_gc():
            gt = load_json(gt_path)
        if _is_coco_gt(gt) and dt_path.suffix.lower() == ".json":
            with no_gc():
                dt = load_json(dt_path)
            if isinstance(dt, list):
                gt, dt = shared_ids(gt, dt, gt_path, dt_path)
                if box_convention == "voc":
                    _shift_boxes(gt["annotations"], -1.0, area=True)
                    _shift_boxes(dt, -1.0)
                return gt, dt
    from detseg.data.convert import load_detection_gt, load_detection_results

    gt = load_detection_gt(gt_path, box_format=box_format)  # text ground truth: the same box format
    results = load_detection_results(dt_path, gt, box_format=box_format)
    if box_convention is not None:
        # What the readers did: VOC XML (and text detections against it) already whole-pixel.
        gt_voc = gt.get("info", {}).get("box_convention") == "voc"
        dt_voc = gt_voc and dt_path.is_dir()
        delta = -1.0 if box_convention == "voc" else 1.0
        if gt_voc != (box_convention == "voc"):
            _shift_boxes(gt["annotations"], delta, area=True)
        if dt_voc != (box_convention == "voc"):
            _shift_boxes(results, delta)
    return gt, results


def shared_ids(gt: dict, dt: list, gt_path: Path, dt_path: Path) -> tuple[dict, list]:
    """The ids read as ``data check``, ``train`` and ``convert`` read them (``detseg.data.coco.coco_ids``):
    string image ids mapped to ints (in the results too), a null or non-integer id refused naming the
    file, the entry and the field; annotations without an integer id numbered."""
    from detseg.data.coco import coco_ids, number_annotations, result_ids

    gt = number_annotations(coco_ids(gt, gt_path))
    return gt, result_ids(dt, gt, dt_path)


def _shift_boxes(items: list[dict], delta: float, area: bool = False) -> None:
    """Read whole-pixel boxes continuously (``delta`` -1: x1, y1 one pixel earlier, so w, h + 1) or
    back (+1), in place; ground-truth areas that were the box's follow."""
    for it in items:
        if "bbox" not in it:
            continue
        x, y, w, h = it["bbox"]
        box_area = it.get("area") == w * h
        it["bbox"] = [x + delta, y + delta, w - delta, h - delta]
        if area and ("area" not in it or box_area):
            it["area"] = float((w - delta) * (h - delta))


def evaluate_detection_files(
    gt_path,
    dt_path,
    iou_type: str = "bbox",
    metric: str = "coco",
    iou: float = 0.5,
    plots: Path | None = None,
    box_format: str = "xyxy",
    fix_bugs: bool = False,
    box_convention: str | None = None,
    report: Path | None = None,
    image_dir: Path | None = None,
) -> dict:
    """Evaluate; returns {"text": printable report, "json": dict for --json, "plots": [paths]}.

    ``box_convention``: ``voc`` | ``coco`` | None (see ``load_detection_inputs``); ``report``: write
    the HTML report there (``detseg.viz.report_det``), with galleries from the images in ``image_dir``.
    """
    gt, results = load_detection_inputs(gt_path, dt_path, box_format, box_convention)
    title = f"{Path(dt_path).name} on {Path(gt_path).name}"
    return evaluate_detections(gt, results, iou_type, metric, iou, plots, fix_bugs, report, image_dir, title)


def name_spec_images(gt: dict, data: str | Path, split: str = "val") -> Path:
    """Give the images of ``gt`` (a model's evaluation on a spec's split: ids, no file names) their
    ``file_name`` from the spec; returns the split's image folder."""
    from detseg.data.dataset import DetectionDataset

    ds = DetectionDataset(data, split)
    names = {img["id"]: img["file_name"] for img in ds.coco_gt()["images"]}
    for img in gt["images"]:
        img.setdefault("file_name", names.get(img["id"], str(img["id"])))
    return Path(ds.image_dir)


def evaluate_detections(
    gt: dict,
    results: list[dict],
    iou_type: str = "bbox",
    metric: str = "coco",
    iou: float = 0.5,
    plots: Path | None = None,
    fix_bugs: bool = False,
    report: Path | None = None,
    image_dir: Path | None = None,
    title: str = "",
    slices: tuple[int, float] | None = None,
) -> dict:
    """The report of ``evaluate_detection_files`` for a COCO gt dict and results list in memory.

    ``report``: also write the HTML report into that folder (``result["report"]`` is its index.html,
    ``result["report_missing"]`` the number of images not found in ``image_dir``). ``slices``: ``(tile,
    overlap)`` of a sliced run: recall by where objects lie on the slice grid and the duplicates the merge
    left (:mod:`detseg.metrics.slice_diagnostics`), printed, in the JSON and in the report."""
    from detseg.metrics.detection import pool_curves

    if report is not None and iou_type != "bbox":
        raise ValueError("--report analyses boxes: use --iou-type bbox")

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
        conf = detection_confusion(gt, results, score_threshold=score_thr, iou=iou, iou_type=iou_type)
        errors = error_breakdown(gt, results, score_threshold=score_thr, fg_iou=iou, iou_type=iou_type)
        out["confusion"] = conf.to_dict()
        out["errors"] = {"score_threshold": score_thr, **errors}
        text.append("errors at that threshold: " + ", ".join(f"{k} {v}" for k, v in errors.items()))
        written = write_detection_plots(curves, pooled, conf, plots)
    if not results:
        text.append("no detections at all: every object is missed")
    result: dict = {"json": out, "plots": written}
    analysis = diagnostics = None
    if report is not None or slices is not None:
        from detseg.metrics.tide import tide

        analysis = tide(gt, results, fg_iou=iou, max_dets=100 if metric == "coco" else None)
    if report is not None:
        out["tide"] = analysis.to_dict()
        text.append(analysis.summary())
    if slices is not None:
        from detseg.metrics.slice_diagnostics import slice_diagnostics, summary

        diagnostics = out["slices"] = slice_diagnostics(gt, analysis, *slices)
        text.append(summary(diagnostics))
    result["text"] = "\n".join(text)
    if report is not None:
        from detseg.viz.report_det import write_detection_report

        result.update(write_detection_report(report, gt, results, out, curves, metric, iou, image_dir, title,
                                             analysis, slices=diagnostics))  # fmt: skip
    return result


def _best(curve) -> dict:
    thr, f1, p, r = curve.best_f1()
    return {"threshold": thr, "f1": f1, "precision": p, "recall": r}


def _prediction(raw: np.ndarray, table: np.ndarray | None) -> np.ndarray:
    """A predicted mask as class indices: in the spec's pixel values (what ``detseg predict`` writes,
    membrane's 0/255) when every value is one the spec lists, else taken as class indices."""
    if table is None or raw.size == 0:
        return raw
    mapped = table[raw.astype(np.int64)]
    return mapped if (mapped >= 0).all() else raw


def evaluate_segmentation_folders(
    gt,
    pred_dir,
    split: str = "val",
    num_classes: int | None = None,
    ignore_index: int = 255,
    report: Path | None = None,
    image_dir: Path | None = None,
) -> dict:
    """Segmentation metrics of the predicted PNGs in ``pred_dir`` against a spec's split or a folder
    of label PNGs (matched by file stem). Returns {"text", "json"}. Against a spec, a prediction written in
    the spec's pixel values (``detseg predict``'s masks: membrane's 0/255) is decoded as the truth is;
    any other is taken as class indices.

    ``report``: also write the HTML report (``detseg.viz.report_seg``) into that folder, its pictures
    from the spec's images or, for label folders, from ``image_dir`` (by stem); the result then has
    ``report`` (index.html) and ``report_missing`` (images not found)."""
    from detseg.data.errors import DataError
    from detseg.data.masks import find_mask, read_mask
    from detseg.metrics.segmentation import SegmentationMetrics

    gt, pred_dir = Path(gt), Path(pred_dir)
    if not pred_dir.is_dir():
        raise DataError(pred_dir, "prediction folder not found")
    pairs = []  # (stem, callable giving the truth [H, W])
    names = None
    table = None  # a spec's raw value -> class table: predictions written in its pixel values decode by it
    found = None  # Cityscapes' instanceIds, one per image: iIoU beside IoU
    if gt.is_dir():
        files = sorted(p for p in gt.iterdir() if p.suffix.lower() in (".png", ".bmp", ".tif", ".tiff"))
        if not files:
            raise DataError(gt, "no label images (.png) in the ground-truth folder")
        pairs = [(f.stem, lambda f=f: read_mask(f)) for f in files]
        image_files = None
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
        found = cityscapes_iiou(ds, split, num_classes, ignore_index)
        if ds.spec.format == "masks" and ds.spec.values:  # what detseg predict writes for such a spec
            table = ds.table
        image_files = [Path(str(e[0])) for e in ds.entries]
    metrics = SegmentationMetrics(num_classes, ignore_index)
    iiou, instance_files = found if found else (None, None)
    per_image: list[dict] = []
    for index, (stem, truth) in enumerate(pairs):
        path = find_mask(pred_dir, stem)
        if not path.is_file():
            raise DataError(path, f"no prediction for ground-truth image '{stem}'")
        t, p = truth(), _prediction(read_mask(path), table)
        if p.shape != t.shape:
            raise DataError(path, f"prediction size {p.shape} differs from the ground truth's {t.shape}")
        metrics.update(p.astype(np.int64), t.astype(np.int64))
        if report is not None:
            from detseg.viz.report_seg import image_scores

            per_image.append({"name": stem, **image_scores(t, p, num_classes, ignore_index)})
        if iiou is not None:
            update_iiou(iiou, p, t, instance_files[index])
    scores = metrics.compute()
    if iiou is not None:
        scores.update({k: v for k, v in iiou.compute().items() if k != "instances"})
    names = names or [str(i) for i in range(num_classes)]
    extra = iiou is not None
    lines = [f"{'class':<20} {'IoU':>7} {'Dice':>7} {'acc':>7}" + (f" {'iIoU':>7}" if extra else "")]
    rows = zip(names, scores["iou"], scores["dice"], scores["accuracy"], strict=True)
    for c, (n, i, d, a) in enumerate(rows):
        tail = ("" if np.isnan(scores["iiou"][c]) else f" {scores['iiou'][c]:7.4f}") if extra else ""
        lines.append(f"{n:<20} {i:7.4f} {d:7.4f} {a:7.4f}" + tail)
    lines.append(
        f"mIoU {scores['miou']:.4f}  mDice {scores['mdice']:.4f}  pixel accuracy "
        f"{scores['pixel_accuracy']:.4f}  mean accuracy {scores['mean_accuracy']:.4f}  "
        f"fwIoU {scores['fwiou']:.4f}  ({len(pairs)} images)"
    )
    if extra:
        lines.append(f"iIoU {scores['miiou']:.4f} (mean over the instance classes, Cityscapes' definition)")
    result = {"text": "\n".join(lines), "json": {**scores, "classes": names, "images": len(pairs)}}
    if report is not None:
        from detseg.viz.gallery import ImageSource
        from detseg.viz.report_seg import write_segmentation_report

        source = ImageSource(image_dir if image_files is None else None)

        def load(i: int):
            stem, truth = pairs[i]
            image = source.load(stem) if image_files is None else ImageSource(None).load_file(image_files[i])
            return image, truth(), _prediction(read_mask(find_mask(pred_dir, stem)), table)

        title = f"{pred_dir.name} on {gt.name}"
        result.update(
            write_segmentation_report(report, result["json"], names, per_image, load, ignore_index, title)
        )
        if image_files is None and image_dir is None:
            result["report_missing"] = 0  # no images asked for: the report says so, nothing to warn about
    return result


def cityscapes_iiou(ds, split: str, num_classes: int, ignore_index: int):
    """``(InstanceIoU, instanceIds files)`` for a Cityscapes split whose every image has its instanceIds
    file (iIoU beside IoU), else None."""
    files = cityscapes_instance_files(ds, split)
    if not files:
        return None
    from detseg.data.cityscapes import avg_instance_sizes
    from detseg.metrics.instance_iou import InstanceIoU

    sizes = {c: s for c, s in avg_instance_sizes().items() if c < num_classes}
    return InstanceIoU(num_classes, sizes, ignore_index), files


def cityscapes_instance_files(ds, split: str) -> list[Path] | None:
    """The ``*_gtFine_instanceIds.png`` of each image of a Cityscapes split, when all of them exist."""
    if ds.spec.format != "cityscapes":
        return None
    from detseg.data.cityscapes import cityscapes_pairs

    s = ds.spec.split(split)
    files = [inst for _, _, inst, _ in cityscapes_pairs(s.images, s.masks)]
    return files if files and all(f.is_file() for f in files) else None


def update_iiou(iiou, pred: np.ndarray, truth: np.ndarray, instance_file: Path) -> None:
    """Add one image to ``iiou`` (:class:`~detseg.metrics.instance_iou.InstanceIoU`): its prediction and
    truth (class indices) and the instances of its Cityscapes ``instanceIds`` file."""
    from detseg.data.cityscapes import instance_map
    from detseg.data.errors import DataError
    from detseg.data.masks import read_mask

    ids = read_mask(instance_file)
    if ids.shape != truth.shape:
        raise DataError(instance_file, f"instanceIds size {ids.shape} differs from the labels' {truth.shape}")
    instances, classes = instance_map(ids)
    iiou.update(pred.astype(np.int64), truth.astype(np.int64), instances, classes)
