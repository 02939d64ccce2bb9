"""Training defaults per model family: the recipe ``detseg train`` uses where the command line and the
spec say nothing (like timm's ``default_cfg`` and MMSegmentation's configs).

Each recipe was measured here (the figures and their commands are in docs/figures.md, generated from
detseg/zoo/measurements.json, and in docs/engine.md); a family without a measured recipe has none and
gets detseg's base defaults (:data:`detseg.engine.config.BASE_DEFAULTS`). Keys are
:data:`detseg.engine.config.TUNABLE` names. ``register_model(..., default_cfg=...)``
(:mod:`detseg.models.registry`) gives a model its own instead.
"""

from __future__ import annotations

import fnmatch
from typing import Any

# U-Net from scratch (no pre-trained encoder): the membrane recipe of docs/segmentation.md (AdamW with a
# short warm-up and a cosine decay; SGD at 0.01 with a poly decay learnt less there and on the shapes), and
# the README's main job (width 16, with --scale-range 1 1: val mIoU 0.870 and 0.859 in 4 minutes on 2 cores;
# two seeds of five stall there, which 1e-3 avoids at a cost to seed 0: see docs/figures.md).
UNET = {
    "optimizer": "adamw",
    "lr": 2e-3,
    "weight_decay": 1e-4,
    "schedule": "cosine",
    "warmup": 10,
    "batch_size": 4,
    "scale_range": (0.8, 1.25),
    "channels_last": True,
}
# U-Net decoder on an ImageNet-pretrained timm encoder (EfficientNet-Lite0 by default): fine-tuned whole,
# AdamW at 1e-3 with a short warm-up (benchmarks/accuracy_budget.py unet-lite0-shapes: 0.636 in 4 min).
TIMM_UNET = {
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "schedule": "cosine",
    "warmup": 20,
    "batch_size": 8,
    "scale_range": (0.75, 1.33),
    "channels_last": True,
}
# SSDLite from scratch: the recipe of benchmarks/accuracy_budget.py ssdlite-shapes.
SSDLITE = {
    "optimizer": "adamw",
    "lr": 3e-3,
    "weight_decay": 1e-4,
    "schedule": "cosine",
    "warmup": 100,
    "batch_size": 16,
    "ema": 0.99,
    "channels_last": True,
}
# R-FCN from scratch: benchmarks/accuracy_budget.py rfcn-shapes (the clipped gradient keeps the first
# steps of position-sensitive pooling finite).
RFCN = {
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "clip_grad": 10.0,
    "schedule": "cosine",
    "warmup": 100,
    "batch_size": 4,
    "ema": 0.99,
    "channels_last": True,
}
FAMILIES: dict[str, dict[str, Any]] = {
    "unet": UNET,
    "timm_unet": TIMM_UNET,
    "ssdlite320_*": SSDLITE,
    "rfcn_*": RFCN,
}


def family_default_cfg(name: str) -> dict[str, Any]:
    """The training defaults of the family whose glob matches model ``name`` (a copy; {} for none)."""
    for pattern, cfg in FAMILIES.items():
        if fnmatch.fnmatch(name, pattern):
            return dict(cfg)
    return {}
