"""detseg.viz.draw: boxes land on their borders in their class colour; masks blend as documented."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from detseg.viz.draw import (
    class_colors,
    colorize_mask,
    default_palette,
    draw_detections,
    overlay_mask,
    save_image,
    to_rgb_uint8,
)


def test_default_palette_is_pascal_vocs():
    palette = default_palette(256)
    # The published VOC colour map: background, aeroplane, bicycle, bird, ..., person (15), void (255).
    assert palette[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert palette[15].tolist() == [192, 128, 128] and palette[255].tolist() == [224, 224, 192]
    assert len({tuple(c) for c in palette}) == 256


def test_class_colors_are_distinct_and_seeded():
    colors = class_colors(10)
    assert len(set(colors)) == 10
    assert class_colors(10, color_seed=0) == colors and class_colors(10, color_seed=3) != colors


def test_boxes_are_drawn_on_their_borders_in_their_class_colour():
    image = np.full((60, 80, 3), 90, np.uint8)
    boxes = torch.tensor([[10.0, 20.0, 40.0, 50.0], [45.0, 5.0, 75.0, 30.0]])
    out = draw_detections(image, boxes, [0, 2], ["cat", "dog", "bird"], scores=[0.9, 0.5], width=1)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(image, np.full((60, 80, 3), 90, np.uint8)), "input must not be modified"
    colors = class_colors(3)
    for (x1, y1, x2, y2), label in zip(boxes.int().tolist(), [0, 2], strict=True):
        # Left and bottom edges (the caption sits at the top), and a point well inside stays untouched.
        assert tuple(out[(y1 + y2) // 2, x1]) == colors[label]
        assert tuple(out[y2, (x1 + x2) // 2]) == colors[label]
    assert tuple(out[45, 25]) == (90, 90, 90)
    # The captions add text pixels (caption band plus letters) near each box's top.
    assert (out[20:30, 10:40] != 90).any(axis=2).mean() > 0.5


def test_draw_detections_accepts_greyscale_tensors_and_no_boxes():
    grey = torch.full((1, 32, 32), 0.5)
    out = draw_detections(grey, np.zeros((0, 4)), [], ["a"])
    assert out.shape == (32, 32, 3) and (out == 128).all()
    with pytest.raises(ValueError, match="labels"):
        draw_detections(np.zeros((8, 8, 3), np.uint8), [[0, 0, 4, 4]], [0, 1], ["a"])


def test_overlay_mask_blends_class_colours_and_marks_ignore_and_unexpected_values():
    image = np.full((4, 6, 3), 100, np.uint8)
    mask = np.array([[0, 1, 2, 255, 7, 1]] * 4)
    out = overlay_mask(image, mask, num_classes=3, alpha=0.5)
    palette = default_palette(256).astype(float)
    expected = [(100 + palette[0]) / 2, (100 + palette[1]) / 2, (100 + palette[2]) / 2,
                (100 + palette[255]) / 2, (100 + np.array([255, 0, 255])) / 2, (100 + palette[1]) / 2]
    np.testing.assert_allclose(out[0], np.round(np.asarray(expected, float)), atol=0.5)
    assert np.array_equal(overlay_mask(image, mask, 3, alpha=0.0), image)
    with pytest.raises(ValueError, match="size"):
        overlay_mask(image, mask[:3], 3)


def test_colorize_mask_and_save_image_round_trip(tmp_path):
    mask = torch.tensor([[0, 1], [2, 255]])
    colours = colorize_mask(mask)
    assert colours.tolist() == [[[0, 0, 0], [128, 0, 0]], [[0, 128, 0], [224, 224, 192]]]
    path = save_image(tmp_path / "sub" / "c.png", colours)
    assert np.array_equal(cv2.imread(str(path))[..., ::-1], colours)
    assert to_rgb_uint8(np.zeros((2, 2, 4), np.uint8)).shape == (2, 2, 3)
    with pytest.raises(ValueError, match="uint8"):
        save_image(tmp_path / "f.png", np.zeros((2, 2), np.float32))
