"""Pictures of data and results: boxes and masks on images (draw.py), curves and matrices (plots.py)."""

from detseg.viz.draw import (
    class_colors,
    colorize_mask,
    default_palette,
    draw_detections,
    overlay_mask,
    save_image,
    to_rgb_uint8,
)

__all__ = [
    "class_colors",
    "colorize_mask",
    "default_palette",
    "draw_detections",
    "overlay_mask",
    "save_image",
    "to_rgb_uint8",
]
