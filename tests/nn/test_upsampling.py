"""LECTURE.md section 5: the convolution, max-pooling and upsampling worked examples."""

import torch
import torch.nn.functional as F
from torch import nn

from detseg.nn import (
    BedOfNailsUpsample,
    BilinearUpsample,
    MaxPoolWithIndices,
    MaxUnpool,
    NearestUpsample,
    TransposedConvUpsample,
    transposed_conv_output_size,
)

POOL_INPUT = torch.tensor(
    [
        [5, 4, 6, 3, 1, 7],
        [3, 4, 1, 6, 4, 4],
        [6, 2, 5, 6, 6, 4],
        [2, 6, 9, 8, 6, 3],
        [4, 8, 5, 6, 8, 2],
        [3, 1, 7, 8, 6, 3],
    ],
    dtype=torch.float32,
)[None, None]
POOLED = torch.tensor([[6.0, 7.0], [9.0, 8.0]])


def test_strided_convolution_worked_example():
    image = torch.tensor(
        [[1, 2, 0, 0, 0], [2, 2, 0, 0, 0], [2, 2, 2, 1, 0], [1, 0, 0, 2, 0], [1, 1, 0, 1, 0]],
        dtype=torch.float32,
    )
    kernel = torch.tensor([[0, 0, -1], [-1, 0, 0], [-1, -1, -1]], dtype=torch.float32)
    out = F.conv2d(image[None, None], kernel[None, None], bias=torch.zeros(1), stride=2, padding=1)
    assert out[0, 0].tolist() == [[-4, -4, 0], [-3, -4, -3], [0, -3, -1]]


def test_max_pooling_worked_example_and_unpooling_at_remembered_positions():
    pooled, indices, size = MaxPoolWithIndices(3, 3)(POOL_INPUT)
    assert torch.equal(pooled[0, 0], POOLED)
    assert size == (6, 6)
    unpooled = MaxUnpool(3, 3)(pooled, indices, size)[0, 0]
    # Each maximum returns to where it was (the first in row-major order on ties), zeros elsewhere.
    expected = torch.zeros(6, 6)
    for (r, c), v in {(0, 2): 6, (0, 5): 7, (3, 2): 9, (3, 3): 8}.items():
        expected[r, c] = v
    assert torch.equal(unpooled, expected)


def test_unpooling_restores_odd_sizes():
    x = torch.randn(2, 3, 7, 9)
    pooled, indices, size = MaxPoolWithIndices(2)(x)
    assert MaxUnpool(2)(pooled, indices, size).shape == x.shape


def test_nearest_upsampling_repeats_each_value_in_a_block():
    out = NearestUpsample(3)(POOLED[None, None])[0, 0]
    assert torch.equal(out, torch.kron(POOLED, torch.ones(3, 3)))
    assert out[:3, :3].eq(6).all() and out[3:, 3:].eq(8).all()


def test_bed_of_nails_puts_values_top_left_zeros_elsewhere():
    out = BedOfNailsUpsample(3)(POOLED[None, None])[0, 0]
    expected = torch.zeros(6, 6)
    expected[0, 0], expected[0, 3], expected[3, 0], expected[3, 3] = 6, 7, 9, 8
    assert torch.equal(out, expected)


def test_transposed_convolution_stride_3_padding_1_shape_and_values():
    # The slide's transposed convolution: 3x3 kernel, stride 3, padding 1, on the 2x2 map.
    conv = nn.ConvTranspose2d(1, 1, 3, stride=3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    out = conv(POOLED[None, None])[0, 0]
    assert out.shape == (4, 4) == (transposed_conv_output_size(2, 3, 3, 1),) * 2
    # Stride 3 = kernel size: blocks do not overlap, so an all-ones kernel is nearest upsampling
    # with the 1-pixel padding cropped from each border.
    assert torch.equal(out, torch.kron(POOLED, torch.ones(3, 3))[1:-1, 1:-1])


def test_transposed_conv_upsample_starts_as_bilinear_and_scales_exactly():
    x = torch.randn(1, 2, 5, 7)
    up = TransposedConvUpsample(2, 2, scale=2)
    out = up(x)
    assert out.shape == (1, 2, 10, 14)
    reference = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    # Same as bilinear interpolation away from the zero-padded border.
    assert torch.allclose(out[..., 1:-1, 1:-1], reference[..., 1:-1, 1:-1], atol=1e-5)
    assert TransposedConvUpsample(3, 3, scale=8)(torch.randn(1, 3, 3, 4)).shape == (1, 3, 24, 32)


def test_bilinear_upsample_to_size():
    x = torch.randn(1, 1, 4, 5)
    assert BilinearUpsample()(x, size=(9, 11)).shape == (1, 1, 9, 11)
    assert torch.allclose(BilinearUpsample(2)(x), F.interpolate(x, scale_factor=2, mode="bilinear"))


def test_sigmoid_and_softmax_of_the_last_layer():
    logits = torch.tensor([2.0, 1.0, -3.0])
    # Corrected: the slide prints 0.47 for sigmoid(-3), a typo for 0.047.
    assert torch.allclose(torch.sigmoid(logits), torch.tensor([0.8808, 0.7311, 0.0474]), atol=1e-4)
    # Corrected: the slide prints softmax(2, 1, 0.1) = 0.72, 0.27, 0.01, which is wrong.
    soft = torch.softmax(torch.tensor([2.0, 1.0, 0.1]), 0)
    assert torch.allclose(soft, torch.tensor([0.659, 0.242, 0.099]), atol=1e-3)
    assert abs(float(soft.sum()) - 1) < 1e-6
