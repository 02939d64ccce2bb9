"""Pictures people can read: small images enlarged, captions beside (not on) the object and inside the
image, a legend of class colours, a contact sheet; checked on what ``detseg data show`` writes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from detseg.cli import main
from detseg.viz.draw import (
    MIN_SIDE,
    caption_box,
    class_colors,
    contact_sheet,
    default_palette,
    render_detections,
    render_segmentation,
    upscale_factor,
)


def _has_color(region: np.ndarray, color, min_pixels: int = 50) -> bool:
    return int((region.reshape(-1, 3) == np.asarray(color, np.uint8)).all(1).sum()) >= min_pixels


def test_upscale_factor_reaches_512_on_the_shorter_side_by_whole_pixels():
    assert upscale_factor(24, 32) == 22  # 528 x 704
    assert upscale_factor(128, 128) == 4 and upscale_factor(512, 700) == 1 and upscale_factor(1024, 768) == 1
    assert upscale_factor(10, 1000) == 2  # the longer side stays within 2048


@pytest.mark.parametrize(
    "box, expected_top",
    [((40, 50, 90, 80), 30), ((40, 5, 90, 60), 60), ((0, 2, 100, 99), 2)],  # above, below, inside
)
def test_caption_goes_above_the_box_else_below_else_inside_and_stays_in_the_image(box, expected_top):
    left, top, right, bottom = caption_box(box, (30, 20), (100, 100))
    assert top == expected_top and bottom - top == 20 and 0 <= left and right <= 100 and bottom <= 100
    x1, y1, x2, y2 = box
    if expected_top != y1:  # room above or below: the caption does not cover the object
        assert bottom <= y1 or top >= y2
    assert caption_box((95, 50, 100, 70), (30, 20), (100, 100))[2] == 100  # pushed left, inside


def test_render_detections_enlarges_draws_captions_off_the_object_and_a_legend():
    rng = np.random.default_rng(0)
    image = rng.integers(60, 200, (40, 30, 3), dtype=np.uint8)
    out = render_detections(image, [[5.0, 20.0, 25.0, 35.0]], [1], ["cat", "dog", "bird"], scores=[0.87])
    factor = upscale_factor(40, 30)
    assert factor == 18 and out.shape[1] == 30 * factor and out.shape[0] > 40 * factor
    picture, legend = out[: 40 * factor], out[40 * factor :]
    colors = class_colors(3)
    x1, y1, x2, y2 = 5 * factor, 20 * factor, 25 * factor, 35 * factor
    assert tuple(picture[(y1 + y2) // 2, x1 + 1]) == colors[1]  # the left edge, in the class colour
    # The object itself is untouched: its inside is the enlarged image, pixel for pixel.
    inner = picture[y1 + 10 : y2 - 10, x1 + 10 : x2 - 10]
    assert np.array_equal(
        inner, image.repeat(factor, 0).repeat(factor, 1)[y1 + 10 : y2 - 10, x1 + 10 : x2 - 10]
    )
    assert _has_color(picture[y1 - 40 : y1, x1:x2], colors[1], 500)  # the caption band above it
    assert all(_has_color(legend, c) for c in colors)  # every class's swatch, even unseen classes
    assert (legend != 255).any(2).sum() > 2000  # and their names


def test_render_segmentation_outlines_classes_leaves_background_and_shows_void_in_the_legend():
    image = np.full((64, 64, 3), 120, np.uint8)
    mask = np.zeros((64, 64), np.int64)
    mask[10:30, 10:30] = 1
    mask[40:50, 40:60] = 255
    out = render_segmentation(image, mask, ["background", "cell"], ignore_index=255)
    assert out.shape[1] == 64 * 8 and out.shape[0] > 64 * 8
    picture, legend = out[: 64 * 8], out[64 * 8 :]
    assert (picture[300:, :200] == 120).all()  # background pixels keep the image's colour
    palette = default_palette(256)
    assert _has_color(picture[70:250, 70:250], palette[1], 200)  # the cell region's outline
    assert (
        _has_color(legend, palette[1]) and _has_color(legend, palette[255]) and _has_color(legend, palette[0])
    )


def test_contact_sheet_is_a_grid_with_titles_and_one_legend():
    tiles = [np.full((50, 100, 3), v, np.uint8) for v in (10, 90, 170, 250, 30)]
    sheet = contact_sheet(tiles, [f"image{i}" for i in range(5)], tile=64, legend=(["a"], [(255, 0, 0)]))
    # 3 columns x 2 rows of 64 px tiles with titles, the legend below.
    assert sheet.shape[1] == 3 * 64 + 4 * 6 and sheet.shape[0] > 2 * 64
    assert _has_color(sheet, (255, 0, 0)) and _has_color(sheet[: 2 * 100], (170, 170, 170))


def _tiny_coco_spec(root):
    import json

    (root / "images").mkdir()
    images, annotations = [], []
    rng = np.random.default_rng(1)
    for i, (h, w) in enumerate([(48, 64), (40, 40)], start=1):
        cv2.imwrite(str(root / "images" / f"im{i}.png"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        images.append({"id": f"im{i}.png", "file_name": f"im{i}.png", "height": h, "width": w})
        annotations.append({"id": i, "image_id": f"im{i}.png", "category_id": i, "bbox": [5, 12, 20, 20]})
    categories = [{"id": 1, "name": "round"}, {"id": 2, "name": "square"}]
    (root / "gt.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return root / "gt.json"


def test_data_show_writes_readable_pictures_and_a_contact_sheet(tmp_path, capsys):
    spec = _tiny_coco_spec(tmp_path)  # string image ids, as some exporters write them
    assert main(["data", "show", str(spec), "--out", str(tmp_path / "show")]) == 0
    files = sorted(p.name for p in (tmp_path / "show").iterdir())
    assert files == ["contact_sheet.png", "val_000_im1.png", "val_001_im2.png"]
    colors = class_colors(2)
    for name, (h, w) in [("val_000_im1.png", (48, 64)), ("val_001_im2.png", (40, 40))]:
        picture = cv2.imread(str(tmp_path / "show" / name))[..., ::-1]
        factor = upscale_factor(h, w)
        assert min(h, w) * factor >= MIN_SIDE and picture.shape[1] == w * factor
        legend = picture[h * factor :]
        assert legend.shape[0] > 20 and all(_has_color(legend, c) for c in colors)
    sheet = cv2.imread(str(tmp_path / "show" / "contact_sheet.png"))[..., ::-1]
    assert sheet.shape[1] >= 2 * 384 and _has_color(sheet, colors[0]) and _has_color(sheet, colors[1])


def test_plots_are_written_large_enough_to_read(tmp_path):
    from detseg.metrics.detection import pr_curve
    from detseg.viz.plots import plot_confusion_matrix, plot_pr_curve

    curve = pr_curve(np.array([0.9, 0.8, 0.3]), np.array([True, False, True]), 2)
    pr = cv2.imread(str(plot_pr_curve({"cat": curve}, tmp_path / "pr.png")))
    assert pr.shape[:2] == (750, 900)  # 6 x 5 inches at 150 dpi
    cm = cv2.imread(str(plot_confusion_matrix(np.eye(3, dtype=int), ["a", "b", "c"], tmp_path / "cm.png")))
    assert min(cm.shape[:2]) >= 600


def test_predict_draws_readable_boxes_and_a_contact_sheet(tmp_path):
    import torch
    from torch import nn

    from detseg.engine.predict import predict_detection

    class OneBox(nn.Module):  # the same detection on any image (torchvision's eval contract)
        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.zeros(1))

        def forward(self, images):
            box = {"boxes": torch.tensor([[4.0, 10.0, 20.0, 28.0]]), "labels": torch.tensor([1])}
            return [{**box, "scores": torch.tensor([0.8])} for _ in images]

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"im{i}.png"), np.full((32, 40, 3), 40 * i, np.uint8))
    meta = {"task": "detect", "classes": ["cat", "raccoon"]}
    out = tmp_path / "out"
    predict_detection(OneBox(), meta, sorted(tmp_path.glob("im*.png")), out, score_threshold=0.5)
    drawn = cv2.imread(str(out / "im1.png"))[..., ::-1]
    factor = upscale_factor(32, 40)  # 16: 512 x 640
    assert drawn.shape[1] == 40 * factor and drawn.shape[0] > 32 * factor
    colors = class_colors(2)
    assert _has_color(drawn[: 10 * factor, 4 * factor : 20 * factor], colors[1], 500)  # caption above
    assert all(_has_color(drawn[32 * factor :], c) for c in colors)  # legend
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[1] >= 2 * 384
