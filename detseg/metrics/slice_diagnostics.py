"""Where sliced inference loses objects and leaves duplicates (``detseg eval det --tile ... --report``).

Each ground-truth object is placed on the slice grid its image was run on (SAHI's grid,
:func:`detseg.data.tiles.iter_windows`): a slice *holds* an object when the object's box lies inside the
slice, and *cuts* it when they overlap (positive area) without the slice holding it. The places:

- ``inside``: no slice cuts it (every slice that sees any of it sees all of it);
- ``border``: a slice border cuts it, but another slice holds it whole (the overlap saves it; the merge
  must fold the cut part's box into the whole one's);
- ``cut``: every slice that sees it cuts it (no slice holds it: only the merge of its parts, or
  ``--full-image``, finds it whole; a larger overlap would make it ``border``).

An image no larger than the tile is run whole (one slice: every object ``inside``). Recall per place is
the share of its objects that TIDE's matching (:func:`detseg.metrics.tide.tide`: by score, at IoU
``fg_iou``, the best ``max_dets`` detections per image) takes; a recall much lower on ``cut`` or
``border`` than ``inside`` says that the overlap is too small or the merge wrong. The duplicates are
TIDE's: detections on an object already found (IoU >= ``fg_iou``), i.e. the parts the merge did not fold
together, counted by the place of that object, with TIDE's duplicate dAP (the AP they cost).
Crowd and 'difficult' objects are left out, as TIDE leaves them out.
"""

from __future__ import annotations

import numpy as np

from detseg.data.tiles import iter_windows

PLACES = ("inside", "border", "cut")
PLACE_TEXT = {
    "inside": "inside one slice (no slice border cuts it)",
    "border": "cut by a slice border, whole in another slice",
    "cut": "cut by every slice that sees it",
}


def object_places(boxes: np.ndarray, height: int, width: int, tile: int, overlap: float) -> list[str]:
    """The place (``PLACES``) of each (x1, y1, x2, y2) box ``[N, 4]`` of a ``height`` x ``width`` image
    run on ``tile`` x ``tile`` slices sharing ``overlap`` (see the module docstring)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if tile >= height and tile >= width:
        return ["inside"] * len(boxes)
    windows = np.array(list(iter_windows(height, width, tile, overlap)), np.float64)
    wx1, wy1 = windows[:, 0], windows[:, 1]
    wx2, wy2 = wx1 + windows[:, 2], wy1 + windows[:, 3]
    x1, y1, x2, y2 = (boxes[:, k, None] for k in range(4))
    overlaps = (np.minimum(x2, wx2) > np.maximum(x1, wx1)) & (np.minimum(y2, wy2) > np.maximum(y1, wy1))
    holds = (x1 >= wx1) & (y1 >= wy1) & (x2 <= wx2) & (y2 <= wy2)
    cuts = (overlaps & ~holds).any(1)
    held = holds.any(1)
    return ["inside" if not c else "border" if h else "cut" for c, h in zip(cuts, held, strict=True)]


def slice_diagnostics(gt: dict, analysis, tile: int, overlap: float) -> dict:
    """Recall by place and the duplicates that survive the merge, for a sliced run.

    ``gt``: the COCO ground truth (its images need ``height`` and ``width``); ``analysis``: the TIDE result
    (:func:`detseg.metrics.tide.tide`) of the run's merged detections against it. Returns ``tile``,
    ``overlap``, ``fg_iou``, and per place (``PLACES``) ``objects``, ``found`` and ``recall`` (NaN without
    objects), ``duplicates`` (``all`` too) and ``duplicate_dAP`` (TIDE's, a fraction of AP)."""
    sizes = {}
    for image in gt["images"]:
        if not image.get("height") or not image.get("width"):
            raise ValueError(f"image {image.get('id')} has no height and width: the slice grid needs them")
        sizes[image["id"]] = (int(image["height"]), int(image["width"]))
    annotations = gt["annotations"]
    place = [""] * len(annotations)
    by_image: dict = {}
    for j, ann in enumerate(annotations):
        by_image.setdefault(ann["image_id"], []).append(j)
    for image_id, index in by_image.items():
        boxes = np.array([annotations[j]["bbox"] for j in index], np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        for j, p in zip(index, object_places(boxes, *sizes[image_id], tile, overlap), strict=True):
            place[j] = p
    objects, found = dict.fromkeys(PLACES, 0), dict.fromkeys(PLACES, 0)
    for j, kind in enumerate(analysis.gt_kind):
        if kind != "ignored":
            objects[place[j]] += 1
            found[place[j]] += kind == "tp"
    duplicates = dict.fromkeys(PLACES, 0)
    for kind, target in zip(analysis.det_kind, analysis.det_target, strict=True):
        if kind == "duplicate":
            duplicates[place[int(target)]] += 1
    recall = {p: found[p] / objects[p] if objects[p] else float("nan") for p in PLACES}
    return {
        "tile": int(tile),
        "overlap": float(overlap),
        "fg_iou": float(analysis.fg_iou),
        "objects": objects,
        "found": found,
        "recall": recall,
        "duplicates": {**duplicates, "all": sum(duplicates.values())},
        "duplicate_dAP": float(analysis.dap["duplicate"]),
    }


def summary(diagnostics: dict) -> str:
    """The diagnostics as the eval command prints them."""
    d = diagnostics
    lines = [
        f"Slices ({d['tile']} px, overlap {d['overlap']:g}): recall at IoU {d['fg_iou']:g} by where the "
        "object lies on the slice grid",
        f"  {'place':<48}{'objects':>8}{'found':>8}{'recall':>8}{'duplicates':>12}",
    ]
    for p in PLACES:
        recall = "-" if np.isnan(d["recall"][p]) else f"{d['recall'][p]:.3f}"
        lines.append(f"  {PLACE_TEXT[p]:<48}{d['objects'][p]:>8}{d['found'][p]:>8}{recall:>8}"
                     f"{d['duplicates'][p]:>12}")  # fmt: skip
    lines.append(f"  duplicates surviving the merge: {d['duplicates']['all']}, TIDE duplicate dAP "
                 f"{d['duplicate_dAP'] * 100:.2f} AP points")  # fmt: skip
    return "\n".join(lines)
