"""COCO json: reading and checking dataset dicts, category ids <-> labels, and segmentation masks.

A COCO dataset dict has ``images`` (id, file_name, width, height), ``annotations`` (id, image_id,
category_id, bbox ``[x, y, w, h]`` in absolute pixels, area, iscrowd, optional segmentation as
polygons or RLE) and ``categories`` (id, name). Every other detseg detection format is turned into
this dict in memory, so one set of checks serves them all.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from detseg.data.errors import DataError, report


# ---------------------------------------------------------------- segmentation (polygons and RLE)
def segmentation_to_rle(segmentation, height: int, width: int) -> dict:
    """Polygons (list of ``[x1, y1, x2, y2, ...]``), uncompressed or compressed RLE -> one compressed RLE."""
    if isinstance(segmentation, list):
        if not segmentation:
            raise ValueError("empty polygon list")
        rles = mask_utils.frPyObjects(segmentation, height, width)
        return mask_utils.merge(rles)
    if isinstance(segmentation, dict) and "counts" in segmentation:
        if isinstance(segmentation["counts"], list):
            return mask_utils.frPyObjects(segmentation, height, width)
        rle = dict(segmentation)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
        return rle
    raise ValueError(f"not a polygon list or RLE: {type(segmentation).__name__}")


def rle_to_mask(rle: dict) -> np.ndarray:
    """Compressed RLE -> ``uint8 [H, W]`` binary mask."""
    return np.ascontiguousarray(mask_utils.decode(rle))


def mask_to_rle(mask: np.ndarray) -> dict:
    """Binary mask ``[H, W]`` -> compressed RLE with ``counts`` as str (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def segmentation_to_mask(segmentation, height: int, width: int) -> np.ndarray:
    """Any COCO segmentation -> ``uint8 [H, W]`` binary mask."""
    return rle_to_mask(segmentation_to_rle(segmentation, height, width))


def segmentation_area(segmentation, height: int, width: int) -> float:
    """Pixel area of a COCO segmentation, as pycocotools computes it."""
    return float(mask_utils.area(segmentation_to_rle(segmentation, height, width)))


def mask_to_polygons(mask: np.ndarray, min_points: int = 3) -> list[list[float]]:
    """Outer contours of a binary mask as COCO polygons (``cv2.findContours``; holes are not kept).

    Contours run through pixel centres, so the polygon's rasterised area is slightly below the mask's;
    use RLE when exact areas matter.
    """
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        if len(contour) >= min_points:
            polygons.append([float(v) for v in contour.reshape(-1)])
    return polygons


def mask_to_box(mask: np.ndarray) -> list[float]:
    """Tight box ``[x, y, w, h]`` (COCO convention) around the non-zero pixels of a mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


# ---------------------------------------------------------------- category ids <-> labels
@dataclass
class CategoryMap:
    """COCO category ids <-> contiguous 0-based labels (``label i`` is ``classes[i]``)."""

    classes: list[str]
    category_ids: list[int]  # category_ids[label]

    @property
    def label_of(self) -> dict[int, int]:
        return {cid: label for label, cid in enumerate(self.category_ids)}

    def to_label(self, category_id: int) -> int:
        return self.label_of[category_id]

    def to_category_id(self, label: int) -> int:
        return self.category_ids[label]


def category_map(
    categories: Sequence[dict], classes: Sequence[str] | None, file: object = "<coco>"
) -> CategoryMap:
    """Match COCO categories to the spec's classes by name (or take them in id order when none given).

    Classes that the file lacks get fresh ids above the largest one, so every label has an id.
    """
    by_name: dict[str, int] = {}
    for cat in categories:
        by_name.setdefault(str(cat["name"]), int(cat["id"]))
    if classes is None:
        ordered = sorted(categories, key=lambda c: int(c["id"]))
        return CategoryMap([str(c["name"]) for c in ordered], [int(c["id"]) for c in ordered])
    next_id = max([int(c["id"]) for c in categories], default=0) + 1
    ids = []
    for name in classes:
        if name in by_name:
            ids.append(by_name[name])
        else:
            ids.append(next_id)
            next_id += 1
    return CategoryMap(list(classes), ids)


# ---------------------------------------------------------------- reading and checking
def box_annotation(
    image_id: int, category_id: int, box: Sequence[float], ann_id: int, difficult: int = 0, **extra
) -> dict:
    """A COCO box annotation from an XYXY ``box`` (VOC / text box readers): ``difficult`` also sets
    ``ignore``, as the evaluators read it; ``extra`` keys (``truncated``, ``source``) are kept."""
    x1, y1, x2, y2 = box
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "area": (x2 - x1) * (y2 - y1),
        "iscrowd": 0,
        "difficult": difficult,
        "ignore": difficult,
        **extra,
    }


def categories_of(cat_id: dict[str, int]) -> list[dict]:
    """COCO ``categories`` from a name -> id table."""
    return [{"id": i, "name": n, "supercategory": "none"} for n, i in cat_id.items()]


def read_json(path: str | Path):
    """Parse a JSON file; a malformed one raises DataError with the line and column."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"malformed JSON ({exc.msg})", f"line {exc.lineno} column {exc.colno}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text ({exc})") from exc


def load_coco(path: str | Path, problems: list[DataError] | None = None) -> dict:
    """Read a COCO dataset json and check its structure (see ``check_coco``)."""
    data = read_json(path)
    return check_coco(data, path, problems)


def check_coco(data, file: object, problems: list[DataError] | None = None) -> dict:
    """Check a COCO dataset dict; return a clean copy.

    Every problem (missing keys, unknown image or category id, a bad bbox) raises DataError naming
    the file and the annotation id, or, when ``problems`` is a list, is appended there and the entry
    is dropped. Boxes are not clipped here; ``box_problems`` reports boxes outside the image.
    """
    if not isinstance(data, dict):
        raise DataError(file, f"a COCO dataset must be a JSON object, not {type(data).__name__}")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise DataError(file, f"missing or non-list '{key}'")
    categories = data.get("categories")
    if not isinstance(categories, list):
        raise DataError(file, "missing or non-list 'categories'")
    cats = []
    for i, cat in enumerate(categories):
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise DataError(file, "category needs 'id' and 'name'", f"categories[{i}]")
        cats.append(cat)
    cat_ids = {int(c["id"]) for c in cats}
    images, seen = [], set()
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            report(problems, DataError(file, "image needs 'id' and 'file_name'", f"images[{i}]"))
            continue
        if img["id"] in seen:
            report(problems, DataError(file, "duplicate image id", f"image id {img['id']}"))
            continue
        seen.add(img["id"])
        images.append(img)
    sizes = {img["id"]: (img.get("height"), img.get("width")) for img in images}
    annotations = []
    for i, ann in enumerate(data["annotations"]):
        entry = f"annotation id {ann.get('id', f'#{i}')}" if isinstance(ann, dict) else f"annotations[{i}]"
        error = _annotation_error(ann, sizes, cat_ids)
        if error:
            report(problems, DataError(file, error, entry, image=ann.get("image_id")))
            continue
        annotations.append(ann)
    out = {k: v for k, v in data.items() if k not in ("images", "annotations", "categories")}
    out.update(images=images, annotations=annotations, categories=cats)
    return out


def _annotation_error(ann, sizes: dict, cat_ids: set[int]) -> str | None:
    if not isinstance(ann, dict):
        return "annotation must be an object"
    for key in ("image_id", "category_id", "bbox"):
        if key not in ann:
            return f"missing '{key}'"
    if ann["image_id"] not in sizes:
        return f"unknown image id {ann['image_id']}"
    if int(ann["category_id"]) not in cat_ids:
        return f"unknown category id {ann['category_id']}"
    bbox = ann["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int | float) for v in bbox)):
        return f"bbox must be 4 numbers [x, y, w, h], not {bbox!r}"
    if not all(np.isfinite(bbox)):
        return f"bbox has a non-finite value {bbox!r}"
    if bbox[2] <= 0 or bbox[3] <= 0:
        x, y, w, h = bbox
        return f"degenerate box: x2 <= x1 or y2 <= y1 (x1={x}, y1={y}, x2={x + w}, y2={y + h})"
    segm = ann.get("segmentation")
    if segm:
        height, width = sizes[ann["image_id"]]
        if isinstance(segm, list) and not all(isinstance(p, list) and len(p) >= 6 for p in segm):
            return "polygon needs at least 3 points [x1, y1, x2, y2, x3, y3, ...]"
        if isinstance(segm, dict) and ("counts" not in segm or "size" not in segm):
            return "RLE segmentation needs 'counts' and 'size'"
        if isinstance(segm, dict) and height and list(segm["size"]) != [height, width]:
            return f"RLE size {segm['size']} differs from the image size [{height}, {width}]"
    return None


def box_problems(coco: dict, file: object, tolerance: float = 1.0) -> list[DataError]:
    """Boxes that reach outside their image by more than ``tolerance`` pixels."""
    sizes = {img["id"]: (img.get("height"), img.get("width"), img["file_name"]) for img in coco["images"]}
    problems = []
    for ann in coco["annotations"]:
        height, width, name = sizes[ann["image_id"]]
        if not height or not width:
            continue
        x, y, w, h = ann["bbox"]
        if x < -tolerance or y < -tolerance or x + w > width + tolerance or y + h > height + tolerance:
            problems.append(
                DataError(
                    file,
                    f"box [{x}, {y}, {x + w}, {y + h}] outside the {width}x{height} image {name}",
                    ann.get("source") or f"annotation id {ann.get('id')}",
                    image=ann["image_id"],
                )
            )
    return problems


def ensure_annotation_ids(coco: dict) -> dict:
    """Give annotations unique ids >= 1 when they lack them (pycocotools treats id 0 as unmatched)."""
    ids = [ann.get("id") for ann in coco["annotations"]]
    if all(isinstance(i, int) and i >= 1 for i in ids) and len(set(ids)) == len(ids):
        return coco
    for new_id, ann in enumerate(coco["annotations"], start=1):
        ann["id"] = new_id
    return coco


def save_coco(coco: dict, path: str | Path) -> None:
    """Write a COCO dict as JSON (RLE counts as str)."""

    def default(obj):
        if isinstance(obj, bytes):
            return obj.decode("ascii")
        if isinstance(obj, np.generic):
            return obj.item()
        raise TypeError(f"cannot write {type(obj).__name__} to JSON")

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(coco, f, default=default)
