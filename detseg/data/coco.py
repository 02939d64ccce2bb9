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


def mask_annotation(image_id: int, category_id: int, mask, ann_id: int, segmentation=None, **extra) -> dict:
    """A COCO annotation of a binary ``mask`` ``[H, W]`` (mask and instance-id readers): its box and area
    from the mask; ``segmentation`` defaults to the mask's RLE; ``extra`` keys (``source``) are kept."""
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": mask_to_box(mask),
        "area": float(mask.sum()),
        "iscrowd": 0,
        "segmentation": mask_to_rle(mask) if segmentation is None else segmentation,
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

    Ids first (``coco_ids``: string image ids mapped to ints, a null or non-integer id refused), then
    every annotation (unknown image or category id, a bad bbox or segmentation). Each problem raises
    DataError naming the file, the annotation id and the field, or, when ``problems`` is a list, is
    appended there and the entry is dropped. Boxes are not clipped here; ``box_problems`` reports
    boxes outside the image.
    """
    out = coco_ids(data, file, problems)
    sizes = {img["id"]: (img.get("height"), img.get("width")) for img in out["images"]}
    cat_ids = {c["id"] for c in out["categories"]}
    annotations = []
    for i, ann in enumerate(out["annotations"]):
        error = _annotation_error(ann, sizes, cat_ids)
        if error:
            report(problems, DataError(file, error, _ann_entry(ann, i), image=ann.get("image_id")))
            continue
        annotations.append(ann)
    out["annotations"] = annotations
    return out


# ---------------------------------------------------------------- ids
def int_id(value) -> int | None:
    """``value`` as an integer id (an int, or a float holding one), else None (null, bool, text, ...)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _ann_entry(ann, index: int) -> str:
    if isinstance(ann, dict) and isinstance(ann.get("id"), int | str) and not isinstance(ann["id"], bool):
        return f"annotation id {ann['id']}"
    return f"annotations[{index}]"


def _shown(value) -> str:
    """A JSON value as a message shows it: null, 'text' in quotes, numbers and lists as written."""
    return "null" if value is None else f"{value!r:.60}"


def coco_ids(data, file: object, problems: list[DataError] | None = None) -> dict:
    """The one reading of a COCO dict's ids that every command shares (data check, train, eval, convert).

    - Category ids must be integers (``3`` or ``3.0``); null, text or ``1.5`` is refused.
    - Image ids may be integers or strings (tools that export COCO often write file names): strings
      get integer ids above the largest integer id, in the order of ``images``, and keep the string in
      ``original_id``; annotations (and results, ``map_result_image_ids``) that name the string follow.
      A null, list, object or fractional image id is refused.
    - An annotation's ``image_id`` and ``category_id`` follow the same rules (unknown ids are left for
      ``check_coco``). Annotation ids are left as they are (``number_annotations``).

    A refused entry raises DataError naming the file, the entry (annotation id) and the field, or is
    appended to ``problems`` and dropped. Returns a new dict with new lists; images are shallow copies,
    annotations too where an id changed. Idempotent.
    """
    if not isinstance(data, dict):
        raise DataError(file, f"a COCO dataset must be a JSON object, not {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(file, f"missing or non-list '{key}'")
    categories, cat_seen = [], set()
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise DataError(file, "category needs 'id' and 'name'", f"categories[{i}]")
        cid = int_id(cat["id"])
        if cid is None:
            raise DataError(
                file, f"field 'id' must be an integer, got {_shown(cat['id'])}", f"categories[{i}]"
            )
        if cid in cat_seen:
            raise DataError(file, f"duplicate category id {cid}", f"categories[{i}]")
        cat_seen.add(cid)
        categories.append({**cat, "id": cid})
    raw_images = []
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            report(problems, DataError(file, "image needs 'id' and 'file_name'", f"images[{i}]"))
            continue
        if int_id(img["id"]) is None and not isinstance(img["id"], str):
            report(
                problems,
                DataError(
                    file,
                    f"field 'id' must be an integer or a string, got {_shown(img['id'])}",
                    f"images[{i}]",
                ),
            )
            continue
        if not isinstance(img["file_name"], str) or not img["file_name"]:
            report(
                problems,
                DataError(
                    file,
                    f"field 'file_name' must be a file name, got {_shown(img['file_name'])}",
                    f"image id {img['id']}",
                ),
            )
            continue
        raw_images.append(img)
    top = max((int_id(img["id"]) for img in raw_images if not isinstance(img["id"], str)), default=0)
    id_of: dict = {}  # the id as written (int or str) -> int id
    images = []
    for img in raw_images:
        raw = img["id"]
        key = raw if isinstance(raw, str) else int_id(raw)
        if key in id_of:
            report(problems, DataError(file, "duplicate image id", f"image id {raw}"))
            continue
        if isinstance(raw, str):
            top += 1
            id_of[raw] = top
            images.append({**img, "id": top, "original_id": raw})
        else:
            id_of[key] = key
            images.append({**img, "id": key})
    annotations = []
    for i, ann in enumerate(data["annotations"]):
        if type(ann) is dict and type(ann.get("image_id")) is int and type(ann.get("category_id")) is int:
            annotations.append(ann)  # the usual case: nothing to read differently (no copy)
            continue
        if not isinstance(ann, dict):
            report(problems, DataError(file, "annotation must be an object", f"annotations[{i}]"))
            continue
        entry = _ann_entry(ann, i)
        clean = dict(ann)
        error = None
        if "image_id" in ann:
            raw = ann["image_id"]
            if isinstance(raw, str):
                clean["image_id"] = id_of.get(raw, raw)
            elif int_id(raw) is None:
                error = f"field 'image_id' must be an integer or a string, got {_shown(raw)}"
            else:
                clean["image_id"] = int_id(raw)
        if "category_id" in ann and error is None:
            clean["category_id"] = int_id(ann["category_id"])
            if clean["category_id"] is None:
                error = f"field 'category_id' must be an integer, got {_shown(ann['category_id'])}"
        if error:
            report(problems, DataError(file, error, entry))
            continue
        annotations.append(clean)
    out = {k: v for k, v in data.items() if k not in ("images", "annotations", "categories")}
    out.update(images=images, annotations=annotations, categories=categories)
    return out


def number_annotations(coco: dict) -> dict:
    """Give annotations without an integer ``id`` one above the largest (in place); integer ids stay,
    0 and duplicates too (``ensure_annotation_ids`` renumbers those; evaluators judge them)."""
    top = max((int_id(a.get("id")) or 0 for a in coco["annotations"]), default=0)
    for ann in coco["annotations"]:
        if int_id(ann.get("id")) is None:
            top += 1
            ann["id"] = top
    return coco


def result_ids(results: list, gt: dict, file: object) -> list:
    """Detections' ids read as ``coco_ids`` reads the ground truth's: an ``image_id`` that is a string
    the ground truth mapped (or the file name or stem of one of its images) gets that image's int id;
    a null, list, object or fractional ``image_id`` or ``category_id`` raises DataError naming the file,
    the detection and the field. Unknown integer ids are left for the evaluator to name.

    Returns ``results`` itself when nothing needed a change (a 500k-detection file is not copied).
    """
    if not isinstance(results, list):
        return results
    by_name: dict[str, int] | None = None
    out = results
    for i, det in enumerate(results):
        if type(det) is dict and type(det.get("image_id")) is int and type(det.get("category_id")) is int:
            continue  # the usual case, checked at the cost of two type() calls
        if not isinstance(det, dict):
            raise DataError(file, f"a detection must be an object, got {_shown(det)}", f"detection {i}")
        fixed = dict(det)
        raw = det.get("image_id")
        if isinstance(raw, str):
            if by_name is None:
                by_name = {}
                for img in gt["images"]:
                    by_name.setdefault(Path(str(img["file_name"])).stem, img["id"])
                    by_name.setdefault(str(img["file_name"]), img["id"])
                by_name.update(
                    {img["original_id"]: img["id"] for img in gt["images"] if "original_id" in img}
                )
            if raw not in by_name and Path(raw).stem not in by_name:
                raise DataError(file, f"unknown image id {raw!r} (not in the ground truth)", f"detection {i}")
            fixed["image_id"] = by_name.get(raw, by_name.get(Path(raw).stem))
        elif "image_id" in det:
            fixed["image_id"] = int_id(raw)
            if fixed["image_id"] is None:
                raise DataError(
                    file,
                    f"field 'image_id' must be an integer or a string, got {_shown(raw)}",
                    f"detection {i}",
                )
        if "category_id" in det:
            fixed["category_id"] = int_id(det["category_id"])
            if fixed["category_id"] is None:
                raise DataError(
                    file,
                    f"field 'category_id' must be an integer, got {_shown(det['category_id'])}",
                    f"detection {i}",
                )
        if out is results:
            out = list(results)
        out[i] = fixed
    return out


def _annotation_error(ann, sizes: dict, cat_ids: set[int]) -> str | None:
    if not isinstance(ann, dict):
        return "annotation must be an object"
    for key in ("image_id", "category_id", "bbox"):
        if key not in ann:
            return f"missing '{key}'"
    if ann["image_id"] not in sizes:
        return f"unknown image id {_shown(ann['image_id'])}"
    if ann["category_id"] not in cat_ids:
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
