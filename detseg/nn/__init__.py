"""The lecture's building blocks for segmentation networks (section 5)."""

from detseg.nn.atrous import ASPP, ASPPConv, ASPPPooling, AtrousConv2d, dilated_kernel_extent, receptive_field
from detseg.nn.blocks import ConvBNReLU, SkipFusion, StridedConv, center_crop, mirror_pad, pad_to_multiple
from detseg.nn.segmenter import Segmenter, channel_stats
from detseg.nn.upsampling import (
    BedOfNailsUpsample,
    BilinearUpsample,
    MaxPoolWithIndices,
    MaxUnpool,
    NearestUpsample,
    TransposedConvUpsample,
    bilinear_kernel,
    resize_to,
    transposed_conv_output_size,
)

__all__ = [
    "ASPP",
    "ASPPConv",
    "ASPPPooling",
    "AtrousConv2d",
    "BedOfNailsUpsample",
    "BilinearUpsample",
    "ConvBNReLU",
    "MaxPoolWithIndices",
    "MaxUnpool",
    "NearestUpsample",
    "Segmenter",
    "SkipFusion",
    "StridedConv",
    "TransposedConvUpsample",
    "bilinear_kernel",
    "center_crop",
    "channel_stats",
    "dilated_kernel_extent",
    "mirror_pad",
    "pad_to_multiple",
    "receptive_field",
    "resize_to",
    "transposed_conv_output_size",
]
