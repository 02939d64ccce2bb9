"""Per-image timing of prediction, reported as Ultralytics users read it.

``Speed: 1.9ms preprocess, 12.4ms inference, 0.7ms postprocess per image at 256x256`` and
``OUT/speed.json`` with the medians. Preprocess: reading, decoding and converting one image (timed in
the loader's workers when there are some); inference: the model call (for detectors torchvision's own
resize and NMS, which are inside the model and inside the ONNX graph alike), divided over the batch;
postprocess: softmax, tile merging, argmax, mapping to the data set's values, boxes to COCO results.
Writing files and drawing are not counted.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch


class SpeedMeter:
    """Collects per-image milliseconds of each stage; ``summary()`` gives their medians."""

    STAGES = ("preprocess", "inference", "postprocess")

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.times: dict[str, list[float]] = {s: [] for s in self.STAGES}
        self.sizes: Counter[tuple[int, int]] = Counter()
        self.cuda = str(device).startswith("cuda") and torch.cuda.is_available()
        self.start = time.perf_counter()

    def now(self) -> float:
        """A timestamp (after the GPU's queued work, on CUDA)."""
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def add(self, stage: str, seconds: float, images: int = 1) -> None:
        """``seconds`` spent on ``images`` images: each counts ``seconds / images``."""
        per_image = 1000.0 * seconds / max(images, 1)
        self.times[stage].extend([per_image] * max(images, 1))

    def add_size(self, height: int, width: int) -> None:
        self.sizes[(int(height), int(width))] += 1

    def summary(self, **extra: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            f"{s}_ms": round(statistics.median(v), 3) if v else None for s, v in self.times.items()
        }
        n = len(self.times["inference"])
        size = self.sizes.most_common(1)[0][0] if self.sizes else None
        out["image_size"] = list(size) if size else None
        out["images"] = n
        wall = time.perf_counter() - self.start
        out["images_per_second"] = round(n / wall, 3) if wall > 0 else None
        out.update(extra)
        return out


def speed_line(summary: dict[str, Any]) -> str:
    """``Speed: 1.9ms preprocess, 12.4ms inference, 0.7ms postprocess per image at 256x256 (...)``."""

    def ms(key: str) -> str:
        value = summary.get(key)
        return "-" if value is None else f"{value:.1f}ms"

    size = summary.get("image_size")
    at = f" at {size[0]}x{size[1]}" if size else ""
    how = ", ".join(f"{summary[k]}" if k != "batch_size" else f"batch {summary[k]}"
                    for k in ("backend", "device", "batch_size") if summary.get(k) is not None)
    return (f"Speed: {ms('preprocess_ms')} preprocess, {ms('inference_ms')} inference, "
            f"{ms('postprocess_ms')} postprocess per image{at}" + (f" ({how})" if how else ""))


def write_speed(path: str | Path, summary: dict[str, Any]) -> Path:
    path = Path(path)
    path.write_text(json.dumps(summary, indent=1))
    return path
