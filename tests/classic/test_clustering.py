"""K-means colour quantization: known answers, nearest-centroid assignment, a full fit as reference."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from detseg.classic import assign_nearest, kmeans_quantize


def _four_colour_image(noise: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    colours = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [220, 220, 220]], np.float64)
    truth = np.repeat(np.arange(4), 40 * 40).reshape(80, 80)
    image = colours[truth] + rng.integers(-noise, noise + 1, (80, 80, 3))
    return image.astype(np.uint8), colours


def test_k4_recovers_the_colours_and_is_reproducible():
    image, colours = _four_colour_image()
    a = kmeans_quantize(image, k=4, seed=3)
    distance = np.linalg.norm(a.centroids[:, None, :] - colours[None], axis=-1)  # found x true
    assert sorted(distance.argmin(1).tolist()) == [0, 1, 2, 3]  # one centroid per true colour
    assert distance.min(1).max() < 1.5
    b = kmeans_quantize(image, k=4, seed=3)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.centroids, b.centroids)
    assert a.labels.shape == (80, 80) and a.labels.dtype == np.int32
    assert a.quantized.shape == image.shape and a.quantized.dtype == np.uint8
    palette = np.clip(np.rint(a.centroids), 0, 255).astype(np.uint8)
    assert np.array_equal(a.quantized, palette[a.labels])
    luma = palette @ [0.299, 0.587, 0.114]
    assert np.all(np.diff(luma) >= 0)  # darkest centroid first


def test_assignment_is_the_nearest_centroid_and_mse_is_exact():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (5000, 3)).astype(np.uint8)
    centroids = rng.uniform(0, 255, (8, 3)).astype(np.float32)
    labels, dist = assign_nearest(pixels, centroids)
    d = ((pixels[:, None, :].astype(np.float64) - centroids[None]) ** 2).sum(-1)
    assert np.array_equal(labels, d.argmin(1))
    np.testing.assert_allclose(dist, d.min(1), rtol=1e-4, atol=1e-2)


def test_mse_close_to_a_full_kmeans_fit(shared_data):
    path = shared_data / "camvid" / "val" / "0016E5_08001.png"
    image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    result = kmeans_quantize(image, k=8, seed=0)  # fitted on a 6-bit colour histogram
    pixels = image.reshape(-1, 3).astype(np.float32)
    cv2.setRNGSeed(0)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 1e-3)
    compactness, _, _ = cv2.kmeans(pixels, 8, None, criteria, 3, cv2.KMEANS_PP_CENTERS)
    full_mse = compactness / pixels.shape[0]
    assert result.mse == pytest.approx(((result.quantized.astype(np.float64) - image) ** 2).sum(-1).mean(),
                                       rel=0.01)
    assert result.mse <= 1.02 * full_mse


def test_grey_uses_the_exact_histogram_and_matches_lloyd_on_every_pixel():
    # A grey image's 256-bin histogram is exact: the fit is k-means on every pixel. From the fitted
    # centroids, one Lloyd step on all pixels must not move them (they are a fixed point), and the
    # error must be within 0.5 % of OpenCV's full fit (both are local optima of the same problem).
    rng = np.random.default_rng(2)
    gray = np.clip(rng.normal(0, 1, (120, 90)).cumsum(1) * 4 + 128, 0, 255).astype(np.uint8)
    result = kmeans_quantize(gray, k=5, seed=1)
    pixels = gray.reshape(-1).astype(np.float64)
    labels = result.labels.reshape(-1)
    means = np.array([pixels[labels == j].mean() for j in range(5)])
    np.testing.assert_allclose(result.centroids[:, 0], means, atol=1e-3)
    cv2.setRNGSeed(0)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 1e-4)
    column = pixels.astype(np.float32)[:, None]
    compactness, _, _ = cv2.kmeans(column, 5, None, criteria, 5, cv2.KMEANS_PP_CENTERS)
    assert result.mse <= compactness / pixels.size * 1.005


def test_few_distinct_colours_spread_over_few_bins_are_clustered_exactly():
    # 12 distinct colours that fall into 3 bins of the 6-bit histogram: k = 6 must still separate
    # colours inside a bin (the fit moves to the exact distinct colours).
    base = np.array([[10, 10, 10], [100, 100, 100], [200, 200, 200]])
    colours = np.concatenate([base + d for d in (0, 1, 2, 3)])
    image = np.repeat(colours, 25, axis=0).reshape(30, 10, 3).astype(np.uint8)
    result = kmeans_quantize(image, k=6, seed=0)
    assert len(np.unique(result.labels)) == 6
    assert result.mse < 1.0


def test_bits_trade_time_for_exactness():
    image, _ = _four_colour_image(noise=40)
    coarse = kmeans_quantize(image, k=4, seed=0, bits=4)
    exact = kmeans_quantize(image, k=4, seed=0, bits=8)
    assert exact.mse <= coarse.mse * 1.01
    with pytest.raises(ValueError, match="bits"):
        kmeans_quantize(image, bits=9)


def test_fewer_colours_than_k_gives_those_colours():
    image = np.zeros((6, 6, 3), np.uint8)
    image[:3] = (10, 20, 30)
    result = kmeans_quantize(image, k=8)
    assert result.centroids.tolist() == [[0, 0, 0], [10, 20, 30]]
    assert np.array_equal(result.quantized, image) and result.mse == 0
    single = kmeans_quantize(np.full((1, 1, 3), 5, np.uint8), k=4)
    assert single.centroids.shape == (1, 3) and single.labels.tolist() == [[0]]


def test_grey_and_other_colour_spaces():
    image, _ = _four_colour_image()
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    g = kmeans_quantize(gray, k=4, seed=0)
    assert g.centroids.shape == (4, 1) and g.quantized.shape == gray.shape
    lab = kmeans_quantize(image, k=4, color_space="lab", seed=0)
    assert len(np.unique(lab.labels)) == 4
    # the quantized image in RGB is close to the input: the colour-space round trip works
    assert np.abs(lab.quantized.astype(int) - image).mean() < 10


def test_bad_arguments():
    image, _ = _four_colour_image()
    with pytest.raises(ValueError, match="k must be"):
        kmeans_quantize(image, k=0)
    with pytest.raises(ValueError, match="k must be"):
        kmeans_quantize(image, k=300)
    with pytest.raises(ValueError, match="color_space"):
        kmeans_quantize(image, color_space="xyz")
    with pytest.raises(ValueError, match="needs an RGB image"):
        kmeans_quantize(image[..., 0], color_space="lab")
    with pytest.raises(ValueError, match="uint8"):
        kmeans_quantize(image.astype(np.uint16))
