"""Scoring classical pipelines on a data set, with the same metrics and split as a network.

A pipeline's output becomes class indices in one of two ways, both fitted on a *training* split and
then applied unchanged to the scored split:

- a binary mask (``otsu``, ``adaptive``, ``canny`` ...) against a two-class spec: ``polarity`` "keep"
  makes the foreground (``grey > t``) class 1, "invert" makes it class 0, "auto" picks the one with the
  higher mIoU on the training split;
- labels (``kmeans``, ``multiotsu``, ``region`` ...): each label becomes the class it most often
  covers on the training split ("majority"; labels never seen become the most frequent class), or the
  label is the class index itself ("identity").
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from detseg.classic.pipeline import Pipeline


def iter_split(spec, split: str) -> Iterator[tuple[np.ndarray, np.ndarray, str]]:
    """``(image uint8 [H, W, 3] RGB, semantic int64 [H, W], file_name)`` for each sample of a split."""
    from detseg.data.dataset import SegmentationDataset

    dataset = SegmentationDataset(spec, split)
    for i in range(len(dataset)):
        image, target = dataset[i]
        yield image.permute(1, 2, 0).numpy(), target["semantic"].numpy(), target["file_name"]


def _as_labels(output: np.ndarray, kind: str, name: str) -> np.ndarray:
    if kind not in ("mask", "labels"):
        raise ValueError(f"pipeline ends with a {kind}, which has no classes; end it with a mask or labels")
    if output.dtype == np.bool_:
        return output.view(np.uint8)
    if output.min() < 0:
        raise ValueError(f"{name}: negative labels from the pipeline")
    return output


def cooccurrence(labels: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray:
    """``int64 [L, C]``: how many pixels with label l have true class c (void pixels skipped)."""
    keep = target != ignore_index
    lab = labels[keep].astype(np.int64)
    cls = target[keep].astype(np.int64)
    n = int(lab.max()) + 1 if lab.size else 1
    return np.bincount(lab * num_classes + cls, minlength=n * num_classes).reshape(n, num_classes)


def _merge(total: np.ndarray | None, part: np.ndarray) -> np.ndarray:
    if total is None:
        return part
    rows = max(total.shape[0], part.shape[0])
    out = np.zeros((rows, total.shape[1]), np.int64)
    out[: total.shape[0]] += total
    out[: part.shape[0]] += part
    return out


def fit_label_map(
    counts: np.ndarray, kind: str, polarity: str = "auto", mapping: str = "majority"
) -> tuple[np.ndarray, str]:
    """Class of each label ``int64 [L]`` from the training co-occurrence ``counts`` [L, C], and a
    one-line description of the choice."""
    from detseg.metrics.segmentation import segmentation_scores

    num_classes = counts.shape[1]
    if kind == "mask":
        if num_classes != 2:
            raise ValueError(
                f"a binary mask scores only against a two-class spec (this one has {num_classes}); "
                "end the pipeline with labels (kmeans, multiotsu) instead"
            )
        counts = _merge(counts, np.zeros((2, 2), np.int64))[:2]
        if polarity == "auto":
            keep = segmentation_scores(counts.T)["miou"]  # confusion rows = truth, columns = prediction
            invert = segmentation_scores(counts[::-1].T)["miou"]
            polarity = "keep" if keep >= invert else "invert"
        if polarity not in ("keep", "invert"):
            raise ValueError(f"polarity must be auto, keep or invert, got {polarity!r}")
        table = np.array([0, 1] if polarity == "keep" else [1, 0], np.int64)
        return table, f"polarity {polarity}: foreground is class {table[1]}"
    if mapping == "identity":
        return np.arange(num_classes), "labels are class indices"
    if mapping != "majority":
        raise ValueError(f"mapping must be majority or identity, got {mapping!r}")
    fallback = int(counts.sum(0).argmax())
    table = np.where(counts.sum(1) > 0, counts.argmax(1), fallback)
    return table, "label -> class: " + ", ".join(f"{i}->{c}" for i, c in enumerate(table.tolist()))


def score_pipeline(
    pipeline: Pipeline,
    spec: str | Path,
    split: str = "val",
    fit_split: str | None = "train",
    polarity: str = "auto",
    mapping: str = "majority",
) -> dict:
    """Run ``pipeline`` over ``split`` of the spec and score it with
    :class:`detseg.metrics.segmentation.SegmentationMetrics`.

    Polarity ("auto") or the majority label map is fitted on ``fit_split`` first; with ``fit_split``
    None, "auto" and "majority" fit on the scored split itself (optimistic; said so in the result).
    Returns the metrics (``iou`` as a dict class -> IoU, ``miou``, ``dice``, ``mdice``,
    ``pixel_accuracy``, ``mean_accuracy``, ``fwiou``, ``confusion``) and ``pipeline``, ``split``,
    ``fit_split``, ``label_map``, ``num_images``, ``ms_per_image``.
    """
    from detseg.data.spec import load_spec
    from detseg.metrics.segmentation import SegmentationMetrics

    spec = load_spec(spec)
    classes = list(spec.classes or [])
    kind = pipeline.output_kind
    needs_fit = (kind == "mask" and polarity == "auto") or (kind == "labels" and mapping == "majority")
    counts = None
    if needs_fit:
        for image, target, name in iter_split(spec, fit_split or split):
            labels = _as_labels(pipeline(image), kind, name)
            counts = _merge(counts, cooccurrence(labels, target, len(classes), spec.ignore_index))
    if counts is None:
        counts = np.zeros((2, len(classes)), np.int64)
    table, how = fit_label_map(counts, kind, polarity, mapping)
    fallback = int(counts.sum(0).argmax())  # the most frequent class in training
    metrics = SegmentationMetrics(len(classes), spec.ignore_index)
    seconds, count = 0.0, 0
    for image, target, name in iter_split(spec, split):
        start = time.perf_counter()
        labels = _as_labels(pipeline(image), kind, name)
        seconds += time.perf_counter() - start
        top = int(labels.max())
        if top >= table.size:
            if kind == "labels" and mapping == "identity":
                raise ValueError(f"{name}: label {top} is not a class index ({len(classes)} classes)")
            # a label never seen in training becomes the most frequent class
            table = np.concatenate([table, np.full(top + 1 - table.size, fallback)])
        metrics.update(table[labels], target)
        count += 1
    if count == 0:
        raise ValueError(f"{spec.path}: split '{split}' has no images")
    scores = metrics.compute()
    scores["iou"] = dict(zip(classes, scores["iou"], strict=True))
    scores["dice"] = dict(zip(classes, scores["dice"], strict=True))
    scores["accuracy"] = dict(zip(classes, scores["accuracy"], strict=True))
    fitted_on = (fit_split or f"{split} (the scored split itself)") if needs_fit else None
    return {
        "pipeline": str(pipeline),
        "spec": str(spec.path),
        "split": split,
        "fit_split": fitted_on,
        "label_map": how,
        "num_images": count,
        "ms_per_image": 1000 * seconds / count,
        **scores,
    }


def score_edges(pipeline: Pipeline, spec: str | Path, split: str = "val", tolerance_px: float | None = None,
                thresholds: int = 49) -> dict:
    """Edge maps of ``pipeline`` (a Canny mask or a Sobel magnitude) against the class boundaries of
    the split's semantic masks, by :func:`detseg.classic.edge_eval.evaluate_edges` (ODS, OIS)."""
    from detseg.classic.edge_eval import boundaries_from_labels, evaluate_edges
    from detseg.data.spec import load_spec

    if pipeline.output_kind not in ("mask", "magnitude"):
        raise ValueError(f"edge scoring needs an edge map (canny, sobel), not {pipeline.output_kind}")
    spec = load_spec(spec)
    edges, truths = [], []
    for image, target, _ in iter_split(spec, split):
        edges.append(pipeline(image))
        truths.append(boundaries_from_labels(target, spec.ignore_index))
    if not edges:
        raise ValueError(f"{spec.path}: split '{split}' has no images")
    scores = evaluate_edges(edges, truths, thresholds, tolerance_px)
    return {"pipeline": str(pipeline), "spec": str(spec.path), "split": split, "num_images": len(edges),
            **scores}


def format_scores(scores: dict) -> str:
    """A few readable lines for the scores of :func:`score_pipeline` or :func:`score_edges`."""
    head = f"{scores['pipeline']}  [{scores['split']}, {scores['num_images']} images"
    if "ods_f" in scores:
        return (f"{head}]\nODS F {scores['ods_f']:.4f} (P {scores['ods_precision']:.4f}, "
                f"R {scores['ods_recall']:.4f} at threshold {scores['ods_threshold']:.4g})  "
                f"OIS F {scores['ois_f']:.4f}")
    lines = [f"{head}, {scores['ms_per_image']:.1f} ms each]", str(scores["label_map"])]
    lines += [f"  IoU {name:<16} {iou:.4f}" for name, iou in scores["iou"].items()]
    lines.append(f"mIoU {scores['miou']:.4f}  mDice {scores['mdice']:.4f}  "
                 f"pixel accuracy {scores['pixel_accuracy']:.4f}  fwIoU {scores['fwiou']:.4f}")
    return "\n".join(lines)
