"""Edges: Sobel gradients (the lecture's Lx, Ly) and Canny's method, on OpenCV.

The lecture's kernels are

    Lx = [[+1, 0, -1],        Ly = [[+1, +2, +1],
          [+2, 0, -2],              [ 0,  0,  0],
          [+1, 0, -1]]              [-1, -2, -1]]

Slid over the image as a cross-correlation (how deep-learning frameworks and ``cv2.filter2D`` apply a
kernel), Lx gives left minus right and Ly gives top minus bottom: the *negative* of the derivative
along x (to the right) and y (downwards). ``cv2.Sobel`` returns the derivative itself, i.e. the
convolution with Lx and Ly (the kernel flipped). So ``lecture = -opencv`` for both components: the
magnitude is the same, the direction differs by 180 degrees. :func:`sobel` returns OpenCV's sign by
default and the lecture's with ``convention="lecture"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from detseg.classic.thresholding import otsu_threshold, to_gray

LX = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32)
LY = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], np.float32)


@dataclass
class SobelResult:
    """Gradients ``gx``, ``gy``, ``magnitude`` and ``direction`` (degrees in [0, 360)), float32 [H, W]."""

    gx: np.ndarray
    gy: np.ndarray
    magnitude: np.ndarray
    direction: np.ndarray


def sobel(
    image: np.ndarray, ksize: int = 3, convention: str = "opencv", channel: int | None = None
) -> SobelResult:
    """Sobel gradients of the grey image (``cv2.Sobel``, float32, border reflect-101).

    ``convention="opencv"``: ``gx = d/dx`` (x to the right), ``gy = d/dy`` (y downwards), as
    ``cv2.Sobel(grey, CV_32F, 1, 0)`` and ``(0, 1)``. ``"lecture"``: the correlation with the lecture's
    Lx and Ly, which is ``-gx`` and ``-gy``. ``direction = atan2(gy, gx)`` in degrees.
    """
    if convention not in ("opencv", "lecture"):
        raise ValueError(f"convention must be 'opencv' or 'lecture', got {convention!r}")
    gray = to_gray(image, channel)
    scale = 1.0 if convention == "opencv" else -1.0
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=ksize, scale=scale)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=ksize, scale=scale)
    magnitude, direction = cv2.cartToPolar(gx, gy, angleInDegrees=True)
    return SobelResult(gx, gy, magnitude, direction)


def canny_thresholds(gray: np.ndarray, method: str = "median", sigma: float = 0.33) -> tuple[float, float]:
    """Low and high hysteresis thresholds chosen from the image.

    ``"median"``: ``((1 - sigma) m, (1 + sigma) m)`` around the (lower) median grey level ``m``, clipped to
    [0, 255]. ``"otsu"``: high = Otsu's threshold ``t``, low = ``t / 2`` (Fang et al.'s rule).
    """
    if method == "median":
        hist = cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel()
        median = float(np.searchsorted(np.cumsum(hist), gray.size / 2))
        return max(0.0, (1 - sigma) * median), min(255.0, (1 + sigma) * median)
    if method == "otsu":
        t = float(otsu_threshold(gray))
        return t / 2, t
    raise ValueError(f"threshold method must be 'median' or 'otsu', got {method!r}")


def canny(
    image: np.ndarray,
    low: float | None = None,
    high: float | None = None,
    blur_sigma: float = 1.0,
    aperture: int = 3,
    l2_gradient: bool = False,
    auto: str = "median",
    channel: int | None = None,
) -> np.ndarray:
    """Canny edges, ``bool [H, W]``: Gaussian smoothing, Sobel gradients, non-maximum suppression,
    double threshold and hysteresis.

    Smoothing is ``cv2.GaussianBlur(grey, (0, 0), blur_sigma)`` (skipped when ``blur_sigma == 0``);
    the rest is ``cv2.Canny(smoothed, low, high, apertureSize=aperture, L2gradient=l2_gradient)``
    (OpenCV compares gradient magnitudes, |gx| + |gy| by default, with ``low`` and ``high``). When
    ``low``/``high`` are None they are chosen from the smoothed image by :func:`canny_thresholds`
    (``auto`` = "median" or "otsu"); with ``aperture`` 3 the Sobel magnitude of a step of height h is
    4h, so grey-level thresholds are the right order of magnitude for ``L1``.
    """
    gray = to_gray(image, channel)
    if blur_sigma < 0:
        raise ValueError(f"blur_sigma must be >= 0, got {blur_sigma}")
    if blur_sigma > 0:
        gray = cv2.GaussianBlur(gray, (0, 0), blur_sigma)
    if low is None or high is None:
        auto_low, auto_high = canny_thresholds(gray, auto)
        low = auto_low if low is None else low
        high = auto_high if high is None else high
    if low > high:
        raise ValueError(f"canny: low threshold {low} is above high threshold {high}")
    edges = cv2.Canny(gray, float(low), float(high), apertureSize=aperture, L2gradient=l2_gradient)
    return edges > 0  # OpenCV marks edges with 255
