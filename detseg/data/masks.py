"""Image and mask files: reading them, pairing images with masks, and mapping mask values to classes.

Mask folders hold one label image per input image (same stem, PNG). Pixel values map to class
indices through a ``values`` table (e.g. ``{0: 0, 255: 1}`` for 0/255 binary masks); values mapped to
"ignore" (such as CamVid's 11) become the spec's ``ignore_index``. Without a table a value ``v`` is the
class index itself, and ``ignore_index`` stays void.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from detseg.data.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def list_images(folder: str | Path) -> list[Path]:
    """All image files directly in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "image folder not found")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def read_image(path: str | Path, channels: int = 3) -> np.ndarray:
    """Decode an image file to ``uint8 [H, W, channels]``; greyscale, palette and RGBA convert as asked."""
    if channels not in _MODES:
        raise ValueError(f"channels must be 1, 3 or 4, not {channels}")
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "image file not found")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I", "F") and channels != 1:
                # 16-bit and float greyscale: scale to 8 bits before making RGB.
                arr = np.asarray(im, dtype=np.float64)
                arr = 255.0 * (arr - arr.min()) / max(float(arr.max() - arr.min()), 1e-12)
                im = Image.fromarray(arr.astype(np.uint8))
            arr = np.array(im.convert(_MODES[channels]))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"unreadable image ({exc})") from exc
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr)


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` from the file header, without decoding the pixels."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "image file not found")
    try:
        with Image.open(path) as im:
            width, height = im.size
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(path, f"unreadable image ({exc})") from exc
    return height, width


def read_mask(path: str | Path) -> np.ndarray:
    """Decode a label image to its raw values ``[H, W]`` (palette PNGs give palette indices)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "mask file not found")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGB", "RGBA"):
                arr = np.asarray(im)[:, :, :3]
                if not (
                    np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])
                ):
                    raise DataError(path, "colour mask: store class indices as a greyscale or palette PNG")
                return np.ascontiguousarray(arr[..., 0])
            if im.mode == "LA":
                im = im.getchannel(0)
            return np.array(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(path, f"unreadable mask ({exc})") from exc


def write_mask(path: str | Path, mask: np.ndarray) -> None:
    """Save class indices ``[H, W]`` (values < 256) as an 8-bit single-channel PNG."""
    Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="L").save(path)


def find_mask(masks_dir: Path, stem: str, suffix: str = "") -> Path:
    """The mask for image ``stem``: ``<stem><suffix>.png``, or any image file with that name."""
    candidate = masks_dir / f"{stem}{suffix}.png"
    if candidate.is_file():
        return candidate
    for ext in IMAGE_EXTENSIONS:
        other = masks_dir / f"{stem}{suffix}{ext}"
        if other.is_file():
            return other
    return candidate  # missing: the caller reports it with this expected name


def value_table(values: Mapping[int, int] | None, num_classes: int, ignore_index: int) -> np.ndarray:
    """A lookup table ``int64 [65536]``: raw mask value -> class index, ``ignore_index`` or -1 (unexpected).

    When ``values`` maps onto every class it is the whole table (``{0: 0, 255: 1}``: any other value is
    unexpected); otherwise unlisted values ``0..num_classes-1`` and ``ignore_index`` stand for themselves.
    """
    table = np.full(65536, -1, dtype=np.int64)
    values = dict(values or {})
    if not set(range(num_classes)) <= set(values.values()):
        # A partial table (e.g. CamVid's {11: ignore}) keeps every other value as its own class index.
        table[:num_classes] = np.arange(num_classes)
        if 0 <= ignore_index < 65536:
            table[ignore_index] = ignore_index
    for raw, cls in values.items():
        table[int(raw)] = int(cls)
    return table


def map_mask_values(raw: np.ndarray, table: np.ndarray, path: str | Path = "<mask>") -> np.ndarray:
    """Raw mask values ``[H, W]`` -> class indices ``int64 [H, W]``; unexpected values raise DataError."""
    mapped = table[raw.astype(np.int64)]
    if (mapped < 0).any():
        bad = np.unique(raw[mapped < 0])
        shown = ", ".join(str(v) for v in bad[:10])
        raise DataError(path, f"unexpected mask values {shown} (not in the spec's classes or values)")
    return mapped


def semantic_to_instances(semantic: np.ndarray, ignore_index: int, skip: tuple[int, ...] = (0,)):
    """Split a class-index mask into instances: one per connected component of each class.

    Returns a list of ``(class_index, mask uint8 [H, W])``; classes in ``skip`` (background) and
    ``ignore_index`` give no instances.
    """
    import cv2

    instances = []
    for cls in np.unique(semantic):
        if int(cls) in skip or int(cls) == ignore_index:
            continue
        count, components = cv2.connectedComponents((semantic == cls).astype(np.uint8), connectivity=8)
        for k in range(1, count):
            instances.append((int(cls), (components == k).astype(np.uint8)))
    return instances


def mask_pairs(
    image_dir: str | Path,
    mask_dir: str | Path,
    stems=None,
    suffix: str = "",
    problems: list[DataError] | None = None,
) -> list[tuple[Path, Path, str]]:
    """``(image, mask, file_name)`` for the images in ``image_dir`` (only ``stems`` when given)."""
    from detseg.data.errors import report

    image_dir, mask_dir = Path(image_dir), Path(mask_dir)
    images = list_images(image_dir)
    if stems is not None:
        by_stem = {p.stem: p for p in images}
        images = []
        for stem in stems:
            if stem in by_stem:
                images.append(by_stem[stem])
            else:
                report(
                    problems,
                    DataError(image_dir / stem, "image listed in the split but not found", image=stem),
                )
    if not mask_dir.is_dir():
        raise DataError(mask_dir, "mask folder not found")
    return [(p, find_mask(mask_dir, p.stem, suffix), p.name) for p in images]


def masks_to_coco(
    pairs: list[tuple[Path, Path, str]],
    table: np.ndarray,
    classes: list[str],
    ignore_index: int = 255,
    background: tuple[int, ...] = (0,),
    segmentation: str = "rle",
    problems: list[DataError] | None = None,
) -> dict:
    """Semantic masks -> COCO instances: one per connected component of each non-background class.

    ``segmentation`` is ``"rle"`` (exact) or ``"polygon"`` (outer contours via ``cv2.findContours``).
    Category ids are class index + 1.
    """
    from detseg.data.coco import mask_annotation, mask_to_polygons, mask_to_rle
    from detseg.data.errors import report

    images, annotations = [], []
    for image_id, (image, mask_path, file_name) in enumerate(pairs, start=1):
        try:
            semantic = map_mask_values(read_mask(mask_path), table, mask_path)
            height, width = image_size(image)
            if semantic.shape != (height, width):
                raise DataError(
                    mask_path,
                    f"mask is {semantic.shape[1]}x{semantic.shape[0]} but the image "
                    f"{image.name} is {width}x{height}",
                    image=image.stem,
                )
        except DataError as exc:
            report(problems, exc)
            continue
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for cls, mask in semantic_to_instances(semantic, ignore_index, background):
            segm = mask_to_rle(mask) if segmentation == "rle" else mask_to_polygons(mask)
            if not segm:
                continue  # a component too thin for a polygon
            annotations.append(mask_annotation(image_id, cls + 1, mask, len(annotations) + 1, segm))
    categories = [
        {"id": i + 1, "name": n, "supercategory": "none"}
        for i, n in enumerate(classes)
        if i not in background
    ]
    return {"images": images, "annotations": annotations, "categories": categories}
