"""ONNX Runtime behind the PyTorch model's call contract, so that ``predict`` and ``eval`` run either.

:class:`OnnxModel` is called like the network it was exported from:

- segmenter: ``Tensor[B, C, H, W]`` floats in [0, 1] -> logits ``Tensor[B, K, H, W]`` (a graph exported
  with ``output="argmax"`` gives one-hot logits, ``1.0`` at the predicted class);
- classifier: ``Tensor[B, C, H, W]`` -> logits ``Tensor[B, K]``;
- detector: ``list[Tensor[3, H, W]]`` -> ``list[{"boxes": [N, 4] XYXY, "labels": int64 [N] 0-based,
  "scores": [N]}]`` (post-processing and NMS are in the graph; one image per run).

The CPU execution provider always; CUDA's first when the device asks for it and onnxruntime has it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

META_KEY = "detseg_meta"


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (``{}`` when it has none), without loading the weights."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def providers_for(device: str | torch.device) -> list[str]:
    """ONNX Runtime execution providers for a torch-style device name."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = ["CPUExecutionProvider"]
    if str(device).startswith("cuda") and "CUDAExecutionProvider" in available:
        wanted.insert(0, "CUDAExecutionProvider")
    return wanted


class OnnxModel(nn.Module):
    """An ONNX file run by ONNX Runtime, called like the PyTorch model it came from (see the module doc).

    ``threads``: ONNX Runtime's intra-op threads; default torch's thread count, so that a comparison
    with the PyTorch model uses the same cores.
    """

    def __init__(
        self, path: str | Path, meta: dict[str, Any], device: str = "cpu", threads: int | None = None
    ):
        super().__init__()
        import onnxruntime as ort

        self.path = Path(path)
        self.meta = meta
        self.kind = meta.get("onnx_output") or kind_from_task(meta.get("task", "segment"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=providers_for(device))
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.input_shape = list(first.shape)  # ints for fixed axes, names (str) for dynamic ones
        self.input_dtype = np.float16 if "float16" in first.type else np.float32
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.device = torch.device("cpu")  # outputs come back as CPU tensors
        # An empty parameter, so that code written for torch models (next(model.parameters()).device)
        # runs unchanged: inputs are sent to the CPU, which the session reads.
        self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    def extra_repr(self) -> str:
        return f"{self.path}, {self.kind}, providers={self.session.get_providers()}"

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        for axis, (want, got) in enumerate(zip(self.input_shape, shape, strict=False)):
            if isinstance(want, int) and want > 0 and want != got and axis > 0:
                fixed = "x".join(str(v) for v in self.input_shape[-2:])
                raise ValueError(
                    f"{self.path} takes {fixed} inputs (channels {self.input_shape[1]}), got "
                    f"{'x'.join(str(v) for v in shape[1:])}: export with --dynamic, or predict with --tile "
                    f"{self.input_shape[-1]}"
                )

    def _run(self, array: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: array.astype(self.input_dtype, copy=False)})

    def forward(self, x: Any, targets: Any = None) -> Any:
        if targets is not None:
            raise ValueError(f"{self.path}: an ONNX model only predicts (no training targets)")
        if self.kind == "detections":
            return [self._detect(image) for image in x]
        array = x.detach().cpu().numpy()
        self._check_shape(array.shape)
        return dense_output(self._run(array)[0], self.kind, self.meta)

    def _detect(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        array = image.detach().cpu().numpy()
        if array.ndim != 3:
            raise ValueError(f"{self.path}: a detector takes [3, H, W] images, got shape {list(array.shape)}")
        return detections(dict(zip(self.output_names, self._run(array), strict=True)))


def dense_output(array: np.ndarray, kind: str, meta: dict[str, Any]) -> torch.Tensor:
    """A runtime's first output as the PyTorch model returns it: logits as they are, an exported
    argmax as one-hot ``[B, K, H, W]`` (shared by the ONNX Runtime and OpenVINO wrappers)."""
    out = torch.from_numpy(array).float()
    if kind == "argmax":
        return torch.nn.functional.one_hot(out.long(), len(meta["classes"])).permute(0, 3, 1, 2).float()
    return out


def detections(outputs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A detector graph's named outputs as torchvision's ``{boxes, labels, scores[, masks]}``."""
    result = {
        "boxes": torch.from_numpy(outputs["boxes"]).float().reshape(-1, 4),
        "labels": torch.from_numpy(outputs["labels"]).long(),
        "scores": torch.from_numpy(outputs["scores"]).float(),
    }
    if "masks" in outputs:
        result["masks"] = torch.from_numpy(outputs["masks"]).float()
    return result


def kind_from_task(task: str) -> str:
    """What a graph of ``task`` returns: ``detections``, ``classify`` or ``logits``."""
    return {"detect": "detections", "instance": "detections", "classify": "classify"}.get(task, "logits")


def _guess_meta(path: Path, classes: list[str], img_size: int | None) -> dict[str, Any]:
    """A ``meta`` for a foreign ONNX file from its outputs: 3+ outputs are a detector's boxes, labels,
    scores; one output of rank 2 a classifier's logits; of rank 4 a segmenter's."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.get_outputs()
    names = [o.name for o in outputs]
    if {"boxes", "labels", "scores"} <= set(names):
        task = "detect"
    elif len(outputs) == 1 and len(outputs[0].shape) == 2:
        task = "classify"
    elif len(outputs) == 1 and len(outputs[0].shape) == 4:
        task = "segment"
    else:
        raise ValueError(
            f"{path}: outputs {names} are neither a segmenter's logits [B,K,H,W], a classifier's [B,K] nor "
            "a detector's boxes/labels/scores"
        )
    return {"task": task, "model": path.stem, "classes": list(classes), "img_size": img_size, "channels": 3}


def load_onnx(
    path: str | Path,
    device: str = "cpu",
    classes: list[str] | None = None,
    img_size: int | None = None,
) -> tuple[OnnxModel, dict[str, Any]]:
    """``(OnnxModel, meta)`` of an ONNX file; ``meta`` is the checkpoint's, from the file's metadata.

    A file without detseg's metadata needs ``classes`` (and, for tiling, ``img_size``); its task is read
    from its outputs (:func:`_guess_meta`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    try:
        props = read_metadata(path)
    except Exception as exc:  # a truncated or foreign file: say which one
        raise ValueError(f"{path}: not a readable ONNX file ({exc})") from exc
    if META_KEY in props:
        meta = json.loads(props[META_KEY])
        if classes is not None and list(classes) != list(meta["classes"]):
            raise ValueError(f"{path}: --classes {list(classes)} disagree with the file's {meta['classes']}")
        if img_size is not None:
            meta["img_size"] = img_size
    elif classes is None:
        raise ValueError(
            f"{path}: no detseg metadata (key {META_KEY!r}: task, classes, input size); export it with "
            "`detseg export`, or give --classes (and --img-size) to run it anyway"
        )
    else:
        meta = _guess_meta(path, classes, img_size)
    return OnnxModel(path, meta, device), meta
