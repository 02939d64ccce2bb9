"""Region growing against skimage.segmentation.flood, and the region-mean rule by hand."""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np
import pytest
from skimage.segmentation import flood

from detseg.classic import auto_seeds, region_grow


@pytest.fixture(scope="module")
def membrane(shared_data):
    path = shared_data / "membrane" / "train" / "image" / "7.png"
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)[:160, :160]


def test_seed_tolerance_equals_skimage_flood(membrane):
    rng = np.random.default_rng(0)
    for _ in range(25):
        seed = (int(rng.integers(0, 160)), int(rng.integers(0, 160)))
        tolerance = float(rng.integers(0, 50))
        connectivity = int(rng.choice([4, 8]))
        ours = region_grow(membrane, [seed], tolerance, connectivity=connectivity) > 0
        theirs = flood(membrane, seed, tolerance=tolerance, connectivity=1 if connectivity == 4 else 2)
        assert np.array_equal(ours, theirs), (seed, tolerance, connectivity)


def _mean_rounds_reference(image, seed, tolerance, connectivity):
    """Plain-Python rounds: each round floods within tolerance of the mean of the region so far."""
    region = {seed}
    steps = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    if connectivity == 8:
        steps += [(1, 1), (1, -1), (-1, 1), (-1, -1)]
    while True:
        mean = np.mean([image[p] for p in region])
        grown, queue = {seed}, deque([seed])
        while queue:
            r, c = queue.popleft()
            for dr, dc in steps:
                q = (r + dr, c + dc)
                if 0 <= q[0] < image.shape[0] and 0 <= q[1] < image.shape[1] and q not in grown:
                    if q in region or abs(float(image[q]) - mean) <= tolerance:
                        grown.add(q)
                        queue.append(q)
        if len(grown) == len(region):
            return region
        region = grown


def test_mean_rule_matches_a_plain_reference():
    rng = np.random.default_rng(2)
    for _ in range(6):
        image = rng.integers(0, 60, (20, 20)).astype(np.uint8)
        seed = (int(rng.integers(0, 20)), int(rng.integers(0, 20)))
        for connectivity in (4, 8):
            expected = np.zeros((20, 20), bool)
            for p in _mean_rounds_reference(image, seed, 15, connectivity):
                expected[p] = True
            ours = region_grow(image, [seed], 15, relative_to="mean", connectivity=connectivity) > 0
            assert np.array_equal(ours, expected)


def test_mean_rule_hand_worked():
    # seed 10; round 1 takes 12 and 14 (within 4 of 10), mean 12; round 2 takes 16 (within 4 of 12);
    # mean 13 then; 18 stays out (5 from 13). Relative to the seed, only 10, 12, 14 join.
    image = np.array([[10, 12, 14, 16, 18, 40]], np.uint8)
    assert (region_grow(image, [(0, 0)], 4, relative_to="mean") > 0).tolist() == [[1, 1, 1, 1, 0, 0]]
    assert (region_grow(image, [(0, 0)], 4, relative_to="seed") > 0).tolist() == [[1, 1, 1, 0, 0, 0]]


def test_connectivity_and_several_seeds():
    image = np.array([[5, 0, 0], [0, 5, 0], [0, 0, 9]], np.uint8)
    assert (region_grow(image, [(0, 0)], 0, connectivity=4) > 0).sum() == 1
    assert (region_grow(image, [(0, 0)], 0, connectivity=8) > 0).sum() == 2
    seeds = [(0, 1), (2, 2), (1, 0)]
    # 4-connected, the zeros form two regions; 8-connected, one, which seeds 0 and 2 both grow:
    # the earlier seed keeps the pixels
    assert region_grow(image, seeds, 0, connectivity=4).tolist() == [[0, 1, 1], [3, 0, 1], [3, 3, 2]]
    assert region_grow(image, seeds, 0, connectivity=8).tolist() == [[0, 1, 1], [1, 0, 1], [1, 1, 2]]


def test_bad_seeds_and_arguments(membrane):
    message = r"seed 1 \(row 160, col 3\) is outside the image of 160 rows x 160 cols"
    with pytest.raises(ValueError, match=message):
        region_grow(membrane, [(0, 0), (160, 3)], 5)
    with pytest.raises(ValueError, match="outside"):
        region_grow(membrane, [(-1, 0)], 5)
    with pytest.raises(ValueError, match="at least one seed"):
        region_grow(membrane, [], 5)
    with pytest.raises(ValueError, match="connectivity"):
        region_grow(membrane, [(0, 0)], 5, connectivity=6)
    with pytest.raises(ValueError, match="tolerance"):
        region_grow(membrane, [(0, 0)], -1)
    assert region_grow(np.array([[3]], np.uint8), [(0, 0)], 0).tolist() == [[1]]


def test_auto_seeds_sit_in_flat_places(membrane):
    seeds = auto_seeds(membrane, 9)
    assert len(seeds) == 9 and all(0 <= r < 160 and 0 <= c < 160 for r, c in seeds)
    image = np.full((40, 40), 100, np.uint8)
    image[:, :20] = np.random.default_rng(0).integers(0, 255, (40, 20))  # noisy left half
    assert all(c >= 20 for _, c in auto_seeds(image, 1))  # the flat half gets the seed
    assert auto_seeds(np.array([[5]], np.uint8), 16) == [(0, 0)]  # more seeds asked than pixels
