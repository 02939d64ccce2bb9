"""Region growing from seeds: a region spreads to connected neighbours whose grey value is close enough.

Two rules for "close enough" (``relative_to``):

- ``"seed"``: ``|v - v_seed| <= tolerance``, the seed's own value fixed throughout. This is exactly
  ``skimage.segmentation.flood(image, seed, tolerance=tolerance)`` (``cv2.floodFill`` with a fixed range
  does the work).
- ``"mean"``: ``|v - mean(region)| <= tolerance``, the mean of the region grown so far. It grows in
  rounds: each round adds every pixel within tolerance of the current mean that connects to the region,
  then the mean is updated; it stops when a round adds nothing. Rounds make the result independent of
  the visiting order (a pixel-by-pixel queue would not be), and the region never shrinks.

Seeds are ``(row, col)`` pairs; connectivity 4 (edge neighbours) or 8 (edge and corner neighbours).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from detseg.classic.thresholding import to_gray

Seed = tuple[int, int]


def _check_seeds(seeds: Sequence[Seed], shape: tuple[int, int]) -> list[Seed]:
    checked = []
    for i, seed in enumerate(seeds):
        if len(seed) != 2:
            raise ValueError(f"seed {i}: expected (row, col), got {seed!r}")
        r, c = int(seed[0]), int(seed[1])
        if not (0 <= r < shape[0] and 0 <= c < shape[1]):
            raise ValueError(
                f"seed {i} (row {r}, col {c}) is outside the image of {shape[0]} rows x {shape[1]} cols"
            )
        checked.append((r, c))
    if not checked:
        raise ValueError("region growing needs at least one seed")
    return checked


def _flood(gray: np.ndarray, seed: Seed, lo: float, hi: float, connectivity: int) -> np.ndarray:
    """Pixels connected to ``seed`` whose value v satisfies ``v_seed - lo <= v <= v_seed + hi``."""
    h, w = gray.shape
    mask = np.zeros((h + 2, w + 2), np.uint8)  # OpenCV wants a 1-pixel border around the mask
    flags = connectivity | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (1 << 8)
    cv2.floodFill(gray, mask, (seed[1], seed[0]), 0, lo, hi, flags)
    return mask[1:-1, 1:-1]


def region_grow(
    image: np.ndarray,
    seeds: Sequence[Seed],
    tolerance: float,
    relative_to: str = "seed",
    connectivity: int = 4,
    channel: int | None = None,
    max_rounds: int = 1000,
) -> np.ndarray:
    """Grow one region per seed: labels ``[H, W]`` (``uint8`` for up to 255 seeds, else ``int32``),
    0 = not grown, ``i + 1`` = grown from seed i.

    Where regions overlap, the earlier seed keeps the pixel. ``(labels > 0)`` is the union mask; for a
    single seed with ``relative_to="seed"`` it equals ``skimage.segmentation.flood(grey, seed,
    tolerance=tolerance, connectivity=1 if connectivity == 4 else 2)``. Tolerance is in grey levels;
    on uint8 images a fractional tolerance acts like its floor.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if relative_to not in ("seed", "mean"):
        raise ValueError(f"relative_to must be 'seed' or 'mean', got {relative_to!r}")
    gray = to_gray(image, channel)
    seeds = _check_seeds(seeds, gray.shape)
    labels = None
    for i, seed in enumerate(seeds):
        if relative_to == "seed":
            grown = _flood(gray, seed, tolerance, tolerance, connectivity)
        else:
            grown = _grow_mean(gray, seed, tolerance, connectivity, max_rounds)
        if labels is None:  # grown holds 0 and 1: seed 0's labels already
            labels = grown.astype(np.uint8 if len(seeds) < 256 else np.int32)
        else:
            labels[(grown > 0) & (labels == 0)] = i + 1
    return labels


def _grow_mean(
    gray: np.ndarray, seed: Seed, tolerance: float, connectivity: int, max_rounds: int
) -> np.ndarray:
    region = np.zeros(gray.shape, np.uint8)
    region[seed] = 1
    mean, size = float(gray[seed]), 1
    for _ in range(max_rounds):
        # candidates: within tolerance of the current mean, or already in the region
        near = (np.abs(gray.astype(np.float32) - mean) <= tolerance).astype(np.uint8) | region
        grown = _flood(near, seed, 0, 0, connectivity)
        new_size = int(cv2.countNonZero(grown))
        if new_size == size:
            break
        region, size = grown, new_size
        mean = float(cv2.mean(gray, mask=region)[0])
    return region


def auto_seeds(image: np.ndarray, n: int = 16, window: int = 7, channel: int | None = None) -> list[Seed]:
    """``n`` seeds ``(row, col)`` in the flattest places of the image, spread over a grid.

    The image is cut into a grid of about ``n`` cells; in each cell the seed is the pixel with the
    lowest local standard deviation (over a ``window x window`` box), i.e. well inside a uniform
    region, where growing is most meaningful. Deterministic.
    """
    gray = to_gray(image, channel)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    h, w = gray.shape
    f = gray.astype(np.float32)
    mean = cv2.boxFilter(f, -1, (window, window))
    var = cv2.boxFilter(f * f, -1, (window, window)) - mean * mean
    rows = max(1, min(h, int(round(np.sqrt(n * h / w)))))
    cols = max(1, min(w, int(np.ceil(n / rows))))
    seeds: list[Seed] = []
    row_edges = np.linspace(0, h, rows + 1).astype(int)
    col_edges = np.linspace(0, w, cols + 1).astype(int)
    for r0, r1 in zip(row_edges[:-1], row_edges[1:], strict=True):
        for c0, c1 in zip(col_edges[:-1], col_edges[1:], strict=True):
            if r1 <= r0 or c1 <= c0:
                continue
            cell = var[r0:r1, c0:c1]
            r, c = np.unravel_index(int(np.argmin(cell)), cell.shape)
            seeds.append((int(r0 + r), int(c0 + c)))
    return seeds[:n]
