"""Chains of classical steps ("thresholding is usually one step of many"), from Python, a string or YAML.

A pipeline is a list of ``(name, params)`` steps applied in order; each step takes the previous result.
Image steps (``blur``, ``median``, ``gray``) map an image to an image; segmenters (``threshold``,
``otsu``, ``adaptive``, ``multiotsu``, ``canny``, ``kmeans``, ``region``, ``sobel``) map an image to a
mask, labels or a magnitude; mask steps (``open``, ``close``, ``fill_holes``, ``remove_small``,
``remove_small_holes``, ``invert``, ``components``) map a mask onward. Written as

- a string: ``"blur sigma=1; adaptive block_size=51 offset=-5; open radius=1; fill_holes"``
  (values are read as YAML scalars or lists, e.g. ``seeds=[[10,20]]``);
- YAML: ``steps: [{blur: {sigma: 1}}, {adaptive: {block_size: 51}}, open, fill_holes]`` (or a bare list).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detseg.classic import clustering, edges, postprocess, region_growing, thresholding
from detseg.classic.image import check_image


def blur(image: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Gaussian smoothing (``cv2.GaussianBlur`` with kernel size from sigma)."""
    return cv2.GaussianBlur(check_image(image), (0, 0), sigma)


def median(image: np.ndarray, ksize: int = 3) -> np.ndarray:
    """Median filter (``cv2.medianBlur``), ``ksize`` odd."""
    return cv2.medianBlur(check_image(image), ksize)


def _kmeans(image: np.ndarray, **kwargs: Any) -> np.ndarray:
    return clustering.kmeans_quantize(image, **kwargs).labels


def _region(image: np.ndarray, seeds: Any = "auto", n_seeds: int = 16, **kwargs: Any) -> np.ndarray:
    if isinstance(seeds, str):
        if seeds != "auto":
            raise ValueError(f"seeds must be a list of [row, col] or 'auto', got {seeds!r}")
        seeds = region_growing.auto_seeds(image, n_seeds)
    return region_growing.region_grow(image, [tuple(s) for s in seeds], **kwargs)


def _sobel(image: np.ndarray, **kwargs: Any) -> np.ndarray:
    return edges.sobel(image, **kwargs).magnitude


def _components(mask: np.ndarray, connectivity: int = 8) -> np.ndarray:
    return postprocess.connected_components(mask, connectivity)[0]


# name -> (function, what it takes, what it gives)
STEPS: dict[str, tuple[Callable[..., np.ndarray], str, str]] = {
    "blur": (blur, "image", "image"),
    "median": (median, "image", "image"),
    "gray": (thresholding.to_gray, "image", "image"),
    "threshold": (thresholding.threshold_fixed, "image", "mask"),
    "otsu": (thresholding.threshold_otsu, "image", "mask"),
    "multiotsu": (thresholding.threshold_multiotsu, "image", "labels"),
    "adaptive": (thresholding.threshold_adaptive, "image", "mask"),
    "canny": (edges.canny, "image", "mask"),
    "sobel": (_sobel, "image", "magnitude"),
    "kmeans": (_kmeans, "image", "labels"),
    "region": (_region, "image", "labels"),
    "open": (postprocess.opening, "mask", "mask"),
    "close": (postprocess.closing, "mask", "mask"),
    "fill_holes": (postprocess.fill_holes, "mask", "mask"),
    "remove_small": (postprocess.remove_small_components, "mask", "mask"),
    "remove_small_holes": (postprocess.remove_small_holes, "mask", "mask"),
    "invert": (postprocess.invert, "mask", "mask"),
    "components": (_components, "mask", "labels"),
}


_RECEIVER = {"kmeans": clustering.kmeans_quantize, "region": region_growing.region_grow, "sobel": edges.sobel}


@dataclass
class Step:
    name: str
    params: dict[str, Any]


class Pipeline:
    """A checked chain of steps; ``pipeline(image)`` runs it and returns the last step's output."""

    def __init__(self, steps: Sequence[Step | tuple[str, dict[str, Any]] | str]) -> None:
        self.steps = [_make_step(i, s) for i, s in enumerate(steps)]
        if not self.steps:
            raise ValueError("pipeline: no steps")
        kind = "image"
        for i, step in enumerate(self.steps):
            _, takes, gives = STEPS[step.name]
            if takes != kind:
                raise ValueError(f"pipeline step {i + 1} '{step.name}' takes {takes} input but gets {kind}")
            kind = gives
        self.output_kind = kind

    @classmethod
    def from_string(cls, text: str) -> Pipeline:
        """Parse ``"name k=v k=v; name ..."`` (see :func:`parse_steps`)."""
        return cls(parse_steps(text))

    @classmethod
    def from_yaml(cls, path: str | Path) -> Pipeline:
        """Read ``steps:`` (or a bare list) from a YAML file."""
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"{path}: cannot read pipeline YAML: {exc}") from exc
        if isinstance(data, dict):
            data = data.get("steps")
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a list of steps (or 'steps:' holding one)")
        try:
            return cls(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc

    def __call__(self, image: np.ndarray) -> np.ndarray:
        out = image
        for step in self.steps:
            out = STEPS[step.name][0](out, **step.params)
        return out

    def __repr__(self) -> str:
        parts = [" ".join([s.name, *(f"{k}={v}" for k, v in s.params.items())]) for s in self.steps]
        return f"Pipeline({'; '.join(parts)!r})"


def parse_steps(text: str) -> list[Step]:
    """Steps from ``"name k=v k=v; name ..."``; values are read as YAML (numbers, lists, true/false)."""
    import yaml

    steps = []
    for i, part in enumerate(p.strip() for p in text.split(";")):
        if not part:
            continue
        name, *pairs = part.split()
        params = {}
        for pair in pairs:
            if "=" not in pair:
                raise ValueError(f"pipeline step {i + 1} '{name}': expected key=value, got {pair!r}")
            key, value = pair.split("=", 1)
            try:
                params[key] = yaml.safe_load(value)
            except yaml.YAMLError as exc:
                raise ValueError(f"pipeline step {i + 1} '{name}': cannot read {pair!r}") from exc
        steps.append(_make_step(i, Step(name, params)))
    return steps


def _make_step(i: int, spec: Any) -> Step:
    if isinstance(spec, Step):
        name, params = spec.name, dict(spec.params)
    elif isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, tuple) and len(spec) == 2:
        name, params = spec[0], dict(spec[1] or {})
    elif isinstance(spec, dict) and len(spec) == 1:
        name, params = next(iter(spec.items()))
        params = dict(params or {})
    else:
        raise ValueError(
            f"pipeline step {i + 1}: expected a name, (name, params) or {{name: params}}, got {spec!r}"
        )
    if name not in STEPS:
        raise ValueError(f"pipeline step {i + 1}: unknown step {name!r}; known: {', '.join(STEPS)}")
    # check the keywords against the function that finally receives them
    check = _RECEIVER.get(name, STEPS[name][0])
    known = {k: v for k, v in params.items() if not (name == "region" and k == "n_seeds")}
    if name == "region":
        known.setdefault("seeds", "auto")
    try:
        inspect.signature(check).bind(None, **known)
    except TypeError as exc:
        raise ValueError(f"pipeline step {i + 1} '{name}': {exc}") from exc
    return Step(name, params)
