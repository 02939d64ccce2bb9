"""A checkpoint to OpenVINO IR (``.xml`` + ``.bin``) in FP32, BF16 or INT8, with detseg's metadata.

The IR is converted by ``openvino.convert_model`` from detseg's own ONNX export (:func:`export_onnx`,
checked against PyTorch as always), with dynamic height and width (the runtime compiles it per input
shape, :class:`~detseg.engine.openvino_runtime.OpenVinoModel`). The checkpoint's meta is in the IR's
``rt_info`` (``detseg/meta``) with what the export chose, and beside it the ONNX export's other
metadata (``detseg/model``, ``detseg/classes``, ``detseg/normalization``...):

- ``fp32``: float32 weights, ``INFERENCE_PRECISION_HINT`` ``f32`` (no silent bf16 on CPUs that have it);
- ``bf16``: the same float32 weights, compiled with the hint ``bf16`` (weights and activations in
  bfloat16 on CPUs with avx512_bf16 / AMX; float32 elsewhere);
- ``int8``: NNCF's post-training quantisation calibrated on real images of ``--calib``, with the
  accuracy gate (:mod:`detseg.export.openvino_int8`).

Each is compared with the FP32 IR on one input (``--sample``, else INT8's first calibration image, else
the self-check's noise: pixels, top-1 or boxes that agree) and timed beside it and beside ONNX Runtime
FP32 on this CPU; the summary and the metadata say both.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

PRECISIONS = ("fp32", "bf16", "int8")


def calibration_needed(option: str) -> str:
    return (
        f"{option} needs --calib SPEC: INT8 scales come from the activations of real images (a "
        "calibration set, e.g. 300 training images), which a checkpoint does not hold"
    )


def export_openvino(
    weights: str | Path,
    out: str | Path,
    precision: str = "fp32",
    calib: str | Path | None = None,
    calib_split: str = "train",
    calib_images: int = 300,
    max_drop: float | None = 0.005,
    val_split: str = "val",
    img_size: int | list[int] | None = None,
    sample: str | Path | None = None,
    check: bool = True,
    opset: int = 17,
    output: str = "logits",
) -> dict[str, Any]:
    """Export ``weights`` to the IR ``out`` (``.xml``; ``.bin`` beside it); returns a summary: ``path``,
    ``seconds``, ``task``, ``input_shape``, ``precision``, ``onnx_check`` (the ONNX self-check),
    ``agreement`` with FP32, ``ms`` (this precision, ``fp32`` OpenVINO, ``onnxruntime`` FP32, per call on
    the sample), ``speedup_vs_fp32``/``speedup_vs_onnxruntime``, and for INT8 ``quantization`` (the
    gate's report). Nothing is written when a check or the gate fails."""
    from detseg.engine.onnx_runtime import META_KEY, OnnxModel, read_metadata
    from detseg.engine.openvino_runtime import RT_INFO_KEY, OpenVinoModel, import_openvino
    from detseg.export.onnx_export import _sample, export_onnx
    from detseg.export.openvino_int8 import agreement
    from detseg.export.timing import median_ms

    ov = import_openvino()
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "int8" and calib is None:
        raise ValueError(calibration_needed("--precision int8"))
    out = Path(out)
    if out.suffix.lower() != ".xml":
        raise ValueError(f"{out}: an OpenVINO IR is a .xml file (with its .bin beside it)")
    start = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.stem}.", dir=out.parent) as tmp:
        onnx_file = Path(tmp) / "model.onnx"
        onnx_summary = export_onnx(
            weights,
            onnx_file,
            img_size=img_size,
            dynamic=True,
            sample=sample,
            check=check,
            opset=opset,
            output=output,
        )
        props = read_metadata(onnx_file)
        meta = json.loads(props[META_KEY])
        task = meta.get("task", "segment")
        fp32_model = ov.convert_model(str(onnx_file))
        size = onnx_summary["input_shape"][-2:]
        x = _sample(task, int(meta.get("channels", 3)), tuple(size), sample)
        x = x if task in ("detect", "instance") else x[:1]
        report: dict[str, Any] = {}
        model = fp32_model
        if precision == "int8":
            from detseg.export.calibration import calibration_inputs
            from detseg.export.openvino_int8 import quantize_openvino

            inputs = calibration_inputs(meta, calib, calib_split, calib_images)
            model, report = quantize_openvino(fp32_model, meta, inputs, str(calib), val_split, max_drop)
            x = torch.from_numpy(inputs[0]) if sample is None else x  # a real image rather than noise
            report.update(calib=str(calib), calib_split=calib_split)
        meta.update(
            openvino_precision=precision, inference_precision="bf16" if precision == "bf16" else "f32"
        )
        fp32_meta = {**meta, "openvino_precision": "fp32", "inference_precision": "f32"}
        runtime, reference = OpenVinoModel(model, meta), OpenVinoModel(fp32_model, fp32_meta)
        onnx_runtime = OnnxModel(onnx_file, meta)
        agree = agreement(reference, runtime, x, task)

        def call(m: Any) -> Any:
            return lambda: m([x]) if task in ("detect", "instance") else m(x)

        ms = median_ms({"fp32": call(reference), precision: call(runtime), "onnxruntime": call(onnx_runtime)})
        speed = {
            "speedup_vs_fp32": ms["fp32"] / ms[precision],
            "speedup_vs_onnxruntime": ms["onnxruntime"] / ms[precision],
        }
        meta["openvino_export"] = {
            "agreement": agree,
            "ms": ms,
            **speed,
            "threads": torch.get_num_threads(),
            **({"quantization": report} if report else {}),
        }
        for key, value in props.items():  # the ONNX file's metadata, key by key, as rt_info detseg/KEY
            if key != META_KEY:
                model.set_rt_info(value, ["detseg", key])
        model.set_rt_info(json.dumps(meta), RT_INFO_KEY)
        staged = Path(tmp) / out.name
        ov.save_model(model, str(staged), compress_to_fp16=False)
        for part in (staged.with_suffix(".bin"), staged):  # the .xml last: it names a complete .bin
            os.replace(part, out.with_name(part.name))
    return {
        "path": str(out),
        "seconds": time.perf_counter() - start,
        "task": task,
        "precision": precision,
        "input_shape": onnx_summary["input_shape"],
        "onnx_check": onnx_summary,
        "agreement": agree,
        "ms": ms,
        **speed,
        **({"quantization": report} if report else {}),
    }
