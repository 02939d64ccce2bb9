"""Edge maps against human boundaries: precision, recall, F over thresholds, ODS and OIS (BSDS style).

For one image, threshold ``t`` and a tolerance of ``d`` pixels (BSDS: ``0.0075 x`` the diagonal):

- a predicted edge pixel (``edge >= t``) is correct if a boundary pixel of *any* human annotation
  lies within ``d`` (Euclidean); precision = correct / predicted;
- recall = boundary pixels, summed over the annotations, that have a predicted edge pixel within
  ``d`` / all boundary pixels of all annotations.

Counts are summed over images: **ODS** (optimal data-set scale) is the best F of the summed counts at
one threshold for all images; **OIS** (optimal image scale) takes each image's best threshold, then
sums those counts. Unlike the BSDS code, matching is by distance transform, not a one-to-one
assignment between predicted and true pixels, and edge maps are not thinned: pass thin edges (Canny's
are, after non-maximum suppression). So a thick predicted edge can match one boundary pixel many
times, and these figures are an upper bound of BSDS's.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def _distance_to(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel to the nearest non-zero pixel of ``mask`` (inf if none)."""
    if not mask.any():
        return np.full(mask.shape, np.inf, np.float32)
    return cv2.distanceTransform((~mask).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def _as_bool(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"{name}: expected a non-empty [H, W] map, got shape {list(x.shape)}")
    return x != 0


def edge_counts(
    edge: np.ndarray,
    boundaries: np.ndarray | Sequence[np.ndarray],
    thresholds: Sequence[float] | np.ndarray,
    tolerance_px: float | None = None,
) -> np.ndarray:
    """``int64 [T, 4]`` counts per threshold: (correct predicted, predicted, matched true, true).

    ``edge`` [H, W] (bool, or a strength map thresholded by ``edge >= t``); ``boundaries`` one
    [H, W] boundary map or a list of them (several annotators). ``tolerance_px`` None means BSDS's
    ``0.0075 * sqrt(H^2 + W^2)``.
    """
    edge = np.asarray(edge)
    if edge.ndim != 2 or edge.size == 0:
        raise ValueError(f"edge: expected a non-empty [H, W] map, got shape {list(edge.shape)}")
    if isinstance(boundaries, np.ndarray) and boundaries.ndim == 2:
        boundaries = [boundaries]
    truths = [_as_bool(b, f"boundary {i}") for i, b in enumerate(boundaries)]
    if not truths:
        raise ValueError("edge evaluation needs at least one boundary map")
    for i, b in enumerate(truths):
        if b.shape != edge.shape:
            raise ValueError(f"boundary {i} has shape {list(b.shape)}, the edge map {list(edge.shape)}")
    d = 0.0075 * float(np.hypot(*edge.shape)) if tolerance_px is None else float(tolerance_px)
    # distance from each pixel to the nearest boundary of any annotator
    near_truth = np.minimum.reduce([_distance_to(b) for b in truths]) <= d
    out = np.zeros((len(thresholds), 4), np.int64)
    for i, t in enumerate(thresholds):
        pred = edge >= t if edge.dtype != np.bool_ else edge
        out[i, 0] = np.count_nonzero(pred & near_truth)
        out[i, 1] = np.count_nonzero(pred)
        near_pred = _distance_to(pred) <= d
        out[i, 2] = sum(np.count_nonzero(b & near_pred) for b in truths)
        out[i, 3] = sum(np.count_nonzero(b) for b in truths)
    return out


def _prf(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    counts = np.atleast_2d(counts).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(counts[:, 1] > 0, counts[:, 0] / counts[:, 1], 0.0)
        r = np.where(counts[:, 3] > 0, counts[:, 2] / counts[:, 3], 0.0)
        f = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    return p, r, f


def evaluate_edges(
    edges: Sequence[np.ndarray],
    boundaries: Sequence[np.ndarray | Sequence[np.ndarray]],
    thresholds: Sequence[float] | np.ndarray | int = 99,
    tolerance_px: float | None = None,
) -> dict:
    """ODS and OIS over a set of images.

    ``edges``: per image an edge strength map (thresholded by ``>= t``) or a bool map; ``boundaries``:
    per image one boundary map or a list (annotators). ``thresholds``: values, or a count n for
    ``n`` evenly spaced values strictly inside (min, max] of all edge maps (BSDS uses 99 in (0, 1)).
    Returns ``ods_f``, ``ods_precision``, ``ods_recall``, ``ods_threshold``, ``ois_f``,
    ``ois_precision``, ``ois_recall``, and the curve: ``thresholds``, ``precision``, ``recall``, ``f``.
    """
    if len(edges) != len(boundaries):
        raise ValueError(f"{len(edges)} edge maps but {len(boundaries)} boundary sets")
    if not edges:
        raise ValueError("edge evaluation needs at least one image")
    if isinstance(thresholds, int):
        if all(np.asarray(e).dtype == np.bool_ for e in edges):
            thresholds = [True]
        else:
            lo = min(float(np.min(e)) for e in edges)
            hi = max(float(np.max(e)) for e in edges)
            thresholds = lo + (hi - lo) * np.arange(1, thresholds + 1) / (thresholds + 1)
    thresholds = np.asarray(thresholds, np.float64)
    per_image = [edge_counts(e, b, thresholds, tolerance_px) for e, b in zip(edges, boundaries, strict=True)]
    total = np.sum(per_image, axis=0)
    p, r, f = _prf(total)
    best = int(np.argmax(f))
    ois = np.zeros(4, np.int64)
    for counts in per_image:
        ois += counts[int(np.argmax(_prf(counts)[2]))]
    op, orc, of = (float(v[0]) for v in _prf(ois))
    return {
        "ods_f": float(f[best]),
        "ods_precision": float(p[best]),
        "ods_recall": float(r[best]),
        "ods_threshold": float(thresholds[best]),
        "ois_f": of,
        "ois_precision": op,
        "ois_recall": orc,
        "thresholds": thresholds.tolist(),
        "precision": p.tolist(),
        "recall": r.tolist(),
        "f": f.tolist(),
    }


def boundaries_from_labels(labels: np.ndarray, ignore_index: int | None = None) -> np.ndarray:
    """``bool [H, W]``: pixels whose right or lower neighbour has another label (class or instance
    borders as "human boundaries"); pairs touching ``ignore_index`` are not boundaries."""
    labels = np.asarray(labels)
    out = np.zeros(labels.shape, bool)
    for a, b, where in (
        (labels[:, :-1], labels[:, 1:], (slice(None), slice(None, -1))),
        (labels[:-1, :], labels[1:, :], (slice(None, -1), slice(None))),
    ):
        diff = a != b
        if ignore_index is not None:
            diff &= (a != ignore_index) & (b != ignore_index)
        out[where] |= diff
    return out
