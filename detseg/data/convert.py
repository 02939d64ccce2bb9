"""Ground truth and results from any box format, and conversion between formats.

``load_detection_gt`` and ``load_detection_results`` are what the evaluators call: they turn a COCO
json, a folder of VOC XML files or a folder of text box files into a COCO dataset dict and a COCO
results list. ``convert`` writes one format as another (``detseg convert``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from detseg.data.coco import (
    check_coco,
    coco_ids,
    ensure_annotation_ids,
    load_coco,
    read_json,
    result_ids,
    save_coco,
)
from detseg.data.errors import DataError
from detseg.data.outputs import staged

SOURCE_FORMATS = ("coco", "voc", "text", "masks")
TARGET_FORMATS = ("coco", "voc", "text")


def _folder_kind(path: Path) -> str:
    if any(path.glob("*.xml")):
        return "voc"
    if any(path.glob("*.txt")):
        return "text"
    raise DataError(path, "folder holds neither VOC .xml nor text .txt box files")


def load_detection_gt(
    path: str | Path,
    class_names: Sequence[str] | None = None,
    box_format: str = "xyxy",
    image_dir: str | Path | None = None,
    id_names: Sequence[str] | None = None,
    split: str = "val",
) -> dict:
    """Ground truth as a COCO dataset dict from a COCO json, a VOC XML folder, a text box folder or a spec.

    Annotations get ``bbox [x, y, w, h]``, ``area``, ``iscrowd`` and ids >= 1; VOC ``difficult`` objects
    (and ``difficult`` text lines) keep ``difficult: 1`` and ``ignore: 1``. Folders get image ids 1..N
    in stem order and category ids 1..K in ``class_names`` order (sorted names when none given). A COCO
    json keeps its own ids. ``image_dir`` gives image sizes (needed for ``rel_xcycwh`` text boxes).
    """
    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        from detseg.data.dataset import DetectionDataset

        return DetectionDataset(path, split).coco_gt()
    if path.is_file():
        coco = load_coco(path)
        if class_names is not None:
            names = {c["id"]: c["name"] for c in coco["categories"]}
            for ann in coco["annotations"]:
                if names[ann["category_id"]] not in class_names:
                    raise DataError(
                        path, f"unknown class '{names[ann['category_id']]}'", f"annotation id {ann.get('id')}"
                    )
    elif path.is_dir():
        if _folder_kind(path) == "voc":
            from detseg.data.voc import voc_to_coco

            coco = voc_to_coco(path, image_dir, class_names)
            # Text detections scored against it are in the same 1-based pixel frame (see _text_results).
            coco.setdefault("info", {})["box_convention"] = "voc"
        else:
            from detseg.data.textboxes import text_to_coco

            coco = text_to_coco(path, image_dir, class_names, box_format, id_names)
        coco = check_coco(coco, path)
    else:
        raise DataError(path, "ground truth not found")
    for ann in coco["annotations"]:
        ann.pop("source", None)
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))
    return ensure_annotation_ids(coco)


def load_detection_results(
    path: str | Path,
    gt: dict,
    box_format: str = "xyxy",
    id_names: Sequence[str] | None = None,
) -> list[dict]:
    """Detections as a COCO results list (``image_id``, ``category_id``, ``bbox [x, y, w, h]``, ``score``).

    Accepts a COCO results json (a list, ids as in ``gt``), a COCO-style dict with ``images`` and scored
    ``annotations`` (matched to ``gt`` by file stem and category name), or a folder of text files
    ``class score a b c d`` (``box_format``; matched by file stem and class name). Unknown images or
    classes raise DataError naming the file and entry.

    Text boxes scored against VOC XML ground truth (``gt["info"]["box_convention"] == "voc"``) are read
    in VOC's 1-based inclusive pixel frame, like the XML, so that ``x1 = xmin - 1``: mAP tools write
    detections in the frame of the XML they are compared with, and the devkit's "+1" IoU follows.
    """
    path = Path(path)
    image_by_stem = {Path(img["file_name"]).stem: img for img in gt["images"]}
    image_ids = {img["id"] for img in gt["images"]}
    cat_by_name = {c["name"]: c["id"] for c in gt["categories"]}
    cat_ids = set(cat_by_name.values())
    if path.is_dir():
        voc_frame = gt.get("info", {}).get("box_convention") == "voc"
        return _text_results(path, image_by_stem, cat_by_name, box_format, id_names, voc_frame)
    data = read_json(path)
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        return _dict_results(path, data, image_by_stem, cat_by_name)
    if not isinstance(data, list):
        raise DataError(path, "results must be a JSON list of detections (or a dict with 'annotations')")
    data = result_ids(data, gt, path)  # string image ids and file names -> the ground truth's ids
    results = []
    for i, det in enumerate(data):
        entry = f"detection {i}"
        if (
            not isinstance(det, dict)
            or "score" not in det
            or "image_id" not in det
            or "category_id" not in det
        ):
            raise DataError(path, "a detection needs image_id, category_id and score", entry)
        if det["image_id"] not in image_ids and Path(str(det["image_id"])).stem in image_by_stem:
            det = {**det, "image_id": image_by_stem[Path(str(det["image_id"])).stem]["id"]}  # a file name
        if det["image_id"] not in image_ids:
            raise DataError(path, f"unknown image id {det['image_id']} (not in the ground truth)", entry)
        if det["category_id"] not in cat_ids:
            raise DataError(
                path, f"unknown category id {det['category_id']} (not in the ground truth)", entry
            )
        if "bbox" not in det and "segmentation" not in det:
            raise DataError(path, "a detection needs bbox or segmentation", entry)
        results.append(_result(det, det["image_id"], det["category_id"], path, entry))
    return results


def _number(value) -> float | None:
    """A finite JSON number as float, else None (null, text, bool, nan, inf)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if np.isfinite(value) else None


def _result(det: Mapping, image_id, category_id, path: Path, entry: str) -> dict:
    score = _number(det["score"])
    if score is None:
        raise DataError(path, f"field 'score' must be a finite number, got {det['score']!r:.60}", entry)
    out = {"image_id": image_id, "category_id": category_id, "score": score}
    if "bbox" in det:
        raw = det["bbox"]
        bbox = [_number(v) for v in raw] if isinstance(raw, list) else []
        if len(bbox) != 4 or None in bbox or bbox[2] < 0 or bbox[3] < 0:
            raise DataError(path, f"field 'bbox' must be [x, y, w, h] with w, h >= 0, not {raw!r:.80}", entry)
        out["bbox"] = bbox
    if det.get("segmentation"):
        out["segmentation"] = det["segmentation"]
    return out


def _dict_results(path: Path, data: dict, image_by_stem: dict, cat_by_name: dict) -> list[dict]:
    if not isinstance(data.get("images", []), list) or not isinstance(data.get("categories", []), list):
        raise DataError(path, "'images' and 'categories' must be lists")
    data = coco_ids({"images": [], "categories": [], **data}, path)
    stems = {img["id"]: Path(img["file_name"]).stem for img in data.get("images", [])}
    names = {c["id"]: c["name"] for c in data.get("categories", [])}
    results = []
    for i, det in enumerate(data["annotations"]):
        entry = f"annotation id {det.get('id', i)}"
        stem = stems.get(det.get("image_id"))
        if stem not in image_by_stem:
            raise DataError(
                path, f"image id {det.get('image_id')} ({stem}) is not in the ground truth", entry
            )
        name = names.get(det.get("category_id"))
        if name not in cat_by_name:
            raise DataError(path, f"unknown class '{name}' (not in the ground truth)", entry)
        if "score" not in det:
            raise DataError(path, "a detection needs a score", entry)
        results.append(_result(det, image_by_stem[stem]["id"], cat_by_name[name], path, entry))
    return results


def _text_results(
    folder: Path,
    image_by_stem: dict,
    cat_by_name: dict,
    box_format: str,
    id_names: Sequence[str] | None,
    voc_frame: bool = False,
) -> list[dict]:
    from detseg.data.textboxes import read_text_boxes

    results = []
    for path in sorted(folder.glob("*.txt")):
        image = image_by_stem.get(path.stem)
        if image is None:
            raise DataError(path, f"no image with stem '{path.stem}' in the ground truth")
        size = (image["height"], image["width"]) if image.get("height") and image.get("width") else None
        for row in read_text_boxes(path, True, box_format, size, id_names):
            if row["name"] not in cat_by_name:
                raise DataError(
                    path, f"unknown class '{row['name']}' (not in the ground truth)", f"line {row['line']}"
                )
            x1, y1, x2, y2 = row["box"]
            if voc_frame:
                x1, y1 = x1 - 1, y1 - 1
            results.append(
                {
                    "image_id": image["id"],
                    "category_id": cat_by_name[row["name"]],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": row["score"],
                }
            )
    return results


def read_any(
    src: str | Path,
    src_format: str,
    images: str | Path | None = None,
    classes: Sequence[str] | None = None,
    box_format: str = "xyxy",
    id_names: Sequence[str] | None = None,
    values: Mapping[int, int] | None = None,
    ignore_index: int = 255,
    segmentation: str = "polygon",
) -> dict:
    """Read annotations in ``src_format`` into a COCO dataset dict."""
    if src_format == "coco":
        coco = load_coco(src)
    elif src_format == "voc":
        from detseg.data.voc import voc_to_coco

        coco = voc_to_coco(src, images, classes)
    elif src_format == "text":
        from detseg.data.textboxes import text_to_coco

        coco = text_to_coco(src, images, classes, box_format, id_names)
    elif src_format == "masks":
        from detseg.data.masks import mask_pairs, masks_to_coco, value_table

        if images is None or classes is None:
            raise DataError(src, "mask folders need the image folder (--images) and the classes (--classes)")
        background = (0,) if classes[0].lower() in ("background", "bg") else ()
        table = value_table(values, len(classes), ignore_index)
        coco = masks_to_coco(
            mask_pairs(images, src), table, list(classes), ignore_index, background, segmentation
        )
    else:
        raise ValueError(f"unknown source format {src_format!r}; use one of {', '.join(SOURCE_FORMATS)}")
    for ann in coco["annotations"]:
        ann.pop("source", None)
    return coco


def write_any(
    coco: dict, dst: str | Path, dst_format: str, box_format: str = "xyxy", results: list[dict] | None = None
) -> None:
    """Write a COCO dataset dict (or ``results`` on it) as ``dst_format``."""
    if dst_format == "coco":
        save_coco(results if results is not None else coco, dst)
    elif dst_format == "voc":
        if results is not None:
            raise ValueError("VOC XML holds no scores: write results as coco or text")
        from detseg.data.voc import coco_to_voc

        coco_to_voc(coco, dst)
    elif dst_format == "text":
        from detseg.data.textboxes import coco_to_text

        coco_to_text(coco, dst, results, box_format)
    else:
        raise ValueError(f"unknown target format {dst_format!r}; use one of {', '.join(TARGET_FORMATS)}")


def convert(
    src: str | Path,
    dst: str | Path,
    src_format: str,
    dst_format: str,
    *,
    gt: str | Path | None = None,
    **options,
) -> dict:
    """Convert ground truth (or, with ``gt``, detection results) from ``src_format`` to ``dst_format``.

    ``options``: ``images``, ``classes``, ``box_format``, ``id_names``, ``values``, ``ignore_index``,
    ``segmentation`` (``polygon`` or ``rle`` for masks), ``out_box_format``. Returns counts.
    """
    out_box_format = options.pop("out_box_format", None) or options.get("box_format", "xyxy")
    if gt is not None:
        truth = load_detection_gt(
            gt,
            options.get("classes"),
            options.get("box_format", "xyxy"),
            options.get("images"),
            options.get("id_names"),
        )
        results = load_detection_results(
            src, truth, options.get("box_format", "xyxy"), options.get("id_names")
        )
        with staged(dst, folder=dst_format != "coco") as tmp:  # whole or not at all
            write_any(truth, tmp, dst_format, out_box_format, results)
        return {"images": len(truth["images"]), "detections": len(results)}
    coco = read_any(src, src_format, **options)
    with staged(dst, folder=dst_format != "coco") as tmp:
        write_any(coco, tmp, dst_format, out_box_format)
    return {
        "images": len(coco["images"]),
        "annotations": len(coco["annotations"]),
        "categories": len(coco["categories"]),
    }
