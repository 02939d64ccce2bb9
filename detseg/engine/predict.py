"""Inference from a saved run, for both tasks, writing results in the data set's own terms.

Segmentation: logits over sliding tiles of the training size (overlapping, probabilities averaged)
for images larger than it; the class-index mask is written as ``<out>/<stem>.png`` with the spec's
pixel values (membrane: class 0 -> 0, class 1 -> 255), and a colour overlay as
``<out>/overlay/<stem>.png``.

Detection: ``<out>/<stem>.png`` with boxes, names and scores drawn, ``<out>/labels/<stem>.txt`` text box
files (``class score x1 y1 x2 y2``), and ``<out>/results.json`` in COCO's results format with
``<out>/images.json`` naming the image ids.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from detseg.engine.checkpoint import inference_weights, load_checkpoint
from detseg.engine.tasks import class_logits
from detseg.engine.tta import with_tta


def build_model(meta: dict[str, Any]) -> nn.Module:
    """The model a checkpoint's ``meta`` describes (weights not loaded)."""
    from detseg.models.zoo import create_model

    if "model" not in meta:
        raise ValueError("the checkpoint names no model (meta['model'] is missing)")
    return create_model(meta["model"], **dict(meta.get("model_kwargs", {})))


def load_model(weights: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The trained model of a checkpoint (or run folder), in eval mode, and its ``meta``."""
    state = load_checkpoint(weights, map_location=device)
    meta = dict(state.get("meta", {}))
    model = build_model(meta)
    model.load_state_dict(inference_weights(state))
    return model.to(device).eval(), meta


def class_to_value_table(meta: dict[str, Any]) -> np.ndarray:
    """Lookup ``class index -> the data set's pixel value`` (the spec's ``values`` inverted).

    Without a value mapping a class is written as its index.
    """
    num_classes = len(meta["classes"])
    table = np.arange(num_classes, dtype=np.int64)
    values = meta.get("values") or {}
    for raw, cls in sorted(values.items(), reverse=True):  # the smallest raw value wins when several map
        if 0 <= int(cls) < num_classes:
            table[int(cls)] = int(raw)
    return table.astype(np.uint8 if table.max(initial=0) < 256 else np.uint16)


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Starts of ``tile``-long windows covering ``length``, sharing at least ``overlap`` (a fraction)."""
    if length <= tile:
        return [0]
    stride = max(1, int(tile * (1.0 - overlap)))
    n = math.ceil((length - tile) / stride) + 1
    # Spread the windows evenly so the last one ends exactly at the border.
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


@torch.no_grad()
def segment_probabilities(
    model: nn.Module, image: torch.Tensor, tile: int | None = None, overlap: float = 0.25, batch_size: int = 4
) -> torch.Tensor:
    """Class probabilities ``[K, H, W]`` of one float image ``[C, H, W]`` in [0, 1].

    With ``tile``, an image larger than it is cut into overlapping ``tile`` x ``tile`` windows whose
    probabilities are averaged where they overlap (so window borders, where the network sees little
    context, weigh no more than window centres of the neighbours).
    """
    device = next(model.parameters()).device
    _, h, w = image.shape
    if tile is None or (h <= tile and w <= tile):
        return class_logits(model(image[None].to(device)).float())[0].softmax(0).cpu()
    th, tw = min(tile, h), min(tile, w)
    windows = [(y, x) for y in tile_starts(h, th, overlap) for x in tile_starts(w, tw, overlap)]
    total = None
    count = torch.zeros(1, h, w)
    for i in range(0, len(windows), batch_size):
        chunk = windows[i : i + batch_size]
        batch = torch.stack([image[:, y : y + th, x : x + tw] for y, x in chunk]).to(device)
        probs = class_logits(model(batch).float()).softmax(1).cpu()
        if total is None:
            total = torch.zeros(probs.shape[1], h, w)
        for (y, x), p in zip(chunk, probs, strict=True):
            total[:, y : y + th, x : x + tw] += p
            count[:, y : y + th, x : x + tw] += 1
    return total / count


def _sources(source: str | Path) -> list[Path]:
    from detseg.data.masks import IMAGE_EXTENSIONS, list_images

    source = Path(source)
    if source.is_dir():
        images = list_images(source)
        if not images:
            raise ValueError(f"{source}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
        return images
    if not source.is_file():
        raise FileNotFoundError(f"image or folder not found: {source}")
    return [source]


def _read(path: Path, channels: int) -> tuple[np.ndarray, torch.Tensor]:
    from detseg.data.masks import read_image

    array = read_image(path, channels=channels)  # uint8 [H, W, C]
    tensor = torch.from_numpy(array).permute(2, 0, 1).float().div(255.0)
    return array, tensor


def predict(
    weights: str | Path,
    source: str | Path,
    out: str | Path,
    device: str = "cpu",
    tile: int | None = None,
    overlap: float = 0.25,
    score_threshold: float = 0.3,
    tta: str | None = None,
) -> dict[str, Any]:
    """Run a saved model on an image or a folder of images; returns a summary (files written, counts).
    ``tta``: segmentation test-time augmentation, "hflip", "flips" or "d4" (:mod:`detseg.engine.tta`)."""
    model, meta = load_model(weights, device)
    model = with_tta(model, tta, meta.get("task", "segment"))
    images = _sources(source)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if meta.get("task") == "detect":
        return predict_detection(model, meta, images, out, score_threshold)
    size = meta.get("img_size")
    return predict_segmentation(model, meta, images, out, tile or size, overlap)


def predict_segmentation(
    model: nn.Module,
    meta: dict[str, Any],
    images: list[Path],
    out: Path,
    tile: int | None,
    overlap: float = 0.25,
) -> dict[str, Any]:
    from PIL import Image

    from detseg.viz.draw import overlay_mask, save_image

    table = class_to_value_table(meta)
    channels = int(meta.get("channels", 3))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in _iter(images, "predict"):
        array, tensor = _read(path, channels)
        classes = segment_probabilities(model, tensor, tile, overlap).argmax(0).numpy()
        target = out / f"{path.stem}.png"
        Image.fromarray(table[classes]).save(target)
        save_image(out / "overlay" / f"{path.stem}.png", overlay_mask(array, classes, len(meta["classes"])))
        written.append(target)
    return {"task": "segment", "images": len(images), "masks": [str(p) for p in written]}


@torch.no_grad()
def predict_detection(
    model: nn.Module, meta: dict[str, Any], images: list[Path], out: Path, score_threshold: float = 0.3
) -> dict[str, Any]:
    from detseg.data.textboxes import write_text_boxes
    from detseg.viz.draw import draw_detections, save_image

    names = list(meta["classes"])
    # COCO category ids: the data set's own when it had them, else 1..K.
    category_ids = list(meta.get("category_ids") or range(1, len(names) + 1))
    channels = int(meta.get("channels", 3))
    device = next(model.parameters()).device
    out.mkdir(parents=True, exist_ok=True)
    results, image_entries, drawn = [], [], 0
    for image_id, path in enumerate(_iter(images, "predict"), start=1):
        array, tensor = _read(path, channels)
        output = model([tensor.to(device)])[0]
        boxes, labels, scores = (output[k].cpu() for k in ("boxes", "labels", "scores"))
        image_entries.append(
            {"id": image_id, "file_name": path.name, "height": array.shape[0], "width": array.shape[1]}
        )
        rows = []
        for box, label, score in zip(boxes.tolist(), labels.tolist(), scores.tolist(), strict=True):
            x1, y1, x2, y2 = box
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(category_ids[label]),
                    "bbox": [round(v, 2) for v in (x1, y1, x2 - x1, y2 - y1)],
                    "score": round(score, 5),
                }
            )
            if score >= score_threshold:
                rows.append({"name": names[label], "score": round(score, 5), "box": box})
        keep = scores >= score_threshold
        drawn += int(keep.sum())
        save_image(
            out / f"{path.stem}.png", draw_detections(array, boxes[keep], labels[keep], names, scores[keep])
        )
        write_text_boxes(out / "labels" / f"{path.stem}.txt", rows)
    (out / "results.json").write_text(json.dumps(results))
    categories = [{"id": int(i), "name": n} for i, n in zip(category_ids, names, strict=True)]
    (out / "images.json").write_text(
        json.dumps({"images": image_entries, "categories": categories}, indent=1)
    )
    return {"task": "detect", "images": len(images), "detections": len(results), "drawn": drawn}


def _iter(items: list[Path], desc: str) -> Iterator[Path]:
    import sys

    if not sys.stderr.isatty():
        return iter(items)
    from tqdm import tqdm

    return iter(tqdm(items, desc=desc, leave=False))
