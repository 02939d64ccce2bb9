"""Thresholding against OpenCV and scikit-image on the real shared data.

"Otsu equals skimage" means: the same integer threshold t as ``skimage.filters.threshold_otsu`` and
therefore the same mask ``grey > t``, on every membrane and CamVid image (grey and each RGB channel).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.filters import threshold_multiotsu as sk_multiotsu
from skimage.filters import threshold_otsu as sk_otsu

from detseg.classic import (
    multiotsu_thresholds,
    otsu_threshold,
    threshold_adaptive,
    threshold_fixed,
    threshold_multiotsu,
    threshold_otsu,
    to_gray,
)


def _real_images(shared_data):
    paths = sorted((shared_data / "membrane" / "train" / "image").glob("*.png"))
    paths += sorted((shared_data / "camvid" / "val").glob("*.png"))
    assert len(paths) == 24 + 101
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


def test_otsu_equals_skimage_on_membrane_and_camvid(shared_data):
    checked = 0
    for image in _real_images(shared_data):
        gray = to_gray(image)
        t = otsu_threshold(gray)
        assert t == sk_otsu(gray)
        assert np.array_equal(threshold_otsu(gray, exact=True), gray > sk_otsu(gray))
        assert np.array_equal(threshold_otsu(gray), gray > sk_otsu(gray))  # the default: OpenCV's Otsu
        if image[..., 0].any() and not np.array_equal(image[..., 0], image[..., 1]):  # colour frames
            for c in range(3):
                assert otsu_threshold(image, channel=c) == sk_otsu(image[..., c])
        checked += 1
    assert checked == 125


def test_otsu_hand_worked_and_constant():
    # two clusters {10, 20} and {200, 210}: any t in [20, 199] separates them, Otsu picks the first
    image = np.array([[10, 20, 200, 210]], np.uint8)
    assert otsu_threshold(image) == 20 == sk_otsu(image)
    assert threshold_otsu(image).tolist() == [[False, False, True, True]]
    constant = np.full((3, 3), 7, np.uint8)
    assert otsu_threshold(constant) == 7 == sk_otsu(constant)
    assert not threshold_otsu(constant).any()
    assert otsu_threshold(np.array([[42]], np.uint8)) == 42  # a single pixel is a valid image


def test_fixed_threshold_is_strictly_greater_like_opencv():
    image = np.arange(256, dtype=np.uint8).reshape(16, 16)
    mask = threshold_fixed(image, 100)
    assert mask.dtype == bool and mask.sum() == 155  # 101..255
    assert np.array_equal(mask, cv2.threshold(image, 100, 255, cv2.THRESH_BINARY)[1] > 0)


@pytest.mark.parametrize("method", ["mean", "gaussian"])
def test_adaptive_equals_opencv(shared_data, method):
    gray = cv2.imread(str(shared_data / "membrane" / "train" / "image" / "3.png"), cv2.IMREAD_GRAYSCALE)
    code = cv2.ADAPTIVE_THRESH_MEAN_C if method == "mean" else cv2.ADAPTIVE_THRESH_GAUSSIAN_C
    expected = cv2.adaptiveThreshold(gray, 255, code, cv2.THRESH_BINARY, 31, -3) > 0
    assert np.array_equal(threshold_adaptive(gray, 31, -3, method), expected)
    with pytest.raises(ValueError, match="odd"):
        threshold_adaptive(gray, 30)


def test_multiotsu_equals_skimage(shared_data):
    paths = [shared_data / "membrane" / "train" / "image" / "5.png",
             shared_data / "camvid" / "val" / "0016E5_07959.png"]
    for path in paths:
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        for classes in (3, 4):
            assert multiotsu_thresholds(gray, classes) == sk_multiotsu(gray, classes).tolist()
    # hand-worked: three well separated groups
    image = np.array([[0, 1, 100, 101, 250, 251]], np.uint8)
    assert multiotsu_thresholds(image, 3) == [1, 101]
    assert threshold_multiotsu(image, 3).tolist() == [[0, 0, 1, 1, 2, 2]]
    with pytest.raises(ValueError, match="distinct grey values"):
        multiotsu_thresholds(np.array([[1, 2]], np.uint8), 3)


def test_channel_choice_and_bad_input():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 1] = 200
    assert np.array_equal(to_gray(rgb, channel=1), rgb[..., 1])
    assert to_gray(rgb)[0, 0] == round(0.587 * 200)  # OpenCV's luma weights
    with pytest.raises(ValueError, match="channel"):
        to_gray(rgb, channel=3)
    with pytest.raises(ValueError, match="greyscale"):
        to_gray(rgb[..., 0], channel=2)
    with pytest.raises(ValueError, match="uint8"):
        threshold_otsu(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="empty"):
        threshold_otsu(np.zeros((0, 4), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        threshold_otsu(np.zeros((4, 4, 4), np.uint8))
