"""Atrous convolution's field of view and ASPP against torchvision's implementation."""

import torch
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPP as TorchvisionASPP

from detseg.nn import ASPP, AtrousConv2d, dilated_kernel_extent, receptive_field


def measured_receptive_field(net: nn.Module, size: int = 41) -> int:
    """Width of the input region that influences the centre output pixel (by gradient)."""
    x = torch.zeros(1, 1, size, size, requires_grad=True)
    out = net(x)
    out[0, 0, out.shape[-2] // 2, out.shape[-1] // 2].backward()
    cols = x.grad[0, 0].abs().sum(0).nonzero()
    return int(cols.max() - cols.min() + 1)


def ones_conv(dilation: int) -> nn.Conv2d:
    conv = AtrousConv2d(1, 1, 3, dilation=dilation, bias=False)
    nn.init.constant_(conv.weight, 1.0)
    return conv


def test_dilation_widens_the_field_of_view_at_the_same_cost():
    assert (
        dilated_kernel_extent(3, 1) == 3
        and dilated_kernel_extent(3, 2) == 5
        and dilated_kernel_extent(3, 4) == 9
    )
    for d in (1, 2, 4):
        conv = ones_conv(d)
        assert conv.weight.numel() == 9
        assert measured_receptive_field(conv) == dilated_kernel_extent(3, d)
        assert conv(torch.zeros(1, 1, 13, 17)).shape == (1, 1, 13, 17)  # padding keeps the size


def test_stacked_dilations_grow_the_receptive_field_exponentially():
    stack = nn.Sequential(ones_conv(1), ones_conv(2), ones_conv(4))
    assert receptive_field([(3, 1, 1), (3, 1, 2), (3, 1, 4)]) == 15 == measured_receptive_field(stack)
    assert receptive_field([(3, 2, 1), (3, 1, 1)]) == 7  # strides multiply later layers' steps


def test_aspp_matches_torchvision():
    torch.manual_seed(0)
    ours, theirs = ASPP(16, (2, 4, 6), out_channels=8), TorchvisionASPP(16, (2, 4, 6), out_channels=8)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    ours.load_state_dict(theirs.state_dict())  # same parameter names
    ours.eval(), theirs.eval()
    x = torch.randn(2, 16, 9, 11)
    assert torch.allclose(ours(x), theirs(x), atol=1e-6)
    assert ours(x).shape == (2, 8, 9, 11)
