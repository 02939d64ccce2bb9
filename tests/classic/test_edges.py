"""Sobel and Canny against OpenCV, and the sign convention of the lecture's Lx, Ly."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from detseg.classic import LX, LY, canny, canny_thresholds, sobel


@pytest.fixture(scope="module")
def membrane(shared_data):
    path = shared_data / "membrane" / "train" / "image" / "0.png"
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)[:200, :256]


def test_sobel_equals_opencv(membrane):
    for ksize in (3, 5):
        result = sobel(membrane, ksize=ksize)
        assert np.array_equal(result.gx, cv2.Sobel(membrane, cv2.CV_32F, 1, 0, ksize=ksize))
        assert np.array_equal(result.gy, cv2.Sobel(membrane, cv2.CV_32F, 0, 1, ksize=ksize))
        np.testing.assert_allclose(result.magnitude, np.hypot(result.gx, result.gy), rtol=1e-5, atol=1e-3)


def test_lecture_kernels_are_opencv_sobel_negated(membrane):
    # sliding Lx, Ly as a cross-correlation (cv2.filter2D, deep-learning style) gives -d/dx and -d/dy
    corr_x = cv2.filter2D(membrane, cv2.CV_32F, LX)
    corr_y = cv2.filter2D(membrane, cv2.CV_32F, LY)
    opencv = sobel(membrane)
    lecture = sobel(membrane, convention="lecture")
    assert np.array_equal(corr_x, -opencv.gx) and np.array_equal(corr_y, -opencv.gy)
    assert np.array_equal(lecture.gx, corr_x) and np.array_equal(lecture.gy, corr_y)
    # a true convolution with Lx (kernel flipped) is OpenCV's derivative
    assert np.array_equal(cv2.filter2D(membrane, cv2.CV_32F, cv2.flip(LX, -1)), opencv.gx)
    np.testing.assert_array_equal(lecture.magnitude, opencv.magnitude)


def test_sobel_hand_worked_step():
    # dark left half (0), bright right half (10): at the step d/dx = (1 + 2 + 1) * 10 = 40
    image = np.zeros((5, 6), np.uint8)
    image[:, 3:] = 10
    r = sobel(image)
    assert r.gx[2, 2] == 40 and r.gx[2, 3] == 40 and r.gx[2, 0] == 0
    assert not r.gy.any()
    assert r.direction[2, 2] == pytest.approx(0.0, abs=0.1)  # gradient points right
    lecture = sobel(image, convention="lecture")
    assert lecture.gx[2, 2] == -40
    assert lecture.direction[2, 2] == pytest.approx(180.0, abs=0.1)


def test_canny_equals_opencv(membrane):
    assert np.array_equal(canny(membrane, 50, 150, blur_sigma=0), cv2.Canny(membrane, 50, 150) > 0)
    blurred = cv2.GaussianBlur(membrane, (0, 0), 1.5)
    expected = cv2.Canny(blurred, 30, 90, apertureSize=5, L2gradient=True) > 0
    assert np.array_equal(canny(membrane, 30, 90, blur_sigma=1.5, aperture=5, l2_gradient=True), expected)


def test_canny_thresholds_from_the_image(membrane):
    median = float(np.sort(membrane, axis=None)[(membrane.size - 1) // 2])  # the lower median
    low, high = canny_thresholds(membrane, "median", sigma=0.33)
    assert (low, high) == pytest.approx((0.67 * median, min(255, 1.33 * median)))
    from skimage.filters import threshold_otsu

    assert canny_thresholds(membrane, "otsu") == (threshold_otsu(membrane) / 2, threshold_otsu(membrane))
    blurred = cv2.GaussianBlur(membrane, (0, 0), 1.0)
    auto_low, auto_high = canny_thresholds(blurred)
    assert np.array_equal(canny(membrane), cv2.Canny(blurred, auto_low, auto_high) > 0)
    with pytest.raises(ValueError, match="above high"):
        canny(membrane, 100, 50)
    with pytest.raises(ValueError, match="median"):
        canny_thresholds(membrane, "mean")
