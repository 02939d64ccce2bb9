"""K-means colour quantization: every pixel replaced by the nearest of K centroid colours.

Fast on megapixel images: the centroids are fitted (``cv2.kmeans``, k-means++ start, iterated to
convergence) on a random sample of pixels, then every pixel is assigned to its nearest centroid in one
vectorised pass (``|x|^2 - 2 x.c + |c|^2`` as a matrix product). The sample comes from a seeded numpy
generator and ``cv2.setRNGSeed(seed)`` fixes OpenCV's k-means++ draws, so a seed reproduces the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from detseg.classic.image import check_image

_TO_SPACE = {"rgb": None, "lab": cv2.COLOR_RGB2LAB, "hsv": cv2.COLOR_RGB2HSV, "ycrcb": cv2.COLOR_RGB2YCrCb}
_FROM_SPACE = {"rgb": None, "lab": cv2.COLOR_LAB2RGB, "hsv": cv2.COLOR_HSV2RGB, "ycrcb": cv2.COLOR_YCrCb2RGB}


@dataclass
class KMeansResult:
    """``labels`` int32 [H, W] in 0..n-1; ``centroids`` float32 [n, C] in the clustering colour space;
    ``quantized`` uint8 image of the input's shape (RGB or grey) with each pixel's centroid colour;
    centroids are ordered from the darkest to the brightest (by the luma of their RGB colour);
    ``mse`` the mean squared distance of the pixels to their centroid in that space (per pixel, summed
    over channels). ``n`` is K, or fewer when the image has fewer distinct colours than K."""

    labels: np.ndarray
    centroids: np.ndarray
    quantized: np.ndarray
    mse: float


def assign_nearest(pixels: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of each pixel: labels int32 [N] and squared distances float32 [N].

    ``pixels`` [N, C] (any real dtype), ``centroids`` [K, C]. Distances are ``|x|^2 - 2 x.c + |c|^2``
    with the pixels laid out channel-major, so that the matrix product and the arg-min run over
    long contiguous rows (several times faster than ``[N, K]`` with a tiny K axis).
    """
    centroids = np.asarray(centroids, np.float32)
    x = np.ascontiguousarray(pixels.T, dtype=np.float32)  # [C, N]
    d = (-2 * centroids) @ x  # [K, N]
    d += (centroids**2).sum(1)[:, None]
    labels = cv2.reduceArgMin(d, 0).ravel() if d.shape[1] < 2**31 else d.argmin(0).astype(np.int32)
    dist = d.min(0)
    dist += (x * x).sum(0)
    return labels.astype(np.int32, copy=False), np.maximum(dist, 0, out=dist)


def kmeans_quantize(
    image: np.ndarray,
    k: int = 8,
    color_space: str = "rgb",
    sample_size: int | None = 10_000,
    seed: int = 0,
    attempts: int = 3,
    max_iter: int = 100,
    eps: float = 1e-3,
) -> KMeansResult:
    """Quantize ``image`` (uint8 grey [H, W] or RGB [H, W, 3]) to ``k`` colours.

    ``color_space``: "rgb", "lab", "hsv" or "ycrcb" (OpenCV's 8-bit encodings; hue is treated as a
    linear value). ``sample_size``: pixels used to fit the centroids (None or >= H*W: all pixels);
    ``attempts``: k-means++ restarts on the sample, the most compact kept (restarts are cheap on a
    sample and avoid the occasional poor local optimum).
    If the image has at most ``k`` distinct colours, the centroids are exactly those colours (fewer
    than ``k``, no error) and, in "rgb", the quantized image equals the input.
    """
    image = check_image(image)
    if not 1 <= k <= 256:
        raise ValueError(f"k must be in 1..256, got {k}")
    if color_space not in _TO_SPACE:
        raise ValueError(f"color_space must be one of {sorted(_TO_SPACE)}, got {color_space!r}")
    if image.ndim == 2 and color_space != "rgb":
        raise ValueError(f"color_space {color_space!r} needs an RGB image; got a greyscale one")
    h, w = image.shape[:2]
    space = image if _TO_SPACE[color_space] is None else cv2.cvtColor(image, _TO_SPACE[color_space])
    pixels = space.reshape(h * w, -1)
    rng = np.random.default_rng(seed)
    if sample_size is None or sample_size >= pixels.shape[0]:
        sample = pixels
    else:
        sample = pixels[rng.integers(0, pixels.shape[0], sample_size)]
    centroids = None
    if _count_colours(sample) < k:
        colours = _distinct_colours(pixels)  # rare path: few colours in the sample, look at every pixel
        if colours.shape[0] <= k:
            centroids = colours.astype(np.float32)
        else:
            sample = pixels  # the image has more colours than the sample saw
    if centroids is None:
        cv2.setRNGSeed(int(seed))
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, max_iter, eps)
        _, _, centroids = cv2.kmeans(
            sample.astype(np.float32), k, None, criteria, attempts, cv2.KMEANS_PP_CENTERS
        )
    palette = np.clip(np.rint(centroids), 0, 255).astype(np.uint8)
    if _FROM_SPACE[color_space] is not None:
        palette = cv2.cvtColor(palette[None], _FROM_SPACE[color_space])[0]
    # darkest centroid first: label i then means about the same across images (and runs)
    luma = palette.astype(np.float64) @ ([0.299, 0.587, 0.114] if palette.shape[1] == 3 else [1.0])
    order = np.argsort(luma, kind="stable")
    centroids, palette = np.asarray(centroids)[order], palette[order]
    labels, dist = assign_nearest(pixels, centroids)
    labels = labels.reshape(h, w)
    if image.ndim == 3:
        # cv2.LUT maps a 3-channel index image through a 3-channel table: much faster than palette[labels]
        lut = np.zeros((256, 1, 3), np.uint8)
        lut[: palette.shape[0], 0] = palette
        index = labels.astype(np.uint8)
        quantized = cv2.LUT(cv2.merge([index, index, index]), lut)
    else:
        quantized = palette[:, 0][labels]
    return KMeansResult(labels, centroids.astype(np.float32), quantized, float(dist.mean()))


def _pack(pixels: np.ndarray) -> np.ndarray:
    """One int64 per uint8 colour, so that distinct colours can be found with a 1-D unique."""
    weights = 256 ** np.arange(pixels.shape[1] - 1, -1, -1, dtype=np.int64)
    return pixels.astype(np.int64) @ weights


def _count_colours(pixels: np.ndarray) -> int:
    return int(np.unique(_pack(pixels)).size)


def _distinct_colours(pixels: np.ndarray) -> np.ndarray:
    packed = np.unique(_pack(pixels))
    shifts = 8 * np.arange(pixels.shape[1] - 1, -1, -1)
    return ((packed[:, None] >> shifts[None, :]) & 255).astype(np.uint8)
