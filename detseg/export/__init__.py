"""Deployment: a trained checkpoint to ONNX (or TorchScript), and ONNX Runtime inference behind the
same call contract as the PyTorch model, so that ``predict`` and ``eval`` run either.

- :mod:`detseg.export.onnx_export`: :func:`export_onnx` (checkpoint -> ``.onnx`` with detseg's metadata,
  checked against PyTorch on a sample), :func:`export_torchscript`.
- :mod:`detseg.engine.onnx_runtime`: :class:`OnnxModel` and :func:`load_onnx` (the file's metadata or a
  ``classes``/``img_size`` fallback).
- :mod:`detseg.export.exportable_ops`: ONNX-exportable stand-ins for ops ONNX lacks (R-FCN's
  position-sensitive RoI align).
- :mod:`detseg.export.openvino_export`: :func:`export_openvino` (OpenVINO IR in FP32, BF16 or INT8);
  :mod:`detseg.export.openvino_int8` (NNCF quantisation and its accuracy gate),
  :mod:`detseg.export.onnx_int8` (:func:`export_onnx_int8`: ONNX Runtime static INT8 that pays, or a
  refusal), :mod:`detseg.export.calibration` (a spec's images as calibration inputs, the score),
  :mod:`detseg.export.timing`; :mod:`detseg.engine.openvino_runtime` runs the IR (``OpenVinoModel``).

Nothing here is imported by ``import detseg``; onnx and onnxruntime load only when a function runs
(the ``export`` extra: ``pip install "detseg[export]"``; OpenVINO and NNCF: the ``openvino`` extra).
"""

from __future__ import annotations

__all__ = ["export_onnx", "export_onnx_int8", "export_openvino", "export_torchscript", "load_onnx"]


def __getattr__(name: str):
    if name in ("export_onnx", "export_torchscript"):
        from detseg.export import onnx_export

        return getattr(onnx_export, name)
    if name == "export_openvino":
        from detseg.export.openvino_export import export_openvino

        return export_openvino
    if name == "export_onnx_int8":
        from detseg.export.onnx_int8 import export_onnx_int8

        return export_onnx_int8
    if name == "load_onnx":
        from detseg.engine.onnx_runtime import load_onnx

        return load_onnx
    raise AttributeError(f"module 'detseg.export' has no attribute {name!r}")
