"""Conv blocks, skip fusion and padding helpers."""

import numpy as np
import pytest
import torch

from detseg.nn import ConvBNReLU, SkipFusion, StridedConv, center_crop, mirror_pad, pad_to_multiple


def test_conv_blocks_sizes():
    x = torch.randn(2, 3, 13, 17)
    assert ConvBNReLU(3, 8)(x).shape == (2, 8, 13, 17)
    assert ConvBNReLU(3, 8, padding="valid")(x).shape == (2, 8, 11, 15)
    assert StridedConv(3, 8)(x).shape == (2, 8, 7, 9)
    with pytest.raises(ValueError, match="padding"):
        ConvBNReLU(3, 8, padding="full")


def test_skip_fusion_add_concat_crop_and_resize():
    x, skip = torch.randn(1, 4, 6, 8), torch.randn(1, 4, 6, 8)
    assert torch.equal(SkipFusion("add")(x, skip), x + skip)
    assert torch.equal(SkipFusion("concat")(x, skip), torch.cat([x, skip], 1))
    big = torch.randn(1, 2, 10, 12)  # a valid-padding skip is larger: centre-cropped
    fused = SkipFusion("concat")(x, big)
    assert fused.shape == (1, 6, 6, 8) and torch.equal(fused[:, 4:], big[..., 2:8, 2:10])
    small = torch.randn(1, 4, 3, 4)  # a coarser map is resized to the skip
    assert SkipFusion("add", align="resize")(small, skip).shape == (1, 4, 6, 8)
    with pytest.raises(ValueError, match="larger"):
        SkipFusion("add", align="crop")(torch.randn(1, 4, 7, 8), skip)


def test_mirror_pad_matches_numpy_reflect_and_handles_wide_pads():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    out = mirror_pad(x, 2, 1, 1, 2)
    ref = np.pad(x[0, 0].numpy(), ((1, 2), (2, 1)), mode="reflect")
    assert np.array_equal(out[0, 0].numpy(), ref)
    wide = mirror_pad(x, 9, 9, 7, 7)  # wider than the image: the reflection repeats
    assert wide.shape == (1, 1, 17, 22)
    assert torch.equal(wide[0, 0, 7:10, 9:13], x[0, 0])
    assert torch.equal(wide[0, 0, 7, 7:9], x[0, 0, 0, 1:3].flip(0))  # mirrored without repeating the edge


def test_pad_to_multiple_and_crop_back():
    x = torch.randn(1, 2, 33, 45)
    padded = pad_to_multiple(x, 32)
    assert padded.shape == (1, 2, 64, 64) and torch.equal(padded[..., :33, :45], x)
    assert padded[..., 33:, :].abs().sum() == 0
    assert pad_to_multiple(x, 16, mode="reflect").shape == (1, 2, 48, 48)
    assert center_crop(padded, (33, 45)).shape == (1, 2, 33, 45)
