"""Small checkpoints and images for the export tests (no training: seeded weights whose outputs differ
from box to box and pixel to pixel, so that equal outputs mean something)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from detseg.engine.checkpoint import save_checkpoint
from detseg.models.zoo import create_model, model_info


def spread_weights(model: nn.Module, seed: int = 0) -> nn.Module:
    """Variance-keeping random weights (std 1/sqrt(fan-in), biases std 0.2): a random network whose
    scores and logits vary from one input to the next (a fresh detector's head gives every box the same
    score, which makes "the same detections" untestable)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) / math.sqrt(fan_in))
                if module.bias is not None:
                    module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=generator))
    return model


def make_checkpoint(
    folder: Path, name: str, classes: list[str], img_size: int | None = None, values: dict | None = None,
    **model_kwargs,
) -> Path:
    """``folder/best.pt``: a detseg checkpoint of ``name`` as ``detseg train`` writes it (its meta)."""
    info = model_info(name)
    model = spread_weights(create_model(name, num_classes=len(classes), **model_kwargs)).eval()
    meta = {
        "task": info.task,
        "model": name,
        "model_kwargs": {"num_classes": len(classes), **model_kwargs},
        "classes": list(classes),
        "values": values or {},
        "ignore_index": 255,
        "channels": 3,
        "img_size": img_size or info.input_size[-1],
        "loss": "ce" if info.task == "segment" else "",
    }
    return save_checkpoint({"model": model.state_dict(), "meta": meta}, Path(folder) / "best.pt")


def write_images(folder: Path, sizes: list[tuple[int, int]], seed: int = 0) -> Path:
    """Smooth random RGB images (noise upsampled) of the given (height, width), as PNGs."""
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(sizes):
        small = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
        image = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        Image.fromarray(image).save(folder / f"img{i}.png")
    return folder
