"""Deployment: a trained checkpoint to ONNX (or TorchScript), and ONNX Runtime inference behind the
same call contract as the PyTorch model, so that ``predict`` and ``eval`` run either.

- :mod:`detseg.export.onnx_export`: :func:`export_onnx` (checkpoint -> ``.onnx`` with detseg's metadata,
  checked against PyTorch on a sample), :func:`export_torchscript`.
- :mod:`detseg.engine.onnx_runtime`: :class:`OnnxModel` and :func:`load_onnx` (the file's metadata or a
  ``classes``/``img_size`` fallback).
- :mod:`detseg.export.exportable_ops`: ONNX-exportable stand-ins for ops ONNX lacks (R-FCN's
  position-sensitive RoI align).

Nothing here is imported by ``import detseg``; onnx and onnxruntime load only when a function runs
(the ``export`` extra: ``pip install "detseg[export]"``).
"""

from __future__ import annotations

__all__ = ["export_onnx", "export_torchscript", "load_onnx"]


def __getattr__(name: str):
    if name in ("export_onnx", "export_torchscript"):
        from detseg.export import onnx_export

        return getattr(onnx_export, name)
    if name == "load_onnx":
        from detseg.engine.onnx_runtime import load_onnx

        return load_onnx
    raise AttributeError(f"module 'detseg.export' has no attribute {name!r}")
