"""Classical segmentation on OpenCV: thresholding, edges, k-means colour quantization, region growing,
post-processing, pipelines, edge evaluation, and scoring beside the networks.

Images are numpy ``uint8`` arrays, grey ``[H, W]`` or RGB ``[H, W, 3]`` (see :mod:`detseg.classic.image`
for how other inputs are converted or refused); masks are ``bool [H, W]`` with foreground = ``grey > t``.
"""

from detseg.classic.clustering import KMeansResult, assign_nearest, kmeans_quantize
from detseg.classic.edge_eval import boundaries_from_labels, edge_counts, evaluate_edges
from detseg.classic.edges import LX, LY, SobelResult, canny, canny_thresholds, sobel
from detseg.classic.image import check_image, overlay, read_image, to_uint8, write_image
from detseg.classic.pipeline import STEPS, Pipeline, Step, parse_steps
from detseg.classic.postprocess import (
    closing,
    connected_components,
    fill_holes,
    instances,
    invert,
    opening,
    remove_small_components,
    remove_small_holes,
    structuring_element,
)
from detseg.classic.region_growing import auto_seeds, region_grow
from detseg.classic.thresholding import (
    multiotsu_thresholds,
    otsu_threshold,
    threshold_adaptive,
    threshold_fixed,
    threshold_multiotsu,
    threshold_otsu,
    to_gray,
)

__all__ = [
    "LX", "LY", "STEPS", "KMeansResult", "Pipeline", "SobelResult", "Step", "assign_nearest", "auto_seeds",
    "boundaries_from_labels", "canny", "canny_thresholds", "check_image", "closing", "connected_components",
    "edge_counts", "evaluate_edges", "fill_holes", "instances", "invert", "kmeans_quantize",
    "multiotsu_thresholds", "opening", "otsu_threshold", "overlay", "parse_steps", "read_image",
    "region_grow", "remove_small_components", "remove_small_holes", "sobel", "structuring_element",
    "threshold_adaptive", "threshold_fixed", "threshold_multiotsu", "threshold_otsu", "to_gray", "to_uint8",
    "write_image",
]
