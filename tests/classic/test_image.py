"""Bad and unusual input: unreadable files, 16-bit, float, RGBA, single-pixel and empty images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from detseg.classic import (
    canny,
    check_image,
    kmeans_quantize,
    read_image,
    region_grow,
    sobel,
    threshold_adaptive,
    threshold_otsu,
    to_uint8,
)


def test_to_uint8_conversions():
    assert to_uint8(np.array([[0, 257, 65535, 128]], np.uint16)).tolist() == [[0, 1, 255, 0]]
    assert to_uint8(np.array([[0.0, 0.5, 1.0]])).tolist() == [[0, 128, 255]]
    assert to_uint8(np.array([[True, False]])).tolist() == [[255, 0]]
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = 255
    assert to_uint8(rgba).shape == (2, 2, 3)
    assert to_uint8(np.zeros((2, 2, 2), np.uint8)).shape == (2, 2)  # grey + alpha
    with pytest.raises(ValueError, match=r"float image must hold finite values in \[0, 1\]"):
        to_uint8(np.array([[0.0, 2.0]]))
    with pytest.raises(ValueError, match="finite"):
        to_uint8(np.array([[np.nan]]))
    with pytest.raises(ValueError, match="unsupported dtype"):
        to_uint8(np.zeros((2, 2), np.complex64))


def test_read_image_formats_and_errors(tmp_path):
    deep = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    assert np.array_equal(read_image(tmp_path / "deep.png"), to_uint8(deep))
    bgra = np.zeros((3, 3, 4), np.uint8)
    bgra[..., 2] = 200  # red in OpenCV's BGR order
    bgra[..., 3] = 100
    cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    rgb = read_image(tmp_path / "rgba.png")
    assert rgb.shape == (3, 3, 3) and rgb[0, 0].tolist() == [200, 0, 0]  # RGB order, alpha dropped
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"junk.png: cannot read image"):
        read_image(tmp_path / "junk.png")
    with pytest.raises(ValueError, match="no such image file"):
        read_image(tmp_path / "missing.png")


def test_methods_refuse_unconverted_input():
    for bad, message in [
        (np.zeros((4, 4), np.uint16), "expected uint8, got uint16"),
        (np.zeros((4, 4), np.float32), "convert with detseg.classic.to_uint8"),
        (np.zeros((4, 0), np.uint8), "empty image"),
        (np.zeros((4, 4, 4), np.uint8), r"expected shape \[H, W\] or \[H, W, 3\]"),
        ([[1, 2]], "expected a numpy array"),
    ]:
        with pytest.raises(ValueError, match=message):
            check_image(bad)
        with pytest.raises(ValueError, match=message):
            threshold_otsu(bad)


def test_single_pixel_images_work():
    pixel = np.array([[77]], np.uint8)
    assert not threshold_otsu(pixel).any()  # a constant image has no foreground
    assert threshold_adaptive(pixel, 3).shape == (1, 1)
    assert sobel(pixel).magnitude.tolist() == [[0.0]]
    assert not canny(pixel).any()
    assert region_grow(pixel, [(0, 0)], 0).tolist() == [[1]]
    result = kmeans_quantize(np.full((1, 1, 3), 9, np.uint8), k=8)
    assert result.centroids.tolist() == [[9, 9, 9]] and result.quantized.tolist() == [[[9, 9, 9]]]
