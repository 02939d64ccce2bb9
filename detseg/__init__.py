"""detseg: object detection and semantic segmentation, from the lecture to working software."""

__version__ = "0.1.0"
