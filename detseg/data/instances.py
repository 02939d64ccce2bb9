"""Instance masks: folders of instance-id PNGs -> COCO, and the checks an instance mask must pass.

Layout (VOC's SegmentationClass + SegmentationObject): for every image a semantic mask (class values,
through the spec's ``values``) in ``masks:`` and an instance-id PNG of the same size in ``instances:``,
where 0 is no object, ``ignore_index`` (255) is void and every other value is one object. An object's
class is the most frequent class of its pixels in the semantic mask (void and background left out).

Checks for training (:func:`instance_mask_problem`): a mask with no pixels, or none inside its box, is
refused with the annotation id (it would teach the mask head nothing but "empty"); a polygon with
fewer than 3 points is refused when the json is read (:func:`detseg.data.coco.check_coco`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detseg.data.errors import DataError, report
from detseg.data.masks import image_size, map_mask_values, mask_pairs, read_mask


def instance_masks_to_coco(
    image_dir: Path,
    mask_dir: Path,
    instance_dir: Path,
    table: np.ndarray,
    classes: list[str],
    ignore_index: int = 255,
    background: tuple[int, ...] = (0,),
    stems: list[str] | None = None,
    suffix: str = "",
    problems: list[DataError] | None = None,
) -> dict:
    """Semantic masks + instance-id PNGs -> a COCO dict (RLE, category id = class index + 1)."""
    from detseg.data.coco import mask_annotation

    pairs = mask_pairs(image_dir, mask_dir, stems, suffix, problems)
    ids_of = mask_pairs(image_dir, instance_dir, stems, suffix, problems)
    instance_pairs = {name: path for _, path, name in ids_of}
    images, annotations = [], []
    for image_id, (image, mask_path, file_name) in enumerate(pairs, start=1):
        instance_path = instance_pairs.get(file_name)
        try:
            height, width = image_size(image)
            semantic = map_mask_values(read_mask(mask_path), table, mask_path)
            ids = read_mask(instance_path)
            for path, array in ((mask_path, semantic), (instance_path, ids)):
                if array.shape != (height, width):
                    raise DataError(path, f"mask is {array.shape[1]}x{array.shape[0]} but the image "
                                    f"{image.name} is {width}x{height}", image=image.stem)
            objects = []
            for value in np.unique(ids):
                if value == 0 or value == ignore_index:
                    continue
                mask = ids == value
                votes = semantic[mask]
                votes = votes[(votes != ignore_index) & ~np.isin(votes, background)]
                if votes.size == 0:
                    raise DataError(instance_path, f"instance {int(value)} covers only background or void "
                                    f"pixels in {mask_path.name}: no class for it", image=image.stem)
                objects.append((int(np.bincount(votes).argmax()), mask))
        except DataError as exc:
            report(problems, exc)
            continue
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for cls, mask in objects:
            annotations.append(mask_annotation(image_id, cls + 1, mask, len(annotations) + 1))
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(classes) if i not in background]
    return {"images": images, "annotations": annotations, "categories": categories}


def instance_mask_problem(mask: np.ndarray, box_xyxy: np.ndarray) -> str | None:
    """Why a binary mask ``[H, W]`` cannot train the mask head with its box (XYXY), or None if it can."""
    if not mask.any():
        return "empty mask (no pixels): give the object's pixels or drop the annotation"
    height, width = mask.shape
    x1, y1 = max(int(np.floor(box_xyxy[0])), 0), max(int(np.floor(box_xyxy[1])), 0)
    x2, y2 = min(int(np.ceil(box_xyxy[2])), width), min(int(np.ceil(box_xyxy[3])), height)
    if x2 <= x1 or y2 <= y1 or not mask[y1:y2, x1:x2].any():
        box = [round(float(v), 1) for v in box_xyxy]
        return f"the mask lies outside its box {box}: no pixel of it inside"
    return None
