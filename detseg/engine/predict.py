"""Inference from a saved run (a checkpoint, or its ONNX export), for both tasks, writing results in the
data set's own terms.

Segmentation: logits over sliding tiles of the training size (overlapping, probabilities averaged)
for images larger than it; the class-index mask is written as ``<out>/<stem>.png`` with the spec's
pixel values (membrane: class 0 -> 0, class 1 -> 255), and a colour overlay as
``<out>/overlay/<stem>.png``.

Detection: ``<out>/<stem>.png`` with boxes, names and scores drawn, ``<out>/labels/<stem>.txt`` text box
files (``class score x1 y1 x2 y2``), and ``<out>/results.json`` in COCO's results format with
``<out>/images.json`` naming the image ids. A mask model (Mask R-CNN) also draws each instance's mask
in its box's colour and writes each detection's mask (cut at 0.5) as COCO RLE ``segmentation``.

Every run: batches from a DataLoader (:mod:`detseg.engine.sources`; folders of any size, results.json
written as it goes), a video source (``clip.mp4``: ``<out>/clip.mp4`` annotated, one result per frame
named ``clip_000001.png``...), and the per-image timing in ``<out>/speed.json`` (:mod:`detseg.engine.speed`).
Weights ending in ``.onnx`` run with ONNX Runtime (:mod:`detseg.engine.onnx_runtime`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from detseg.engine.checkpoint import inference_weights, load_checkpoint
from detseg.engine.sources import Frame
from detseg.engine.speed import SpeedMeter
from detseg.engine.tasks import class_logits
from detseg.engine.tta import with_tta


def build_model(meta: dict[str, Any]) -> nn.Module:
    """The model a checkpoint's ``meta`` describes (weights not loaded)."""
    from detseg.models.zoo import create_model

    if "model" not in meta:
        raise ValueError("the checkpoint names no model (meta['model'] is missing)")
    kwargs = dict(meta.get("model_kwargs", {}))
    if meta.get("builder_pretrained"):
        from detseg.models.weights import WeightsDeferred

        # The architecture made for pre-trained weights (frozen BatchNorm...), nothing loaded: the
        # checkpoint holds every weight.
        kwargs["pretrained"] = WeightsDeferred()
    return create_model(meta["model"], **kwargs)


def load_model(
    weights: str | Path,
    device: str | torch.device = "cpu",
    classes: list[str] | None = None,
    img_size: int | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The trained model of a checkpoint (or run folder), in eval mode, and its ``meta``.

    An ``.onnx`` file gives an :class:`~detseg.engine.onnx_runtime.OnnxModel` called the same way; ``classes``
    and ``img_size`` stand in for the metadata of an ONNX file that detseg did not write.
    """
    if Path(weights).suffix.lower() == ".onnx":
        from detseg.engine.onnx_runtime import load_onnx

        return load_onnx(weights, str(device), classes, img_size)
    state = load_checkpoint(weights, map_location=device)
    meta = dict(state.get("meta", {}))
    model = build_model(meta)
    model.load_state_dict(inference_weights(state))
    return model.to(device).eval(), meta


def model_device(model: nn.Module) -> torch.device:
    """Where ``model`` runs: its parameters' device, or an ONNX model's ``device`` (CPU tensors)."""
    for module in model.modules():
        device = getattr(module, "device", None)
        if isinstance(device, torch.device):
            return device
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def class_to_value_table(meta: dict[str, Any]) -> np.ndarray:
    """Lookup ``class index -> the data set's pixel value`` (the spec's ``values`` inverted).

    Without a value mapping a class is written as its index.
    """
    num_classes = len(meta["classes"])
    table = np.arange(num_classes, dtype=np.int64)
    values = meta.get("values") or {}
    for raw, cls in sorted(values.items(), key=lambda kv: int(kv[0]), reverse=True):
        if 0 <= int(cls) < num_classes:  # the smallest raw value wins when several map
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


class _Clock:
    """Sums the seconds spent in model calls (``meter`` may be None: then nothing is timed)."""

    def __init__(self, meter: SpeedMeter | None) -> None:
        self.meter, self.seconds = meter, 0.0

    def call(self, model: nn.Module, x: Any) -> Any:
        if self.meter is None:
            return model(x)
        start = self.meter.now()
        out = model(x)
        self.seconds += self.meter.now() - start
        return out


@torch.no_grad()
def segment_probabilities(
    model: nn.Module,
    image: torch.Tensor,
    tile: int | None = None,
    overlap: float = 0.25,
    batch_size: int = 4,
    clock: _Clock | None = None,
) -> torch.Tensor:
    """Class probabilities ``[K, H, W]`` of one float image ``[C, H, W]`` in [0, 1].

    With ``tile``, an image larger than it is cut into overlapping ``tile`` x ``tile`` windows whose
    probabilities are averaged where they overlap (so window borders, where the network sees little
    context, weigh no more than window centres of the neighbours). ``clock`` sums the model's time.
    """
    clock = clock or _Clock(None)
    device = model_device(model)
    _, h, w = image.shape
    if tile is None or (h <= tile and w <= tile):
        return class_logits(clock.call(model, image[None].to(device)).float())[0].softmax(0).cpu()
    th, tw = min(tile, h), min(tile, w)
    windows = [(y, x) for y in tile_starts(h, th, overlap) for x in tile_starts(w, tw, overlap)]
    total = None
    count = torch.zeros(1, h, w)
    for i in range(0, len(windows), batch_size):
        chunk = windows[i : i + batch_size]
        batch = torch.stack([image[:, y : y + th, x : x + tw] for y, x in chunk]).to(device)
        probs = class_logits(clock.call(model, batch).float()).softmax(1).cpu()
        if total is None:
            total = torch.zeros(probs.shape[1], h, w)
        for (y, x), p in zip(chunk, probs, strict=True):
            total[:, y : y + th, x : x + tw] += p
            count[:, y : y + th, x : x + tw] += 1
    return total / count


def _sources(source: str | Path) -> list[Path]:
    from detseg.engine.sources import list_sources

    return list_sources(source)


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
    batch_size: int = 1,
    workers: int = 0,
    save_frames: bool = False,
    classes: list[str] | None = None,
    img_size: int | None = None,
    model_name: str | None = None,
    pretrained: Any = None,
) -> dict[str, Any]:
    """Run a saved model (checkpoint, run folder or ``.onnx``) on an image, a folder or a video; returns
    a summary (files written, counts, ``speed``: the medians written to ``<out>/speed.json``).

    ``tta``: segmentation test-time augmentation, "hflip", "flips" or "d4" (:mod:`detseg.engine.tta`).
    ``batch_size`` images per model call (``workers`` loader processes decode ahead); ``save_frames``:
    a video's annotated frames also as PNGs in ``<out>/frames``. ``classes``/``img_size``: for an ONNX
    file without detseg's metadata. ``model_name`` + ``pretrained`` instead of ``weights``: a registered
    model with pre-trained weights used as is (:mod:`detseg.engine.pretrained`), its classes named.
    """
    from detseg.engine.sources import Video, image_batches, is_video
    from detseg.engine.speed import speed_line, write_speed

    if model_name is not None:
        from detseg.engine.pretrained import load_pretrained_model

        model, meta = load_pretrained_model(model_name, pretrained, device)
        weights = meta["weights"]
    else:
        model, meta = load_model(weights, device, classes, img_size)
    task = meta.get("task", "segment")
    if task == "classify":  # predictions.json + contact sheets (detseg.engine.classify_predict)
        from detseg.engine.classify_predict import predict_classification

        size = int(meta.get("img_size") or 224)
        return predict_classification(model, source, out, meta.get("classes"), size, batch_size=batch_size)
    model = with_tta(model, tta, task)
    out = Path(out)
    channels = int(meta.get("channels", 3))
    if is_video(source):
        video = Video(source, channels)
        batches: Iterable[list[Frame]] = video.batches(batch_size)
        total, stem, fps = len(video), Path(source).stem, video.fps
    else:
        paths = _sources(source)
        pin = str(device).startswith("cuda") and torch.cuda.is_available()
        batches = image_batches(paths, channels, batch_size, workers, pin_memory=pin)
        total, stem, fps = len(paths), None, None
    out.mkdir(parents=True, exist_ok=True)
    meter = SpeedMeter(device)
    video_out = dict(video=out / f"{stem}.mp4", fps=fps, save_frames=save_frames) if stem else {}
    batches = _progress(batches, total, "predict")
    if task in ("detect", "instance"):
        summary = predict_detection(model, meta, batches, out, score_threshold, meter=meter, **video_out)
    else:
        summary = predict_segmentation(
            model, meta, batches, out, tile or meta.get("img_size"), overlap, meter=meter, **video_out
        )
    backend = "onnxruntime" if str(weights).lower().endswith(".onnx") else "pytorch"
    speed = meter.summary(backend=backend, device=str(device), batch_size=batch_size, weights=str(weights))
    write_speed(out / "speed.json", speed)
    summary.update(speed=speed, speed_line=speed_line(speed))
    if stem:
        summary["video"] = str(video_out["video"])
    return summary


def _batches(images: Iterable[Any], channels: int) -> Iterator[list[Frame]]:
    """Accept what callers pass: batches of frames (from :mod:`detseg.engine.sources`) or image paths."""
    from detseg.engine.sources import image_batches

    items = list(images) if isinstance(images, list | tuple) else images
    if isinstance(items, list) and (not items or isinstance(items[0], str | Path)):
        yield from image_batches([Path(p) for p in items], channels)
        return
    yield from items


class _Outputs:
    """Where annotated images go: ``<out>/<stem>.png`` per image, or a video (and optional frames)."""

    def __init__(self, out: Path, video: Path | None, fps: float | None, save_frames: bool) -> None:
        from detseg.engine.sources import VideoWriter

        self.out, self.save_frames = out, save_frames
        self.writer = VideoWriter(video, fps or 25.0) if video is not None else None
        self.sheet: list[tuple[str, str, np.ndarray]] = []  # the first SHEET pictures, small

    SHEET = 16  # pictures on <out>/[overlay/]contact_sheet.png

    def image(self, subfolder: str, name: str, rgb: np.ndarray) -> None:
        from detseg.viz.draw import save_image, thumbnail

        if self.writer is None:
            save_image(self.out / subfolder / f"{Path(name).stem}.png", rgb)
            if len(self.sheet) < self.SHEET:
                self.sheet.append((subfolder, Path(name).stem, thumbnail(rgb)))
            return
        self.writer.write(rgb)
        if self.save_frames:
            save_image(self.out / "frames" / f"{Path(name).stem}.png", rgb)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.sheet:
            from detseg.viz.draw import contact_sheet, save_image

            _, titles, pictures = zip(*self.sheet, strict=True)
            save_image(self.out / self.sheet[0][0] / "contact_sheet.png", contact_sheet(pictures, titles))


def predict_segmentation(
    model: nn.Module,
    meta: dict[str, Any],
    images: Iterable[Any],
    out: Path,
    tile: int | None,
    overlap: float = 0.25,
    meter: SpeedMeter | None = None,
    video: Path | None = None,
    fps: float | None = None,
    save_frames: bool = False,
) -> dict[str, Any]:
    """Masks and overlays of ``images`` (paths, or batches of frames); see the module's docstring."""
    from PIL import Image

    from detseg.viz.draw import render_segmentation

    table = class_to_value_table(meta)
    channels = int(meta.get("channels", 3))
    out.mkdir(parents=True, exist_ok=True)
    outputs = _Outputs(out, video, fps, save_frames)
    tile = tile[-1] if isinstance(tile, list | tuple) else tile
    device = model_device(model)
    written = []
    try:
        for batch in _batches(images, channels):
            for frame in batch:
                if meter is not None:
                    meter.add("preprocess", frame.seconds)
            probs, clock, start = _segment_batch(model, batch, tile, overlap, device, meter)
            # Postprocess: softmax and tile merging (in _segment_batch, beside the model calls), then
            # argmax and the value mapping; writing and drawing are not counted.
            post = meter.now() - start - clock.seconds if meter is not None else 0.0
            for frame, p in zip(batch, probs, strict=True):
                t0 = meter.now() if meter is not None else 0.0
                classes = p.argmax(0).numpy()
                mask = table[classes]
                if meter is not None:
                    post += meter.now() - t0
                    h, w = frame.array.shape[:2]
                    meter.add_size(min(h, tile or h), min(w, tile or w))
                target = out / f"{Path(frame.name).stem}.png"
                Image.fromarray(mask).save(target)
                overlay = render_segmentation(frame.array, classes, meta["classes"])  # >= 512 px, legend
                outputs.image("overlay", frame.name, overlay)
                written.append(target)
            if meter is not None:
                meter.add("inference", clock.seconds, len(batch))
                meter.add("postprocess", post, len(batch))
    finally:
        outputs.close()
    return {"task": "segment", "images": len(written), "masks": [str(p) for p in written[:1000]]}


def _segment_batch(
    model: nn.Module, batch: list[Frame], tile: int | None, overlap: float, device: torch.device,
    meter: SpeedMeter | None,
) -> tuple[list[torch.Tensor], _Clock, float]:
    """Probabilities of each frame: one model call for a batch of equal-sized images within the tile,
    else image by image (tiles batched inside); also the clock and the start time (for the meter)."""
    clock = _Clock(meter)
    start = meter.now() if meter is not None else 0.0
    shapes = {tuple(f.tensor.shape) for f in batch}
    fits = tile is None or all(s[1] <= tile and s[2] <= tile for s in shapes)
    with torch.no_grad():
        if len(batch) > 1 and len(shapes) == 1 and fits:
            x = torch.stack([f.tensor for f in batch]).to(device, non_blocking=True)
            probs = list(class_logits(clock.call(model, x).float()).softmax(1).cpu())
        else:
            probs = [segment_probabilities(model, f.tensor, tile, overlap, clock=clock) for f in batch]
    return probs, clock, start


class _JsonArray:
    """A JSON array written element by element (nothing kept in memory)."""

    def __init__(self, path: Path, prefix: str = "[", suffix: str = "]") -> None:
        self.file = path.open("w")
        self.file.write(prefix)
        self.suffix, self.count = suffix, 0

    def add(self, item: Any) -> None:
        self.file.write(("," if self.count else "") + json.dumps(item))
        self.count += 1

    def close(self) -> None:
        self.file.write(self.suffix)
        self.file.close()


@torch.no_grad()
def predict_detection(
    model: nn.Module,
    meta: dict[str, Any],
    images: Iterable[Any],
    out: Path,
    score_threshold: float = 0.3,
    meter: SpeedMeter | None = None,
    video: Path | None = None,
    fps: float | None = None,
    save_frames: bool = False,
) -> dict[str, Any]:
    """Drawn boxes, text box files, a streamed COCO ``results.json`` and ``images.json``."""
    from detseg.data.coco import mask_to_rle
    from detseg.data.textboxes import write_text_boxes
    from detseg.viz.draw import render_detections
    from detseg.viz.instances import draw_instances

    names = list(meta["classes"])
    # COCO category ids: the data set's own when it had them, else 1..K.
    category_ids = list(meta.get("category_ids") or range(1, len(names) + 1))
    channels = int(meta.get("channels", 3))
    device = model_device(model)
    out.mkdir(parents=True, exist_ok=True)
    outputs = _Outputs(out, video, fps, save_frames)
    categories = [{"id": int(i), "name": n} for i, n in zip(category_ids, names, strict=True)]
    results = _JsonArray(out / "results.json")
    head = '{"categories": ' + json.dumps(categories) + ',\n"images": ['
    image_entries = _JsonArray(out / "images.json", head, "]}")
    drawn, image_id = 0, 0
    try:
        for batch in _batches(images, channels):
            if meter is not None:
                for frame in batch:
                    meter.add("preprocess", frame.seconds)
                    meter.add_size(*frame.array.shape[:2])
            clock = _Clock(meter)
            detections = clock.call(model, [f.tensor.to(device, non_blocking=True) for f in batch])
            for frame, output in zip(batch, detections, strict=True):
                image_id += 1
                t0 = meter.now() if meter is not None else 0.0
                boxes, labels, scores = (output[k].cpu() for k in ("boxes", "labels", "scores"))
                masks = _binary_masks(output.get("masks"))
                h, w = frame.array.shape[:2]
                image_entries.add({"id": image_id, "file_name": frame.name, "height": h, "width": w})
                rows = []
                triples = zip(boxes.tolist(), labels.tolist(), scores.tolist(), strict=True)
                for j, (box, label, score) in enumerate(triples):
                    x1, y1, x2, y2 = box
                    result = {
                        "image_id": image_id,
                        "category_id": int(category_ids[label]),
                        "bbox": [round(v, 2) for v in (x1, y1, x2 - x1, y2 - y1)],
                        "score": round(score, 5),
                    }
                    if masks is not None:
                        result["segmentation"] = mask_to_rle(masks[j])
                    results.add(result)
                    if score >= score_threshold:
                        rows.append({"name": names[label], "score": round(score, 5), "box": box})
                keep = scores >= score_threshold
                if meter is not None:  # postprocess: the outputs to results (drawing not counted)
                    meter.add("postprocess", meter.now() - t0)
                drawn += int(keep.sum())
                if masks is not None:
                    kept = keep.numpy()
                    drawn_image = draw_instances(
                        frame.array, boxes[keep], labels[keep], masks[kept], names, scores[keep]
                    )
                else:
                    drawn_image = render_detections(  # >= 512 px, captions above boxes, legend
                        frame.array, boxes[keep], labels[keep], names, scores[keep]
                    )
                outputs.image("", frame.name, drawn_image)
                write_text_boxes(out / "labels" / f"{Path(frame.name).stem}.txt", rows)
            if meter is not None:
                meter.add("inference", clock.seconds, len(batch))
    finally:
        outputs.close()
        results.close()
        image_entries.close()
    return {"task": "detect", "images": image_id, "detections": results.count, "drawn": drawn}


def _binary_masks(masks: torch.Tensor | None) -> np.ndarray | None:
    """Mask R-CNN's ``[N, 1, H, W]`` probabilities as ``uint8 [N, H, W]`` masks cut at 0.5 (None: none)."""
    if masks is None:
        return None
    masks = masks.cpu()
    return (masks[:, 0] if masks.dim() == 4 else masks).ge(0.5).numpy().astype(np.uint8)


def _progress(batches: Iterable[list[Frame]], total: int, desc: str) -> Iterator[list[Frame]]:
    """Batches through a tqdm bar counting images (so it shows images per second) on a terminal."""
    import sys

    if not sys.stderr.isatty():
        yield from batches
        return
    from tqdm import tqdm

    with tqdm(total=total or None, desc=desc, unit="img", leave=False) as bar:
        for batch in batches:
            yield batch
            bar.update(len(batch))


def _iter(items: list[Path], desc: str) -> Iterator[Path]:
    import sys

    if not sys.stderr.isatty():
        return iter(items)
    from tqdm import tqdm

    return iter(tqdm(items, desc=desc, leave=False))
