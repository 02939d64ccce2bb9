"""Real images of a dataset spec as a low-precision export sees them: calibration inputs and the score.

Both go through detseg's own preprocessing, the one ``predict`` and ``eval`` use (normalisation is
inside every graph, so an input is floats in [0, 1]):

- segmenters: the eval preset's full-size images; a calibration input is one window of the exported
  size (``img_size``) per image, at a seeded position, as ``predict`` tiles; the score is the mIoU of
  ``predict``'s tiled probabilities over the whole images
  (:func:`detseg.engine.predict.segment_probabilities`);
- detectors: the eval preset (resized to ``img_size``) one image ``[3, H, W]`` at a time; AP50;
- classifiers: the eval preset at ``img_size``; top-1 accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

METRIC = {"segment": "miou", "detect": "AP50", "instance": "AP50", "classify": "accuracy"}


def _size(meta: dict[str, Any]) -> int:
    size = meta.get("img_size") or 224
    return int(size[-1] if isinstance(size, list | tuple) else size)


def load_split(meta: dict[str, Any], spec_path: str | Path, split: str) -> Any:
    """The dataset of ``split`` of a spec, preprocessed as ``eval`` does for this model; a spec whose
    classes or channels are not the model's is refused naming both."""
    from detseg.data.spec import load_spec

    spec = load_spec(spec_path)
    task = meta.get("task", "segment")
    family = "detect" if spec.task in ("detect", "instance") else spec.task
    if family != ("detect" if task in ("detect", "instance") else task):
        raise ValueError(f"{spec_path} is a {spec.task} data set, but the model is a {task} model")
    channels = int(meta.get("channels", 3))
    if int(spec.channels) != channels:
        raise ValueError(f"{spec_path}: its images have {spec.channels} channels, the model takes {channels}")
    if split not in spec.splits:
        raise ValueError(f"{spec_path} has no split {split!r} (it has {', '.join(spec.splits)})")
    if task == "classify":
        from detseg.engine.classify import evaluation_set

        dataset = evaluation_set(spec, split, list(meta["classes"]), _size(meta))[0]
    elif task == "segment":
        from detseg.data.dataset import build_dataset
        from detseg.data.transforms import segmentation_eval_preset

        dataset = build_dataset(spec, split, segmentation_eval_preset())
    else:
        from detseg.data.dataset import build_dataset
        from detseg.data.transforms import detection_eval_preset

        dataset = build_dataset(spec, split, detection_eval_preset(_size(meta)), boxes_only=True)
    classes = list(getattr(dataset, "classes", None) or spec.classes or [])
    if classes != list(meta["classes"]):
        raise ValueError(
            f"{spec_path} ({split}): the data's classes {classes} are not the model's "
            f"classes {list(meta['classes'])}"
        )
    return dataset


def calibration_inputs(
    meta: dict[str, Any], spec_path: str | Path, split: str = "train", count: int = 300, seed: int = 0
) -> list[np.ndarray]:
    """Up to ``count`` model inputs (float32 arrays) made from the first ``count`` images of ``split``:
    ``[1, C, S, S]`` for segmenters and classifiers, ``[3, H, W]`` for detectors."""
    dataset = load_split(meta, spec_path, split)
    task = meta.get("task", "segment")
    rng = np.random.default_rng(seed)
    size = _size(meta)
    inputs = []
    for i in range(min(count, len(dataset))):
        image = torch.as_tensor(dataset[i][0]).float()
        if task == "segment":
            image = _window(image, size, rng)
        inputs.append(np.ascontiguousarray(image.numpy() if task in ("detect", "instance") else image[None]))
    if not inputs:
        raise ValueError(f"{spec_path} ({split}): no images to calibrate with")
    return inputs


def _window(image: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """One ``size`` x ``size`` window of ``image`` at a random position (resized up when smaller)."""
    _, h, w = image.shape
    if h < size or w < size:
        import torch.nn.functional as F

        return F.interpolate(image[None], size=(size, size), mode="bilinear", align_corners=False)[0]
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return image[:, y : y + size, x : x + size]


def model_input(meta: dict[str, Any], dataset: Any, index: int) -> np.ndarray:
    """Image ``index`` of a :func:`load_split` dataset as the graph takes it whole: ``[1, C, H, W]``
    (segmenters at full size, classifiers at the eval size) or ``[3, H, W]`` (detectors)."""
    image = torch.as_tensor(dataset[index][0]).float()
    return np.ascontiguousarray(image.numpy() if meta.get("task") in ("detect", "instance") else image[None])


@torch.no_grad()
def score(
    model: Any,
    meta: dict[str, Any],
    dataset: Any,
    indices: list[int] | None = None,
    per_item: list | None = None,
) -> float:
    """The model's main metric (:data:`METRIC`: mIoU, AP50, accuracy) on the images ``indices`` (default
    all) of a :func:`load_split` dataset, by detseg's own evaluators; ``model`` is called like the PyTorch
    model (a checkpoint's, an ONNX or OpenVINO one). ``per_item`` collects each image's own score (its
    mIoU, 1.0 or 0.0 for a classifier, its AP50)."""
    task = meta.get("task", "segment")
    indices = list(range(len(dataset))) if indices is None else list(indices)
    if not indices:
        raise ValueError("no images to score with")
    if task == "segment":
        from detseg.engine.predict import segment_probabilities
        from detseg.engine.tasks import confusion_matrix, metrics_from_confusion

        k = len(meta["classes"])
        confusion = torch.zeros(k, k, dtype=torch.int64)
        for i in indices:
            image, target = dataset[i]
            probs = segment_probabilities(model, torch.as_tensor(image).float(), _size(meta))
            own = confusion_matrix(
                probs.argmax(0)[None],
                torch.as_tensor(target["semantic"]).long()[None],
                k,
                int(meta.get("ignore_index", 255)),
            )
            confusion += own
            if per_item is not None:
                per_item.append(float(metrics_from_confusion(own.numpy())["miou"]))
        return float(metrics_from_confusion(confusion.numpy())["miou"])
    if task == "classify":
        from detseg.engine.classify import ClassificationTask

        evaluator: Any = ClassificationTask(len(meta["classes"]), list(meta["classes"]))
        batches = [
            (torch.as_tensor(dataset[i][0])[None], torch.tensor([int(dataset[i][1]["label"])]))
            for i in indices
        ]
    else:
        from detseg.engine.tasks import DetectionTask

        evaluator = DetectionTask(len(meta["classes"]), list(meta["classes"]))
        batches = [([dataset[i][0]], [dataset[i][1]]) for i in indices]
    evaluator.eval_begin()
    for batch in batches:
        evaluator.eval_step(model, batch, torch.device("cpu"))
        if per_item is not None:
            if task == "classify":
                per_item.append(float(evaluator.confusion.trace() - sum(per_item)))
            else:
                per_item.append(_one_image_ap50(evaluator))
    return float(evaluator.eval_end()[METRIC[task]])


def _one_image_ap50(evaluator: Any) -> float:
    """AP50 of the last image a detection evaluator saw (its truth and results alone)."""
    from detseg.engine.tasks import DetectionTask

    image = evaluator.gt_images[-1]
    last = DetectionTask(evaluator.num_classes, evaluator.class_names)
    last.eval_begin()
    last.gt_images = [image]
    last.gt_annotations = [a for a in evaluator.gt_annotations if a["image_id"] == image["id"]]
    last.results = [r for r in evaluator.results if r["image_id"] == image["id"]]
    return float(last.eval_end()["AP50"])
