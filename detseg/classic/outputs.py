"""Files written by ``detseg classic`` in image mode: the result and an overlay per input image."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detseg.classic.clustering import kmeans_quantize
from detseg.classic.image import overlay, read_image, write_image
from detseg.classic.pipeline import Pipeline


def write_outputs(pipeline: Pipeline, path: str | Path, out_dir: str | Path) -> list[Path]:
    """Run ``pipeline`` on the image at ``path`` and write into ``out_dir``:

    - a mask: ``<stem>_mask.png`` (0/255) and ``<stem>_overlay.png`` (foreground tinted red);
    - edges (a Canny mask is a mask too): as a mask; a Sobel magnitude: ``<stem>_magnitude.png``
      scaled so that the largest magnitude is 255;
    - labels: ``<stem>_labels.png`` (uint8, or uint16 past 255 labels) and a colour overlay; a lone
      ``kmeans`` step also writes ``<stem>_quantized.png`` (each pixel its centroid's colour).
    Returns the written paths.
    """
    image = read_image(path)
    out_dir = Path(out_dir)
    stem = Path(path).stem
    result = pipeline(image)
    kind = pipeline.output_kind
    written = []

    def save(suffix: str, array: np.ndarray) -> None:
        target = out_dir / f"{stem}_{suffix}.png"
        write_image(target, array)
        written.append(target)

    if kind == "mask":
        save("mask", result)
        save("overlay", overlay(image, result))
    elif kind == "magnitude":
        peak = float(result.max())
        save("magnitude", np.clip(result * (255.0 / peak if peak > 0 else 0.0), 0, 255).astype(np.uint8))
    elif kind == "labels":
        save("labels", result.astype(np.uint8 if result.max() < 256 else np.uint16))
        save("overlay", overlay(image, result))
        if len(pipeline.steps) == 1 and pipeline.steps[0].name == "kmeans":
            save("quantized", kmeans_quantize(image, **pipeline.steps[0].params).quantized)
    else:
        save("image", result)
    return written
