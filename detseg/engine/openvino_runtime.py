"""OpenVINO behind the PyTorch model's call contract, like :mod:`detseg.engine.onnx_runtime`.

:class:`OpenVinoModel` runs an OpenVINO IR (``.xml`` + ``.bin``, written by ``detseg export --format
openvino``) and is called like the network it came from: a tensor ``[B, C, H, W]`` -> logits for
segmenters and classifiers, a list of ``[3, H, W]`` images -> ``[{boxes, labels, scores}]`` for detectors.
detseg's metadata is in the IR's ``rt_info`` (``detseg/meta``: the checkpoint's meta, JSON), with the
precision the export chose (``openvino_precision``: fp32, bf16 or int8) and the inference precision
hint applied when compiling (``inference_precision``: ``f32`` or ``bf16``).

The graphs are exported with dynamic height and width; a model is compiled once per input shape (static
shapes are OpenVINO's fast path) and the compiled models of the last few shapes are kept.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from detseg.engine.onnx_runtime import dense_output, detections, kind_from_task

RT_INFO_KEY = ["detseg", "meta"]
PIP_LINE = 'OpenVINO is not installed: pip install -e ".[openvino]"'


class MissingDependency(ValueError):
    """An optional package is missing; the message is the pip line that installs it."""


def import_openvino():
    """``openvino``, or :class:`MissingDependency` with the one pip line."""
    try:
        import openvino
    except ImportError as exc:
        raise MissingDependency(PIP_LINE) from exc
    return openvino


@functools.cache
def core() -> Any:
    """The process's one ``openvino.Core``, never released.

    OpenVINO's CPU plugin (2026.4) installs a signal stack on the thread that creates it and, when it is
    released, puts back the stack it found, even when that one was freed meanwhile (Cores released out of
    order leave the thread pointing at unmapped memory). Python runs its signal handlers on that stack,
    so the next one (e.g. SIGCHLD from a finished subprocess, with DataLoader workers about) kills the
    process. One Core for the life of the process keeps the stack it installs valid."""
    return import_openvino().Core()


class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@contextlib.contextmanager
def signal_stack_kept():
    """Run OpenVINO work that makes and releases Cores of its own (NNCF's), then give the thread back
    the signal stack it had (see :func:`core`); Linux only, a no-op elsewhere."""
    core()  # created first: the stack NNCF's Cores find and put back is this one's
    libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
    before = _StackT()
    if libc is not None and libc.sigaltstack(None, ctypes.byref(before)) != 0:
        libc = None
    try:
        yield
    finally:
        if libc is not None:
            gc.collect()  # NNCF's Cores and compiled models go now, not after the stack is put back
            libc.sigaltstack(ctypes.byref(before), None)


def compile_config(meta: dict[str, Any], threads: int | None = None) -> dict[str, Any]:
    """The CPU plugin's settings: threads (default torch's), latency mode, the precision hint."""
    return {
        "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()),
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": meta.get("inference_precision", "f32"),
    }


class OpenVinoModel(nn.Module):
    """An OpenVINO model (an IR path or an ``openvino.Model``) called like the PyTorch model it came
    from. ``compiled``: run this compiled model for every shape instead (NNCF's accuracy control hands
    its candidates over compiled)."""

    def __init__(
        self,
        model: Any,
        meta: dict[str, Any],
        device: str = "cpu",
        threads: int | None = None,
        compiled: Any = None,
    ):
        super().__init__()
        if str(device).startswith("cuda"):
            raise ValueError("an OpenVINO model runs on the CPU here (--device cpu)")
        self.core = core()
        self.path = Path(model) if isinstance(model, str | Path) else None
        self.model = self.core.read_model(str(model)) if self.path is not None else model
        self.meta = meta
        self.kind = meta.get("onnx_output") or kind_from_task(meta.get("task", "segment"))
        self.config = compile_config(meta, threads)
        self.fixed = compiled
        self.compiled: dict[tuple[int, ...], Any] = {}
        self.output_names = [
            o.get_any_name() for o in (compiled if compiled is not None else self.model).outputs
        ]
        self.device = torch.device("cpu")
        self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)  # see OnnxModel

    def extra_repr(self) -> str:
        return f"{self.path or 'in memory'}, {self.kind}, {self.meta.get('openvino_precision', 'fp32')}"

    def compiled_for(self, shape: tuple[int, ...]) -> Any:
        """The model compiled for inputs of ``shape`` (reshaped to it when its graph is dynamic)."""
        if self.fixed is not None:
            return self.fixed
        if shape not in self.compiled:
            model = self.model
            if self.model.inputs[0].get_partial_shape().is_dynamic:
                model = self.model.clone()
                model.reshape({0: list(shape)})
            if len(self.compiled) >= 4:
                self.compiled.pop(next(iter(self.compiled)))
            self.compiled[shape] = self.core.compile_model(model, "CPU", self.config)
        return self.compiled[shape]

    def run(self, array: np.ndarray) -> list[np.ndarray]:
        array = np.ascontiguousarray(array, dtype=np.float32)
        result = self.compiled_for(tuple(array.shape))(array)
        return [np.asarray(result[i]) for i in range(len(self.output_names))]

    def forward(self, x: Any, targets: Any = None) -> Any:
        if targets is not None:
            raise ValueError("an OpenVINO model only predicts (no training targets)")
        if self.kind == "detections":
            return [self._detect(image) for image in x]
        return dense_output(self.run(x.detach().cpu().numpy())[0], self.kind, self.meta)

    def _detect(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        if image.ndim != 3:
            where = self.path or "an OpenVINO model"
            raise ValueError(f"{where}: a detector takes [3, H, W] images, got shape {list(image.shape)}")
        return detections(dict(zip(self.output_names, self.run(image.detach().cpu().numpy()), strict=True)))


def read_meta(model: Any) -> dict[str, Any] | None:
    """detseg's meta in an ``openvino.Model``'s rt_info, or None."""
    if not model.has_rt_info(RT_INFO_KEY):
        return None
    return json.loads(model.get_rt_info(RT_INFO_KEY).astype(str))


def load_openvino(
    path: str | Path, device: str = "cpu", classes: list[str] | None = None, img_size: int | None = None
) -> tuple[OpenVinoModel, dict[str, Any]]:
    """``(OpenVinoModel, meta)`` of an IR written by ``detseg export --format openvino``."""
    path = Path(path)
    if not path.is_file() or not path.with_suffix(".bin").is_file():
        raise FileNotFoundError(
            f"OpenVINO IR not found: {path} (and {path.with_suffix('.bin').name} beside it)"
        )
    try:
        model = core().read_model(str(path))
    except Exception as exc:  # a truncated or foreign file: say which one
        raise ValueError(f"{path}: not a readable OpenVINO IR ({exc})") from exc
    meta = read_meta(model)
    if meta is None:
        raise ValueError(
            f"{path}: no detseg metadata (rt_info detseg/meta); export it with `detseg export "
            "--format openvino`"
        )
    if classes is not None and list(classes) != list(meta["classes"]):
        raise ValueError(f"{path}: --classes {list(classes)} disagree with the file's {meta['classes']}")
    if img_size is not None:
        meta["img_size"] = img_size
    wrapper = OpenVinoModel(model, meta, device)
    wrapper.path = path
    return wrapper, meta
