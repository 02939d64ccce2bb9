"""Stand-ins for ops the ONNX exporter cannot write, equal to them, used only while exporting.

``torchvision::ps_roi_align`` (R-FCN's position-sensitive pooling) has no ONNX symbolic. Bin ``(i, j)``
of output channel ``d`` averages input channel ``(d * k + i) * k + j`` over that bin, which is what
``roi_align(aligned=True)`` (ONNX ``RoiAlign``, half-pixel) computes for every channel; the stand-in
pools all ``k*k*D`` channels and keeps the diagonal, ``k*k`` times the work of the fused op but exact.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch
from torch import Tensor
from torchvision.ops import roi_align


def ps_roi_align_exportable(
    x: Tensor,
    boxes: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
) -> Tensor:
    """``torchvision.ops.ps_roi_align`` from ``roi_align``: ``Tensor[B, k*k*D, H, W]`` -> ``[R, D, k, k]``."""
    kh, kw = (output_size, output_size) if isinstance(output_size, int) else output_size
    pooled = roi_align(x, boxes, (kh, kw), spatial_scale, sampling_ratio, aligned=True)  # [R, k*k*D, k, k]
    r, c = pooled.shape[0], pooled.shape[1]
    pooled = pooled.reshape(r, c // (kh * kw), kh * kw, kh * kw)
    bins = torch.arange(kh * kw, device=x.device)
    return pooled[:, :, bins, bins].reshape(r, c // (kh * kw), kh, kw)


@contextlib.contextmanager
def exportable_ops() -> Iterator[None]:
    """Swap the stand-ins into the model modules that call the originals, for the time of an export."""
    from detseg.models import rfcn

    original = rfcn.ps_roi_align
    rfcn.ps_roi_align = ps_roi_align_exportable
    try:
        yield
    finally:
        rfcn.ps_roi_align = original


def unsupported_op_name(exc: BaseException) -> str | None:
    """The operator an exporter error names (``torchvision::ps_roi_pool``, ``aten::foo``), if any."""
    text = str(exc)
    for pattern in (r"namespace (\w+::\w+)", r"operator '?(\w+::\w+)'?", r"(\w+::\w+)"):
        found = re.search(pattern, text)
        if found:
            return found.group(1)
    return None
