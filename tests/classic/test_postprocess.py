"""Post-processing against scipy / scikit-image and by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage import measure, morphology

from detseg.classic import (
    closing,
    connected_components,
    fill_holes,
    instances,
    invert,
    opening,
    remove_small_components,
    remove_small_holes,
    structuring_element,
)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Same components up to renumbering (0 stays background)."""
    pairs = set(zip(a.ravel().tolist(), b.ravel().tolist(), strict=True))
    return len(pairs) == len(np.unique(a)) == len(np.unique(b)) and ((a == 0) == (b == 0)).all()


@pytest.mark.parametrize("seed", range(5))
def test_against_scipy_and_skimage(seed):
    mask = np.random.default_rng(seed).random((40, 50)) < 0.45
    assert np.array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))
    for connectivity, sk in ((4, 1), (8, 2)):
        labels, n = connected_components(mask, connectivity)
        reference = measure.label(mask, connectivity=sk)
        assert n == reference.max() and _same_partition(labels, reference)
        kept = remove_small_components(mask, 6, connectivity)
        assert np.array_equal(kept, morphology.remove_small_objects(mask, max_size=5, connectivity=sk))


@pytest.mark.parametrize("shape", ["rect", "ellipse", "cross"])
def test_opening_closing_equal_scipy_on_a_padded_plane(shape):
    mask = np.random.default_rng(7).random((30, 40)) < 0.55
    for radius in (1, 2):
        element = structuring_element(radius, shape).astype(bool)
        pad = 2 * radius
        plane = np.pad(mask, pad)
        crop = (slice(pad, -pad), slice(pad, -pad))
        assert np.array_equal(opening(mask, radius, shape), ndimage.binary_opening(plane, element)[crop])
        assert np.array_equal(closing(mask, radius, shape), ndimage.binary_closing(plane, element)[crop])


def test_remove_small_with_more_than_65535_components():
    mask = np.zeros((600, 600), bool)
    mask[::2, ::2] = True  # 90 000 single pixels: past 16-bit labels
    mask[300:310, 300:310] = True
    kept = remove_small_components(mask, 2)
    assert kept[300:310, 300:310].all() and kept.sum() < 200
    assert np.array_equal(kept, morphology.remove_small_objects(mask, max_size=1, connectivity=2))


def test_opening_and_closing_by_hand():
    mask = np.zeros((9, 9), bool)
    mask[2:7, 2:7] = True  # a 5x5 square ...
    mask[0, 8] = True  # ... and a lone pixel
    opened = opening(mask, radius=1, shape="rect")
    assert opened[2:7, 2:7].all() and opened.sum() == 25  # the square survives, the speck goes
    gap = np.zeros((5, 9), bool)
    gap[1:4, 1:4] = gap[1:4, 5:8] = True  # two squares one pixel apart
    closed = closing(gap, radius=1, shape="rect")
    assert closed[1:4, 1:8].all() and closed.sum() == 21  # the gap is filled, nothing else
    assert structuring_element(2, "cross").tolist()[0] == [0, 0, 1, 0, 0]
    with pytest.raises(ValueError, match="shape"):
        opening(mask, 1, shape="star")


def test_holes_instances_and_invert():
    ring = np.zeros((7, 7), bool)
    ring[1:6, 1:6] = True
    ring[3, 3] = False  # a one-pixel hole
    assert fill_holes(ring)[3, 3] and fill_holes(ring).sum() == 25
    assert remove_small_holes(ring, 2)[3, 3]
    assert not remove_small_holes(ring, 1)[3, 3]
    two = np.zeros((6, 6), bool)
    two[0:2, 0:2] = True
    two[4:6, 3:6] = True
    masks = instances(two)
    assert masks.shape == (2, 6, 6) and masks.dtype == np.uint8
    assert sorted(masks.sum((1, 2)).tolist()) == [4, 6]
    assert instances(two, min_size=5).shape == (1, 6, 6)
    assert instances(np.zeros((3, 3), bool)).shape == (0, 3, 3)
    assert np.array_equal(invert(two), ~two)
    with pytest.raises(ValueError, match="2-D"):
        fill_holes(np.zeros((2, 2, 2), bool))
