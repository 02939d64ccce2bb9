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
merged one by one into the growing box, each only if it still matches it (``> threshold``; SAHI's
``has_match``): one that no longer does is dropped, as in SAHI. ``iou``: intersection over union;
``ios``: intersection over the smaller box's area, which is near 1 for a box cut by a slice border
against the whole object's box, where IoU is small.
"""

from __future__ import annotations

import torch
from torch import Tensor

MERGES = ("nms", "nmm", "greedy-nmm")
MATCHES = ("iou", "ios")


def match_values(box: Tensor, boxes: Tensor, match: str = "iou") -> Tensor:
    """IoU or IoS ``[M]`` of one (x1, y1, x2, y2) ``box`` ``[4]`` against ``boxes`` ``[M, 4]``."""
    if match not in MATCHES:
        raise ValueError(f"match must be one of {', '.join(MATCHES)}, not {match!r}")
    lt = torch.maximum(boxes[:, :2], box[:2])
    rb = torch.minimum(boxes[:, 2:], box[2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    areas = (boxes[:, 2:] - boxes[:, :2]).prod(1)
    area = (box[2:] - box[:2]).prod()
    denominator = areas + area - inter if match == "iou" else torch.minimum(areas, area)
    return inter / denominator.clamp(min=1e-12)


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
    and for each the indices of the input detections merged into it (the kept one first)."""
    if method not in MERGES:
        raise ValueError(f"merge must be one of {', '.join(MERGES)}, not {method!r}")
    match_values(boxes.new_zeros(4), boxes.new_zeros(0, 4), match)  # checks ``match``
    boxes, scores = boxes.float().reshape(-1, 4), scores.float().reshape(-1)
    out_boxes, out_scores, out_labels, groups = [], [], [], []
    if method == "nms" and match == "iou":
        from torchvision.ops import batched_nms

        keep = batched_nms(boxes, scores, labels, threshold).tolist()
        class_groups = [[k] for k in keep]
    else:
        class_groups = []
        for label in labels.unique().tolist():
            index = torch.nonzero(labels == label).flatten()
            grouping = _nmm_groups if method == "nmm" else _greedy_groups
            for group in grouping(boxes[index], scores[index], match, threshold):
                class_groups.append([int(index[i]) for i in group])
    for group in class_groups:
        box, members = boxes[group[0]].clone(), [group[0]]
        for j in group[1:] if method != "nms" else []:
            if float(match_values(box, boxes[j][None], match)[0]) > threshold:
                box = torch.cat([torch.minimum(box[:2], boxes[j, :2]), torch.maximum(box[2:], boxes[j, 2:])])
                members.append(j)
        out_boxes.append(box)
        out_scores.append(scores[members].max())
        out_labels.append(labels[group[0]])
        groups.append(members)
    if not groups:
        return boxes.new_zeros(0, 4), scores.new_zeros(0), labels.new_zeros(0), []
    order = torch.stack(out_scores).argsort(descending=True, stable=True).tolist()
    return (torch.stack(out_boxes)[order], torch.stack(out_scores)[order], torch.stack(out_labels)[order],
            [groups[i] for i in order])  # fmt: skip


def _greedy_groups(boxes: Tensor, scores: Tensor, match: str, threshold: float) -> list[list[int]]:
    """SAHI's ``greedy_nmm`` (and IoS NMS): the best box left takes every box left matching it."""
    remaining = scores.argsort(descending=True, stable=True)
    groups = []
    while len(remaining):
        best, rest = remaining[0], remaining[1:]
        hit = match_values(boxes[best], boxes[rest], match) >= threshold
        groups.append([int(best), *rest[hit].tolist()])
        remaining = rest[~hit]
    return groups


def _nmm_groups(boxes: Tensor, scores: Tensor, match: str, threshold: float) -> list[list[int]]:
    """SAHI's ``nmm``: boxes in score order; a box not yet in a group starts one, and what it matches
    (not yet grouped) joins; a grouped box's matches join its group (the chains)."""
    order = scores.argsort(descending=True, stable=True)
    groups: dict[int, list[int]] = {}
    group_of: dict[int, int] = {}
    for i in order.tolist():
        others = order[order != i]
        matched = others[match_values(boxes[i], boxes[others], match) >= threshold].flip(0).tolist()
        if i not in group_of:
            groups[i] = []
            for j in matched:
                if j not in group_of:
                    groups[i].append(j)
                    group_of[j] = i
        else:
            keep = group_of[i]
            for j in matched:
                if j not in groups and j not in group_of:
                    groups[keep].append(j)
                    group_of[j] = keep
    return [[keep, *members] for keep, members in groups.items()]
