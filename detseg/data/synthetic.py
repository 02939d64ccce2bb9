"""Synthetic shapes data set: coloured shapes on a background, with boxes, instance and semantic masks.

Deterministic by seed: every image draws from its own ``numpy.random.Generator`` seeded by
``(seed, split, index)``, so the same config writes byte-identical files, and changing ``num_train``
does not change the validation images. Shapes are rasterised by OpenCV without anti-aliasing, so the
masks are exactly the drawn pixels. Later-drawn objects occlude earlier ones; boxes, areas and masks
describe the *visible* part, and objects left with less than ``min_visible`` of their pixels are
removed from the image altogether.

Domain knobs (background, palette, classes, object size, image size) make a source domain and a
shifted target domain for transfer learning, e.g. ``DOMAINS["source"]`` and ``DOMAINS["target"]``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml
from pycocotools import mask as mask_utils

#: Every shape the generator can draw; a config picks a subset (its order sets the class indices).
SHAPES = ("circle", "square", "triangle", "ellipse", "star", "hexagon", "cross")
BACKGROUNDS = ("plain", "noise", "texture")
#: Named object colour palettes (RGB). Object colours are drawn from one, with some jitter.
PALETTES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "bright": ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
               (145, 30, 180), (70, 240, 240), (240, 50, 230)),
    "pastel": ((255, 179, 186), (255, 223, 186), (255, 255, 186), (186, 255, 201), (186, 225, 255),
               (218, 190, 255)),
    "dark": ((100, 20, 30), (20, 70, 35), (25, 35, 90), (80, 50, 20), (60, 20, 80), (20, 70, 75)),
}
#: Two ready-made domains: the plain, bright source and a textured, dark target.
DOMAINS: dict[str, dict[str, str]] = {
    "source": {"background": "plain", "palette": "bright"},
    "target": {"background": "texture", "palette": "dark"},
}
_SPLITS = {"train": 0, "val": 1}
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]


@dataclass
class SynthConfig:
    """What to generate. Sizes are in pixels; ``object_size`` is the diameter of the circle that
    encloses a shape, so every shape lies fully inside the image before occlusion."""

    seed: int = 0
    image_size: int | tuple[int, int] = (128, 128)  # (H, W); an int means square
    num_train: int = 200
    num_val: int = 50
    classes: Sequence[str] = ("circle", "square", "triangle")
    objects_per_image: tuple[int, int] = (1, 4)
    object_size: tuple[int, int] = (16, 48)
    background: str = "plain"
    palette: str | Sequence[Sequence[int] | str] = "bright"  # a PALETTES name, RGB triples or "#rrggbb"
    color_jitter: int = 20  # +- per channel around the palette colour
    occlusion: bool = True  # False: objects are placed without overlap (where they fit)
    min_visible: float = 0.3  # drop objects with less of their pixels left visible
    _colors: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.image_size, int):
            self.image_size = (self.image_size, self.image_size)
        self.image_size = tuple(int(s) for s in self.image_size)
        self.classes = tuple(self.classes)
        self.objects_per_image = tuple(int(n) for n in self.objects_per_image)
        self.object_size = tuple(int(s) for s in self.object_size)
        if not isinstance(self.palette, str):
            self.palette = tuple(_parse_color(c) for c in self.palette)
        self._validate()
        colors = PALETTES[self.palette] if isinstance(self.palette, str) else self.palette
        self._colors = np.asarray(colors, dtype=np.int64)

    def _validate(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"synth config: {name} {why}")

        if not isinstance(self.seed, int) or self.seed < 0:
            raise bad("seed", f"must be a non-negative integer, got {self.seed!r}")
        if len(self.image_size) != 2 or min(self.image_size) < 16:
            raise bad("image_size", f"must be (H, W) with both >= 16, got {self.image_size}")
        if self.num_train < 0 or self.num_val < 0:
            raise bad("num_train/num_val", "must be >= 0")
        if not self.classes:
            raise bad("classes", "must name at least one shape")
        unknown = [c for c in self.classes if c not in SHAPES]
        if unknown:
            raise bad("classes", f"has unknown shapes {unknown}; known: {', '.join(SHAPES)}")
        if len(set(self.classes)) != len(self.classes):
            raise bad("classes", f"has duplicates: {list(self.classes)}")
        lo, hi = self.objects_per_image
        if not 0 <= lo <= hi:
            raise bad("objects_per_image", f"must be (min, max) with 0 <= min <= max, got {(lo, hi)}")
        lo, hi = self.object_size
        if not 8 <= lo <= hi <= min(self.image_size):
            raise bad("object_size", f"must be (min, max) with 8 <= min <= max <= image side, got {(lo, hi)}")
        if self.background not in BACKGROUNDS:
            raise bad("background", f"is {self.background!r}; choose one of {', '.join(BACKGROUNDS)}")
        if isinstance(self.palette, str) and self.palette not in PALETTES:
            raise bad("palette", f"is {self.palette!r}; choose one of {', '.join(PALETTES)} or give colours")
        if not isinstance(self.palette, str) and not self.palette:
            raise bad("palette", "is an empty list of colours")
        if not 0 <= self.color_jitter <= 127:
            raise bad("color_jitter", f"must be in [0, 127], got {self.color_jitter}")
        if not 0.0 <= self.min_visible <= 1.0:
            raise bad("min_visible", f"must be in [0, 1], got {self.min_visible}")

    def to_dict(self) -> dict:
        """The config as plain JSON-able values (what ``synth.json`` records)."""
        data = asdict(self)
        data.pop("_colors")
        return data


def _parse_color(color: Sequence[int] | str) -> tuple[int, int, int]:
    if isinstance(color, str):
        text = color.strip().lstrip("#")
        if len(text) != 6:
            raise ValueError(f"synth config: palette colour {color!r} is not '#rrggbb'")
        try:
            return tuple(int(text[i : i + 2], 16) for i in (0, 2, 4))
        except ValueError:
            raise ValueError(f"synth config: palette colour {color!r} is not '#rrggbb'") from None
    rgb = tuple(int(c) for c in color)
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise ValueError(f"synth config: palette colour {color!r} is not three values in 0..255")
    return rgb


@dataclass
class SynthImage:
    """One rendered image and its objects (visible parts only).

    image: ``uint8 [H, W, 3]`` RGB; labels: ``int64 [N]`` 0-based indices into ``config.classes``;
    masks: ``bool [N, H, W]``; boxes: ``float32 [N, 4]`` x1, y1, x2, y2 of the masks (COCO convention:
    pixels 0..9 give 0..10); semantic: ``uint8 [H, W]`` class index + 1, 0 = background.
    """

    image: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    semantic: np.ndarray


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of one image: independent of every other image and of the split sizes."""
    return np.random.default_rng([seed, _SPLITS[split], index])


def render_image(config: SynthConfig, split: str = "train", index: int = 0) -> SynthImage:
    """Render image ``index`` of ``split`` exactly as :func:`generate` writes it."""
    rng = image_rng(config.seed, split, index)
    h, w = config.image_size
    image = make_background(config.background, (h, w), rng)
    n_objects = int(rng.integers(config.objects_per_image[0], config.objects_per_image[1] + 1))
    shapes, labels, colors = [], [], []
    occupied = np.zeros((h, w), dtype=bool)
    for _ in range(n_objects):
        label = int(rng.integers(len(config.classes)))
        color = _object_color(config, rng)
        # Without occlusion, retry the placement a few times and give up on objects that do not fit.
        for _attempt in range(1 if config.occlusion else 20):
            shape = draw_shape(config.classes[label], _place(config, rng), (h, w), rng)
            if config.occlusion or not (shape & occupied).any():
                break
        else:
            continue
        occupied |= shape
        shapes.append(shape)
        labels.append(label)
        colors.append(color)

    keep, masks = visible_masks(shapes, config.min_visible, (h, w))
    semantic = np.zeros((h, w), dtype=np.uint8)
    for i, k in enumerate(keep):
        image[masks[i]] = colors[k]
        semantic[masks[i]] = labels[k] + 1
    return SynthImage(
        image=image,
        labels=np.asarray([labels[k] for k in keep], dtype=np.int64),
        masks=masks,
        boxes=np.asarray([mask_box(m) for m in masks], dtype=np.float32).reshape(-1, 4),
        semantic=semantic,
    )


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight box of a non-empty boolean mask as x1, y1, x2, y2 (exclusive ends)."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1


def visible_masks(
    shapes: list[np.ndarray], min_visible: float, size: tuple[int, int]
) -> tuple[list[int], np.ndarray]:
    """Occlusion: ``shapes`` (``bool [H, W]`` each) are painted in order, later ones on top.

    Returns the indices of the shapes kept (at least ``min_visible`` of their pixels, and one pixel,
    visible) and their visible masks ``bool [K, H, W]`` with the dropped shapes removed from the scene.
    """
    owner = _owner_map(shapes, size)
    keep = [i for i, s in enumerate(shapes) if (owner == i).sum() >= max(min_visible * s.sum(), 1)]
    # Removing an object only uncovers others, so one pass leaves every kept object above the threshold.
    owner = _owner_map([shapes[i] for i in keep], size)
    masks = np.stack([owner == i for i in range(len(keep))]) if keep else np.zeros((0, *size), bool)
    return keep, masks


def _owner_map(shapes: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Index of the object seen at each pixel (-1 = background); later objects are on top."""
    owner = np.full(size, -1, dtype=np.int32)
    for i, shape in enumerate(shapes):
        owner[shape] = i
    return owner


def _object_color(config: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    base = config._colors[rng.integers(len(config._colors))]
    jitter = rng.integers(-config.color_jitter, config.color_jitter + 1, size=3)
    return np.clip(base + jitter, 0, 255).astype(np.uint8)


def _place(config: SynthConfig, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """Centre x, centre y, enclosing diameter and rotation (radians) of one shape."""
    h, w = config.image_size
    size = rng.uniform(config.object_size[0], config.object_size[1])
    r = size / 2
    return rng.uniform(r, w - r), rng.uniform(r, h - r), size, rng.uniform(0, 2 * np.pi)


def draw_shape(
    name: str, placement: tuple[float, float, float, float], size: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """Rasterise one shape (no anti-aliasing) into a ``bool [H, W]`` mask."""
    cx, cy, diameter, angle = placement
    r = diameter / 2
    canvas = np.zeros(size, dtype=np.uint8)
    centre = (round(cx), round(cy))
    if name == "circle":
        cv2.circle(canvas, centre, max(round(r), 1), 1, thickness=-1, lineType=cv2.LINE_8)
    elif name == "ellipse":
        minor = r * rng.uniform(0.4, 0.65)  # far enough from 1 to tell it from a circle
        axes = (max(round(r), 1), max(round(minor), 1))
        cv2.ellipse(canvas, centre, axes, np.degrees(angle), 0, 360, 1, thickness=-1, lineType=cv2.LINE_8)
    else:
        c, s = np.cos(angle), np.sin(angle)
        points = np.round(_polygon(name, r) @ np.array([[c, s], [-s, c]]) + (cx, cy)).astype(np.int32)
        cv2.fillPoly(canvas, [points], 1, lineType=cv2.LINE_8)
    return canvas.astype(bool)


def _polygon(name: str, r: float) -> np.ndarray:
    """Vertices ``float [K, 2]`` of a shape of circumradius ``r`` centred at the origin."""
    if name == "square":
        radii, k = [r], 4
    elif name == "triangle":
        radii, k = [r], 3
    elif name == "hexagon":
        radii, k = [r], 6
    elif name == "star":
        radii, k = [r, 0.45 * r], 10
    elif name == "cross":
        # A plus sign: arm half-width a, arm length r; its 12 corners.
        a = 0.3 * r
        pts = [(a, r), (a, a), (r, a), (r, -a), (a, -a), (a, -r), (-a, -r), (-a, -a), (-r, -a), (-r, a),
               (-a, a), (-a, r)]
        return np.asarray(pts, dtype=np.float64)
    else:
        raise ValueError(f"unknown shape {name!r}; known: {', '.join(SHAPES)}")
    theta = np.arange(k) * 2 * np.pi / k
    rad = np.resize(np.asarray(radii), k)
    return np.stack([rad * np.sin(theta), -rad * np.cos(theta)], axis=1)


def make_background(kind: str, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A ``uint8 [H, W, 3]`` background: ``plain`` (one greyish colour), ``noise`` (that colour plus
    per-pixel Gaussian noise) or ``texture`` (smooth colour blotches, stripes and fine grain)."""
    h, w = size
    base = rng.uniform(90, 170) + rng.uniform(-20, 20, size=3)
    if kind == "plain":
        out = np.broadcast_to(base, (h, w, 3))
    elif kind == "noise":
        out = base + rng.normal(0.0, 25.0, size=(h, w, 3))
    elif kind == "texture":
        blotches = cv2.resize(rng.uniform(60, 210, size=(6, 6, 3)), (w, h), interpolation=cv2.INTER_CUBIC)
        theta, period, phase = rng.uniform(0, np.pi), rng.uniform(6, 16), rng.uniform(0, 2 * np.pi)
        y, x = np.mgrid[0:h, 0:w]
        stripes = 30.0 * np.sin(2 * np.pi * (x * np.cos(theta) + y * np.sin(theta)) / period + phase)
        out = blotches + stripes[..., None] + rng.normal(0.0, 8.0, size=(h, w, 3))
    else:
        raise ValueError(f"unknown background {kind!r}; choose one of {', '.join(BACKGROUNDS)}")
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def generate(config: SynthConfig, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write the data set to ``out_dir`` and return that folder.

    Layout: ``images/{train,val}/NNNNNN.png``, ``masks/{train,val}/NNNNNN.png`` (class index, 0 =
    background), ``annotations/{train,val}.json`` (COCO, RLE segmentation of the visible part,
    category ids 1..K), ``detect.yaml``, ``segment.yaml`` and ``instance.yaml`` (dataset specs: boxes,
    semantic masks, boxes with instance masks from the same json) and ``synth.json`` (the
    config). An existing data set there is replaced only with ``overwrite=True``.
    """
    out = Path(out_dir)
    ours = ("images", "masks", "annotations", "detect.yaml", "segment.yaml", "instance.yaml", "synth.json")
    existing = [out / p for p in ours if (out / p).exists()]
    if existing and not overwrite:
        raise ValueError(f"{out}: already holds a data set ({existing[0].name}); use overwrite to replace it")
    for path in existing:
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    counts = {"train": config.num_train, "val": config.num_val}
    for split, count in counts.items():
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "masks" / split).mkdir(parents=True, exist_ok=True)
        (out / "annotations").mkdir(parents=True, exist_ok=True)
        coco = _write_split(config, split, count, out)
        _write_json(out / "annotations" / f"{split}.json", coco)
    _write_specs(config, out)
    _write_json(out / "synth.json", config.to_dict())
    return out


def _write_split(config: SynthConfig, split: str, count: int, out: Path) -> dict:
    h, w = config.image_size
    images, annotations = [], []
    for index in range(count):
        sample = render_image(config, split, index)
        image_id = index + 1
        name = f"{image_id:06d}.png"
        cv2.imwrite(str(out / "images" / split / name), sample.image[..., ::-1], PNG_PARAMS)
        cv2.imwrite(str(out / "masks" / split / name), sample.semantic, PNG_PARAMS)
        images.append({"id": image_id, "file_name": name, "height": h, "width": w})
        for label, mask, box in zip(sample.labels, sample.masks, sample.boxes, strict=True):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            x1, y1, x2, y2 = (float(v) for v in box)
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": int(label) + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": float(mask.sum()),
                "iscrowd": 0,
                "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")},
            })
    categories = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(config.classes)]
    info = {"description": f"detseg synthetic shapes, split {split}, seed {config.seed}"}
    return {"info": info, "images": images, "annotations": annotations, "categories": categories}


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n", encoding="utf-8")


def _write_specs(config: SynthConfig, out: Path) -> None:
    names = list(config.classes)
    splits = {s: {"images": f"images/{s}", "annotations": f"annotations/{s}.json", "masks": f"masks/{s}"}
              for s in _SPLITS}
    detect = {"task": "detect", "format": "coco", "root": ".", "classes": names, "ignore_index": 255}
    detect.update({s: {k: v for k, v in paths.items() if k != "masks"} for s, paths in splits.items()})
    segment = {"task": "segment", "format": "masks", "root": ".", "classes": ["background", *names],
               "ignore_index": 255, "values": {i: i for i in range(len(names) + 1)}}
    segment.update({s: {k: v for k, v in paths.items() if k != "annotations"} for s, paths in splits.items()})
    instance = {**detect, "task": "instance"}
    header = f"# written by detseg synth (seed {config.seed}); see synth.json for the full config\n"
    for name, spec in (("detect.yaml", detect), ("segment.yaml", segment), ("instance.yaml", instance)):
        text = yaml.safe_dump(spec, sort_keys=False, default_flow_style=None, width=1000)
        (out / name).write_text(header + text, encoding="utf-8")
