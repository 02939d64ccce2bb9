"""Weights files before any model sees them: their SHA-256, ``torch.load`` with ``weights_only``, and
the ``pretrained`` values that name no file (``True``'s spellings, :class:`WeightsDeferred`).

A leaf under :mod:`detseg.models.weights` (the resolver) and :mod:`detseg.models.timm_weights` (which the
resolver hands ``timm:`` names to), so that neither imports the other to read a file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

#: ``pretrained`` strings meaning "the builder's torchvision weights" (as ``pretrained=True``).
PRETRAINED_NAMES = {"true", "imagenet", "default", "torchvision"}


class WeightsDeferred:
    """A true ``pretrained`` value that loads nothing: the builder makes the architecture it makes for
    pre-trained weights (frozen BatchNorm, full MobileNet tail, Caffe input scaling), and the caller
    loads a whole model's state dict afterwards (:func:`detseg.models.zoo.create_model` does)."""

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "WeightsDeferred()"


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file, as hex."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_sha256(path: Path, expected: str) -> None:
    actual = file_sha256(path)
    if not actual.startswith(expected.lower()):
        raise ValueError(f"{path}: SHA-256 is {actual}, expected {expected}; refusing to load it")


def read_weights_file(path: str | Path, sha256: str | None = None) -> Any:
    """``torch.load(path, weights_only=True)`` after checking the file's SHA-256 (or prefix) when given."""
    path = Path(path)
    if sha256:
        _check_sha256(path, sha256)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickled code (refused by weights_only) or a damaged file: say which file
        raise ValueError(f"{path}: not a file torch.load(weights_only=True) can read ({err})") from err
