"""Merging the detections of overlapping image slices into one set, class by class, as SAHI does
(Akyon et al. 2022, ``sahi/postprocess/combine.py``):

- ``nms``: keep the best box, drop every box of its class matching it (torchvision's ``batched_nms``
  for IoU, the same greedy loop for IoS);
- ``greedy-nmm`` (greedy non-maximum merging): as NMS, but the boxes matching the kept box are merged
  into it (union of the boxes, the best score, the kept box's label) instead of dropped; a box only
  merges with the kept box it matches itself (no chaining);
- ``nmm`` (non-maximum merging): a box matching any member of a kept box's group joins that group too
  (chains: A matches B, B matches C, so C joins A though A and C do not overlap).

A box joins a group when its match with the group's box is ``>= threshold``; the members are then
merged one by one into the growing box, each only if it still matches it (``>= threshold``; SAHI 0.12.8's
``has_match``): one that no longer does is dropped, as in SAHI. The members merge in SAHI 0.12.8's order:
greedy NMM's by score, NMM's in the order the boxes came (slice by slice). Boxes are taken by score, ties
broken by (x1, y1, x2, y2), smallest first, as SAHI does, so the result does not depend on the order of
the input (``nms`` by IoU leaves ties to torchvision's ``batched_nms``). ``iou``: intersection over union;
``ios``: intersection over the smaller box's area, which is near 1 for a box cut by a slice border
against the whole object's box, where IoU is small.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

MERGES = ("nms", "nmm", "greedy-nmm")
MATCHES = ("iou", "ios")


def match_values(box: Tensor, boxes: Tensor, match: str = "iou") -> Tensor:
    """IoU or IoS ``[M]`` of one (x1, y1, x2, y2) ``box`` ``[4]`` against ``boxes`` ``[M, 4]``, as the merge
    computes them (:func:`_match_array`, in the boxes' dtype, on the CPU)."""
    if match not in MATCHES:
        raise ValueError(f"match must be one of {', '.join(MATCHES)}, not {match!r}")
    array = boxes.detach().cpu().numpy().reshape(-1, 4)
    return torch.from_numpy(_match_array(box.detach().cpu().numpy(), array, match))


def merge_detections(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    method: str = "greedy-nmm",
    match: str = "ios",
    threshold: float = 0.5,
) -> tuple[Tensor, Tensor, Tensor, list[list[int]]]:
    """Merge ``boxes`` ``[N, 4]`` (x1, y1, x2, y2), ``scores`` ``[N]``, ``labels`` ``[N]`` per class by
    ``method`` (see the module docstring). Returns the merged boxes, scores and labels, best score first,
    and for each the indices of the input detections merged into it (the kept one first).

    As SAHI 0.12.8 computes them: the groups from float32 matches, the merge of a group's members in
    float64 (Python floats)."""
    if method not in MERGES:
        raise ValueError(f"merge must be one of {', '.join(MERGES)}, not {method!r}")
    if match not in MATCHES:
        raise ValueError(f"match must be one of {', '.join(MATCHES)}, not {match!r}")
    boxes, scores = boxes.detach().float().reshape(-1, 4).cpu(), scores.detach().float().reshape(-1).cpu()
    labels = labels.detach().reshape(-1).cpu()
    if method == "nms" and match == "iou":
        from torchvision.ops import batched_nms

        keep = batched_nms(boxes, scores, labels, threshold)
        return boxes[keep], scores[keep], labels[keep], [[k] for k in keep.tolist()]
    array, values = boxes.numpy(), scores.numpy()
    grouping = _nmm_groups if method == "nmm" else _greedy_groups
    groups = []
    for label in labels.unique().tolist():
        index = torch.nonzero(labels == label).flatten().numpy()
        groups += [index[group].tolist() for group in grouping(array[index], values[index], match, threshold)]
    rows, score_list = array.tolist(), values.tolist()
    out_boxes, out_scores, kept = [], [], []
    for group in groups:
        box, members = rows[group[0]], [group[0]]
        for j in group[1:] if method != "nms" else []:
            if _pair_match(box, rows[j], match) >= threshold:
                box = _union(box, rows[j])
                members.append(j)
        out_boxes.append(box)
        out_scores.append(max(score_list[m] for m in members))
        kept.append(members)
    if not kept:
        return boxes.new_zeros(0, 4), scores.new_zeros(0), labels.new_zeros(0), []
    order = torch.tensor(out_scores).argsort(descending=True, stable=True)
    firsts = torch.tensor([members[0] for members in kept])
    return (torch.tensor(out_boxes)[order], torch.tensor(out_scores)[order], labels[firsts][order],
            [kept[i] for i in order.tolist()])  # fmt: skip


def _union(a: list[float], b: list[float]) -> list[float]:
    return [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]


def _pair_match(a: list[float], b: list[float], match: str) -> float:
    """IoU or IoS of two boxes in float64 (SAHI's ``has_match``); 0 where the denominator is 0."""
    inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    area_a, area_b = (a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])
    denominator = area_a + area_b - inter if match == "iou" else min(area_a, area_b)
    return inter / denominator if denominator > 0 else 0.0


def _match_array(box: np.ndarray, rest: np.ndarray, match: str) -> np.ndarray:
    """IoU or IoS of ``box`` against each row of ``rest`` in their dtype (float32 here, as SAHI's metric
    matrix); 0 where the denominator is 0."""
    width = np.maximum(0, np.minimum(box[2], rest[:, 2]) - np.maximum(box[0], rest[:, 0]))
    height = np.maximum(0, np.minimum(box[3], rest[:, 3]) - np.maximum(box[1], rest[:, 1]))
    inter = width * height
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (rest[:, 2] - rest[:, 0]) * (rest[:, 3] - rest[:, 1])
    denominator = area + areas - inter if match == "iou" else np.minimum(area, areas)
    return np.divide(inter, denominator, out=np.zeros_like(inter), where=denominator > 0)


def _score_order(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices by score, highest first, ties by (x1, y1, x2, y2) ascending (SAHI's ``np.lexsort``)."""
    return np.lexsort((boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0], -scores))


def _greedy_groups(boxes: np.ndarray, scores: np.ndarray, match: str, threshold: float) -> list[list[int]]:
    """SAHI's ``greedy_nmm`` (and IoS NMS): the best box left takes every box left matching it."""
    remaining = _score_order(boxes, scores)
    groups = []
    while len(remaining):
        best, rest = remaining[0], remaining[1:]
        hit = _match_array(boxes[best], boxes[rest], match) >= threshold
        groups.append([int(best), *rest[hit].tolist()])
        remaining = rest[~hit]
    return groups


def _nmm_groups(boxes: np.ndarray, scores: np.ndarray, match: str, threshold: float) -> list[list[int]]:
    """SAHI's ``nmm``: boxes in score order; a box not yet in a group starts one, and what it matches
    (not yet grouped) joins; a grouped box's matches join its group (the chains), each box's matches in
    input order."""
    order = _score_order(boxes, scores)
    groups: dict[int, list[int]] = {}
    group_of: dict[int, int] = {}
    everything = np.arange(len(boxes))
    for i in order.tolist():
        others = everything[everything != i]
        matched = others[_match_array(boxes[i], boxes[others], match) >= threshold].tolist()  # input order
        keep = group_of.get(i, i)
        if i not in group_of:
            groups[i] = []
        for j in matched:
            if j not in groups and j not in group_of:
                groups[keep].append(j)
                group_of[j] = keep
    return [[keep, *members] for keep, members in groups.items()]
