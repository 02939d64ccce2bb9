"""``detseg data show``: samples of a data set drawn so that people can read them, one PNG per sample
and a contact sheet of all of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detseg.viz.draw import (
    class_colors,
    contact_sheet,
    default_palette,
    render_detections,
    render_segmentation,
    save_image,
    thumbnail,
    with_legend,
)


def sample_picture(image, target: dict, classes: list[str], ignore_index: int = 255, legend: bool = True):
    """One sample ``(image [C, H, W], target)`` as ``uint8 [H', W', 3]``: the semantic mask overlaid
    (segmentation), or instance masks coloured by class and boxes with their class names (detection),
    enlarged to at least 512 px with a legend of class colours."""
    canvas = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    if "semantic" in target:
        return render_segmentation(canvas, target["semantic"].numpy(), classes, ignore_index, legend=legend)
    if "masks" in target and len(target["masks"]):
        # Instance masks in their box's class colour, blended only where an object is.
        colors = np.asarray(class_colors(max(len(classes), 1)), np.float32)
        for mask, label in zip(target["masks"].numpy(), target["labels"].numpy(), strict=True):
            where = mask.astype(bool)
            canvas[where] = np.round(canvas[where] * 0.5 + colors[int(label) % len(colors)] * 0.5)
    return render_detections(canvas, target["boxes"], target["labels"], classes, legend=legend)


def legend_of(classes: list[str], segmentation: bool, ignore_index: int = 255) -> tuple[list, list]:
    """The (names, colours) of the pictures: the VOC palette and the void colour for semantic masks,
    ``class_colors`` for boxes."""
    if segmentation:
        palette = default_palette(max(256, len(classes), ignore_index + 1))
        colors = [tuple(int(v) for v in palette[i]) for i in range(len(classes))]
        return [*classes, "ignore"], [*colors, tuple(int(v) for v in palette[ignore_index])]
    return list(classes), class_colors(max(len(classes), 1))[: len(classes)]


def draw_samples(dataset, out_dir: str | Path, num: int, sheet: bool = True) -> list[Path]:
    """Draw the first ``num`` samples of ``dataset`` into ``out_dir`` as ``<split>_<index>_<stem>.png``,
    and (``sheet``) ``contact_sheet.png`` with all of them. Written whole or not at all: a bad sample
    raises before any file appears."""
    from detseg.data.outputs import staged

    out_dir = Path(out_dir)
    ignore = getattr(dataset, "ignore_index", 255)
    classes = list(dataset.classes)
    pictures, titles, names, legend = [], [], [], None
    with staged(out_dir, folder=True) as tmp:
        for index in range(min(num, len(dataset))):
            image, target = dataset[index]
            picture = sample_picture(image, target, classes, ignore, legend=False)
            legend = legend_of(classes, "semantic" in target, ignore)
            name = f"{dataset.split}_{index:03d}_{Path(target['file_name']).stem}.png"
            save_image(tmp / name, with_legend(picture, *legend))
            names.append(name)
            if sheet:
                pictures.append(thumbnail(picture))
                titles.append(Path(target["file_name"]).stem)
        if sheet and pictures:
            save_image(tmp / "contact_sheet.png", contact_sheet(pictures, titles, legend=legend))
            names.append("contact_sheet.png")
    return [out_dir / n for n in names]
