"""Checkpoints: written atomically, read with ``weights_only=True``, carrying everything to resume exactly.

A checkpoint is a plain dict::

    {"format": "detseg-checkpoint", "version": 1,
     "model": state_dict, "optimizer": ..., "scheduler": ..., "scaler": ...,
     "epoch": int, "batch_in_epoch": int, "step": int,     # where training stands
     "rng": {"python": ..., "numpy": ..., "torch": ByteTensor, "cuda": [ByteTensor, ...]},
     "config": dict, "meta": {"task", "model", "model_kwargs", "classes", "values", ...},
     "metrics": dict, "best": dict,
     "elapsed": seconds trained, "total_steps": int,        # the --time budget's account and plan
     "ema": {"model": state_dict, "updates": int, "decay": float}}   # with --ema only

Prediction, evaluation and ``--pretrained`` read :func:`inference_weights`: the averaged weights when
the run kept them, else ``"model"``.

Only tensors, numbers, strings, lists, tuples and dicts go in, so ``torch.load(weights_only=True)``
(which refuses arbitrary pickled objects) reads it; the numpy RNG state is stored as a tensor for that.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "detseg-checkpoint"
VERSION = 1


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, then ``os.replace``.

    A crash while writing leaves the previous file intact (``os.replace`` is atomic on POSIX and Windows).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "version": VERSION, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no code runs)."""
    path = Path(path)
    if path.is_dir():
        # Accept a run folder: its best checkpoint, else its last.
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                path = path / name
                break
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which one
        raise ValueError(f"{path}: not a readable detseg checkpoint ({exc})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not a detseg checkpoint (no 'format: {FORMAT}' entry)")
    return state


def inference_weights(state: dict[str, Any]) -> dict[str, Any]:
    """The weights to predict with: the moving average of a run trained with ``ema`` (the weights its
    validation metrics were measured on), else the trained weights."""
    if "ema" in state:
        return state["ema"]["model"]
    if "model" not in state:
        raise ValueError("the checkpoint holds no model weights (no 'model' entry)")
    return state["model"]


def rng_state() -> dict[str, Any]:
    """The state of every random generator training touches: python, numpy, torch CPU and CUDA."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_classes(checkpoint_classes: list[str], data_classes: list[str], where: str = "") -> None:
    """Refuse data whose classes disagree with a checkpoint's, naming both lists."""
    if list(checkpoint_classes) != list(data_classes):
        raise ValueError(
            f"{where + ': ' if where else ''}the data's classes {list(data_classes)} disagree with the "
            f"checkpoint's classes {list(checkpoint_classes)}"
        )
