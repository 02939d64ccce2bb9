"""Inference for both tasks, one :class:`~detseg.engine.results.Results` per image: :func:`iter_results`
is what :meth:`detseg.Model.predict` yields, and ``detseg predict`` (:func:`predict`) is a loop over
it (:func:`save_results`), so the command line and the API draw and write the same files.

Segmentation: logits over sliding tiles of the training size (overlapping, probabilities averaged)
for images larger than it; the class-index mask is written as ``<out>/<stem>.png`` with the spec's
pixel values (membrane: class 0 -> 0, class 1 -> 255), and a colour overlay as
``<out>/overlay/<stem>.png``.

Detection: ``<out>/<stem>.png`` with boxes, names and scores drawn, ``<out>/labels/<stem>.txt`` text box
files (``class score x1 y1 x2 y2``), and ``<out>/results.json`` in COCO's results format with
``<out>/images.json`` naming the image ids. A mask model (Mask R-CNN) also draws each instance's mask
in its box's colour and writes each detection's mask (cut at 0.5) as COCO RLE ``segmentation``.
With ``tile``, a detector runs on overlapping slices whose detections are merged
(:mod:`detseg.engine.slicing`).

Every run: batches from a DataLoader (:mod:`detseg.engine.sources`; folders of any size, results.json
written as it goes), a video source (``clip.mp4``: ``<out>/clip.mp4`` annotated, one result per frame
named ``clip_000001.png``...), and the per-image timing in ``<out>/speed.json`` (:mod:`detseg.engine.speed`).
Models come from :func:`detseg.engine.loader.load` (``.onnx`` files run with ONNX Runtime).
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

from detseg.engine.loader import build_model, load_model  # noqa: F401 (their old home)
from detseg.engine.results import SCORE_THRESHOLD, Results
from detseg.engine.sources import Frame
from detseg.engine.speed import SpeedMeter
from detseg.engine.tasks import class_logits
from detseg.engine.tta import with_tta


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


def _segment_batch(
    model: nn.Module, batch: list[Frame], tile: int | None, overlap: float, device: torch.device,
    meter: SpeedMeter | None, tile_batch: int | None = None,
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
            probs = [segment_probabilities(model, f.tensor, tile, overlap, tile_batch or 4, clock=clock)
                     for f in batch]  # fmt: skip
    return probs, clock, start


@torch.no_grad()
def iter_results(
    model: nn.Module,
    meta: dict[str, Any],
    batches: Iterable[list[Frame]],
    score_threshold: float = SCORE_THRESHOLD,
    keep_all: bool = True,
    tile: int | None = None,
    overlap: float = 0.25,
    meter: SpeedMeter | None = None,
    tile_batch: int | None = None,
) -> Iterator[Results]:
    """One :class:`Results` per frame of ``batches``, as the model gives them (``model`` already wrapped
    for test-time augmentation). Detectors: every detection the model returns (``keep_all``) or only
    those scoring ``score_threshold`` or more, which pictures and text box files show either way.
    Segmenters: probabilities over ``tile`` windows (default: the training size; ``tile_batch`` windows
    per model call, default 4) merged, argmax. A detector slices when it is wrapped for it
    (:func:`detseg.engine.slicing.with_slicing`; ``tile`` here is the segmenters').
    Each result's ``speed`` (and ``meter``, when given) has its milliseconds per stage."""
    task = meta.get("task", "segment")
    names = list(meta.get("classes") or [])
    common = dict(names=names, task=task, category_ids=list(meta.get("category_ids") or []),
                  score_threshold=score_threshold)  # fmt: skip
    if task == "segment":
        common["values"] = class_to_value_table(meta)
    tile = tile or meta.get("img_size")
    tile = tile[-1] if isinstance(tile, list | tuple) else tile
    device = model_device(model)
    meter = meter or SpeedMeter(device)
    for batch in batches:
        start = meter.now()
        clock = _Clock(meter)
        if task in ("detect", "instance"):
            outputs = clock.call(model, [f.tensor.to(device, non_blocking=True) for f in batch])
        elif task == "classify":
            outputs = [clock.call(model, f.tensor[None].to(device))[0].float().softmax(0) for f in batch]
            outputs = [probs.cpu() for probs in outputs]
        else:
            outputs, clock, start = _segment_batch(model, batch, tile, overlap, device, meter, tile_batch)
        post = meter.now() - start - clock.seconds  # segmenters: softmax and tile merging
        results = []
        for frame, output in zip(batch, outputs, strict=True):
            t0 = meter.now()
            result = Results(image=frame.array, path=frame.path, file_name=frame.name, **common)
            if task in ("detect", "instance"):
                _detections(result, output, None if keep_all else score_threshold)
            elif task == "classify":
                result.probs = output
            else:
                result.masks = output.argmax(0)
            post += meter.now() - t0
            results.append(result)
        n = len(batch)
        for frame, result in zip(batch, results, strict=True):
            h, w = frame.array.shape[:2]
            meter.add("preprocess", frame.seconds)
            meter.add_size(*((min(h, tile), min(w, tile)) if task == "segment" and tile else (h, w)))
            result.speed = {"preprocess": 1000.0 * frame.seconds, "inference": 1000.0 * clock.seconds / n,
                            "postprocess": 1000.0 * post / n}  # fmt: skip
        meter.add("inference", clock.seconds, n)
        meter.add("postprocess", post, n)
        yield from results


def _detections(result: Results, output: dict[str, torch.Tensor], cut: float | None) -> None:
    """A detector's output for one image into ``result`` (only scores >= ``cut`` when given)."""
    boxes, labels, scores = (output[k].cpu() for k in ("boxes", "labels", "scores"))
    masks = output.get("masks")
    if masks is not None:  # Mask R-CNN: [N, 1, H, W] probabilities, cut at 0.5
        masks = masks.cpu()
        masks = (masks[:, 0] if masks.dim() == 4 else masks).ge(0.5)
    if cut is not None:
        keep = scores >= cut
        boxes, labels, scores = boxes[keep], labels[keep], scores[keep]
        masks = masks[keep] if masks is not None else None
    result.boxes, result.labels, result.scores, result.instance_masks = boxes, labels, scores, masks


def predict(
    weights: str | Path,
    source: str | Path,
    out: str | Path,
    device: str = "cpu",
    tile: int | None = None,
    overlap: float = 0.25,
    score_threshold: float = SCORE_THRESHOLD,
    tta: str | None = None,
    batch_size: int = 1,
    workers: int = 0,
    save_frames: bool = False,
    classes: list[str] | None = None,
    img_size: int | None = None,
    model_name: str | None = None,
    pretrained: Any = None,
    full_image: bool = False,
    merge: str | None = None,
    match: str | None = None,
    merge_threshold: float | None = None,
    tile_batch: int | None = None,
) -> dict[str, Any]:
    """Run a saved model (checkpoint, run folder or ``.onnx``) on an image, a folder or a video; returns
    a summary (files written, counts, ``speed``: the medians written to ``<out>/speed.json``).

    ``tta``: segmentation test-time augmentation, "hflip", "flips" or "d4" (:mod:`detseg.engine.tta`).
    ``batch_size`` images per model call (``workers`` loader processes decode ahead); ``save_frames``:
    a video's annotated frames also as PNGs in ``<out>/frames``. ``classes``/``img_size``: for an ONNX
    file without detseg's metadata. ``model_name`` + ``pretrained`` instead of ``weights``: a registered
    model with pre-trained weights used as is (:func:`detseg.engine.loader.load`), its classes named.
    Detectors with ``tile``: sliced inference, ``tile_batch`` slices per model call, ``full_image``,
    ``merge``, ``match``, ``merge_threshold`` as :func:`detseg.engine.slicing.with_slicing` takes them
    (refused for other models); segmenters: ``tile_batch`` windows per model call.
    """
    from detseg.engine.loader import load
    from detseg.engine.slicing import with_slicing
    from detseg.engine.sources import open_source
    from detseg.engine.speed import speed_line, write_speed

    if model_name is not None:
        model, meta = load(model_name, pretrained, device)
        weights = meta["weights"]
    else:
        model, meta = load(weights, None, device, classes, img_size)
    task = meta.get("task", "segment")
    model = with_slicing(model, task, tile, overlap, full_image, merge, match, merge_threshold, tile_batch)
    if task == "classify":  # predictions.json + contact sheets (detseg.engine.classify_predict)
        from detseg.engine.classify_predict import predict_classification

        size = int(meta.get("img_size") or 224)
        return predict_classification(model, source, out, meta.get("classes"), size, batch_size=batch_size)
    model = with_tta(model, tta, task)
    out = Path(out)
    pin = str(device).startswith("cuda") and torch.cuda.is_available()
    batches, total, video = open_source(source, int(meta.get("channels", 3)), batch_size, workers, pin)
    meter = SpeedMeter(device)
    video_out = {}
    if video is not None:
        video_out = dict(video=out / f"{Path(source).stem}.mp4", fps=video.fps, save_frames=save_frames)
    results = iter_results(model, meta, _progress(batches, total, "predict"), score_threshold,
                           tile=tile, overlap=overlap, meter=meter, tile_batch=tile_batch)  # fmt: skip
    summary = save_results(results, meta, out, **video_out)
    backend = {".onnx": "onnxruntime", ".xml": "openvino"}.get(Path(str(weights)).suffix.lower(), "pytorch")
    speed = meter.summary(backend=backend, device=str(device), batch_size=batch_size, weights=str(weights))
    write_speed(out / "speed.json", speed)
    summary.update(speed=speed, speed_line=speed_line(speed))
    if video:
        summary["video"] = str(video_out["video"])
    return summary


def save_results(
    results: Iterable[Results],
    meta: dict[str, Any],
    out: Path,
    video: Path | None = None,
    fps: float | None = None,
    save_frames: bool = False,
) -> dict[str, Any]:
    """Each result's files (:meth:`Results.save`), a contact sheet of the first pictures, and for
    detectors a streamed COCO ``results.json`` (every detection, :meth:`Results.to_coco`) with
    ``images.json``; a video source's pictures go into ``video`` (and ``<out>/frames`` with
    ``save_frames``). Returns a summary of what was written."""
    task = meta.get("task", "segment")
    detect = task in ("detect", "instance")
    out.mkdir(parents=True, exist_ok=True)
    outputs = _Outputs(out, video, fps, save_frames)
    if detect:
        names = list(meta["classes"])
        ids = list(meta.get("category_ids") or range(1, len(names) + 1))
        categories = [{"id": int(i), "name": n} for i, n in zip(ids, names, strict=True)]
        rows = _JsonArray(out / "results.json")
        head = '{"categories": ' + json.dumps(categories) + ',\n"images": ['
        image_entries = _JsonArray(out / "images.json", head, "]}")
    written, drawn, count = [], 0, 0
    try:
        for count, result in enumerate(results, 1):
            picture = result.save(out, picture=outputs.writer is None)
            picture = picture if picture is not None else result.plot()
            outputs.add("" if detect else "overlay", result.stem, picture)
            if detect:
                h, w = result.image.shape[:2]
                image_entries.add({"id": count, "file_name": result.file_name, "height": h, "width": w})
                for row in result.to_coco(image_id=count):
                    rows.add(row)
                drawn += len(result.text_rows())
            elif len(written) < 1000:
                written.append(str(out / f"{result.stem}.png"))
    finally:
        outputs.close()
        if detect:
            rows.close()
            image_entries.close()
    if detect:
        return {"task": "detect", "images": count, "detections": rows.count, "drawn": drawn}
    return {"task": task, "images": count, "masks": written}


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
    meta = {**meta, "task": "segment"}
    batches = _batches(images, int(meta.get("channels", 3)))
    results = iter_results(model, meta, batches, tile=tile, overlap=overlap, meter=meter)
    return save_results(results, meta, out, video, fps, save_frames)


def predict_detection(
    model: nn.Module,
    meta: dict[str, Any],
    images: Iterable[Any],
    out: Path,
    score_threshold: float = SCORE_THRESHOLD,
    meter: SpeedMeter | None = None,
    video: Path | None = None,
    fps: float | None = None,
    save_frames: bool = False,
) -> dict[str, Any]:
    """Drawn boxes, text box files, a streamed COCO ``results.json`` and ``images.json``."""
    meta = {**meta, "task": meta.get("task") if meta.get("task") in ("detect", "instance") else "detect"}
    batches = _batches(images, int(meta.get("channels", 3)))
    results = iter_results(model, meta, batches, score_threshold, meter=meter)
    return save_results(results, meta, out, video, fps, save_frames)


def _batches(images: Iterable[Any], channels: int) -> Iterator[list[Frame]]:
    """Accept what callers pass: batches of frames (from :mod:`detseg.engine.sources`) or image paths."""
    from detseg.engine.sources import image_batches

    items = list(images) if isinstance(images, list | tuple) else images
    if isinstance(items, list) and (not items or isinstance(items[0], str | Path)):
        yield from image_batches([Path(p) for p in items], channels)
        return
    yield from items


class _Outputs:
    """Where pictures go besides :meth:`Results.save`: a video (and optional frames), and the first
    ``SHEET`` pictures onto ``<out>/[overlay/]contact_sheet.png``."""

    SHEET = 16

    def __init__(self, out: Path, video: Path | None, fps: float | None, save_frames: bool) -> None:
        from detseg.engine.sources import VideoWriter

        self.out, self.save_frames = out, save_frames
        self.writer = VideoWriter(video, fps or 25.0) if video is not None else None
        self.sheet: list[tuple[str, str, np.ndarray]] = []

    def add(self, subfolder: str, stem: str, rgb: np.ndarray) -> None:
        from detseg.viz.draw import save_image, thumbnail

        if self.writer is None:
            if len(self.sheet) < self.SHEET:
                self.sheet.append((subfolder, stem, thumbnail(rgb)))
            return
        self.writer.write(rgb)
        if self.save_frames:
            save_image(self.out / "frames" / f"{stem}.png", rgb)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.sheet:
            from detseg.viz.draw import contact_sheet, save_image

            _, titles, pictures = zip(*self.sheet, strict=True)
            save_image(self.out / self.sheet[0][0] / "contact_sheet.png", contact_sheet(pictures, titles))


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
