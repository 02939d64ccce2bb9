"""Data: the formats people use (COCO, VOC, Cityscapes, mask folders, text boxes), the dataset spec,
torch Datasets, conversion between formats and checks of a data set.

Heavy modules are imported on use: ``from detseg.data.dataset import build_dataset``.
"""

from detseg.data.errors import DataError

__all__ = ["DataError"]
