"""A saved model's HTML evaluation report on a split of a spec (``detseg eval det|seg --weights --data
--report DIR`` and ``detseg train --report DIR``, which reports best.pt on the validation split)."""

from __future__ import annotations

from pathlib import Path


def write_model_report(
    weights: str | Path,
    data: str | Path,
    out: str | Path,
    split: str = "val",
    device: str = "cpu",
    tta: str | None = None,
    metric: str = "coco",
    iou: float = 0.5,
) -> dict:
    """Run ``weights`` over ``split`` of ``data`` and write the report into ``out``.

    Returns the evaluation (``text``, ``json``) with ``report`` (DIR/index.html) and
    ``report_missing`` (images not found). Detection: COCO (or ``metric``) figures, TIDE and
    galleries; segmentation: IoU / Dice, confusion and the worst images by mIoU."""
    from detseg.engine.run import run_evaluation

    title = f"{Path(weights).parent.name}/{Path(weights).name} on {Path(data).name} ({split})"
    task = run_evaluation(weights, data, split, device, tta=tta, keep_predictions=True)
    if hasattr(task, "coco_inputs"):
        from detseg.metrics.evaluate import evaluate_detections, name_spec_images

        gt, results = task.coco_inputs()
        image_dir = name_spec_images(gt, data, split)
        return evaluate_detections(
            gt, results, metric=metric, iou=iou, report=Path(out), image_dir=image_dir, title=title
        )
    return _segmentation_report(task, data, split, Path(out), title)


def _segmentation_report(task, data, split: str, out: Path, title: str) -> dict:
    from detseg.data.dataset import SegmentationDataset
    from detseg.metrics.segmentation import segmentation_scores
    from detseg.viz.gallery import ImageSource
    from detseg.viz.report_seg import image_scores, write_segmentation_report

    ds = SegmentationDataset(data, split)
    files = [Path(str(e[0])) for e in ds.entries]
    if len(files) != len(task.kept):
        files = [Path(str(i)) for i in range(len(task.kept))]  # no file names: numbered images
    scores = segmentation_scores(task.confusion.numpy())
    names = list(task.class_names or [str(i) for i in range(task.num_classes)])
    scores.update(classes=names, images=len(task.kept))
    per_image = [
        {"name": f.name, **image_scores(t, p, task.num_classes, task.ignore_index)}
        for f, (p, t) in zip(files, task.kept, strict=True)
    ]
    source = ImageSource(None)

    def load(i: int):
        pred, truth = task.kept[i]
        return source.load_file(files[i]), truth, pred

    written = write_segmentation_report(out, scores, names, per_image, load, task.ignore_index, title)
    lines = [f"{n:<20} IoU {v:.4f}" for n, v in zip(names, scores["iou"], strict=True)]
    lines.append(f"mIoU {scores['miou']:.4f}  pixel accuracy {scores['pixel_accuracy']:.4f}")
    return {"text": "\n".join(lines), "json": scores, **written}
