"""INT8 for ONNX Runtime: static quantisation that pays, with the same accuracy gate, or a refusal.

The choices (``onnxruntime.quantization``), made for ONNX Runtime's CPU provider:

- the FP32 graph is detseg's export, BatchNorm already folded into the convolutions (the exporter's
  constant folding in eval mode), then ``quant_pre_process`` (shape inference and ORT's graph
  optimisations) so that every tensor has the shape the quantiser needs;
- QDQ format (QuantizeLinear/DequantizeLinear pairs around float ops): ORT fuses ``DQ -> Conv -> Q``
  into ``QLinearConv`` when it loads the graph, so QDQ runs as fast as the QOperator format and stays
  a standard ONNX graph other runtimes read;
- activations uint8 (asymmetric), weights int8 symmetric per output channel (U8S8, the x86 kernels'
  fast path); ``reduce_range`` (7-bit weights) only on CPUs without VNNI, whose ``vpmaddubsw``
  saturates;
- op types: segmenters and classifiers quantise the convolutions, matmuls and the ops between them
  that have int8 kernels (``Add``, ``Concat``, pooling, ``Resize``) so that tensors stay int8 from one
  convolution to the next; detectors quantise their convolutions and matmuls only, so the box
  decoding, resizing and NMS stay in float;
- calibration: MinMax over the calibration images.

INT8 pays only where the CPU has int8 dot products: both models are timed on this CPU and an INT8
model slower than FP32 is refused (:class:`SlowerThanFloat`, naming the instruction sets found).
The gate: while the drop on the val split exceeds ``max_drop``, the most sensitive nodes are kept in
float, 1, 2, 4... of them, ranked by a per-layer comparison of the INT8 and float models' tensors on
calibration images (``qdq_loss_debug``): the signal-to-noise ratio each node loses, largest first.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DENSE_OPS = ["Conv", "ConvTranspose", "MatMul", "Gemm"]
BETWEEN_OPS = ["Add", "Concat", "MaxPool", "AveragePool", "GlobalAveragePool", "Resize"]


class SlowerThanFloat(ValueError):
    """The INT8 model runs slower than FP32 on this CPU: not worth writing."""


class _Reader:
    """``CalibrationDataReader``: one input dict per calibration image."""

    def __init__(self, name: str, inputs: list[np.ndarray]):
        self.items = iter([{name: x} for x in inputs])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.items, None)

    def __iter__(self):  # qdq_loss_debug iterates
        return self.items


def _pre_process(src: Path, dst: Path) -> Path:
    """``quant_pre_process``; a graph whose symbolic shape inference fails (dynamic sizes, a detector's
    NMS loop) is pre-processed without it, and one that fails altogether is quantised as exported. Run in
    ``dst``'s folder: ORT leaves its failed inference's dump (``sym_shape_infer_temp.onnx``) in the
    working directory."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src).resolve(), Path(dst).resolve()
    with contextlib.chdir(dst.parent):
        for skip_symbolic in (False, True):
            try:
                quant_pre_process(str(src), str(dst), skip_symbolic_shape=skip_symbolic)
                return dst
            except Exception:  # noqa: BLE001 - the next, plainer attempt decides
                continue
    return src


def quantize_file(src: Path, dst: Path, task: str, inputs: list[np.ndarray], exclude: list[str]) -> None:
    """``quantize_static`` of the pre-processed ``src`` into ``dst`` with detseg's choices (module doc)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from detseg.export.timing import has_vnni

    detector = task in ("detect", "instance")
    name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    quantize_static(
        str(src), str(dst), _Reader(name, inputs), quant_format=QuantFormat.QDQ, per_channel=True,
        reduce_range=not has_vnni(), activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        op_types_to_quantize=DENSE_OPS if detector else DENSE_OPS + BETWEEN_OPS, nodes_to_exclude=exclude,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
    )  # fmt: skip


def sensitivity(float_file: Path, int8_file: Path, inputs: list[np.ndarray], work: Path) -> list[str]:
    """Quantised nodes, most sensitive first: the signal-to-noise ratio (dB) the INT8 model loses across
    each node (ratio at its input minus ratio at its output, both against the float model's tensors on
    ``inputs``, ``qdq_loss_debug``'s cross-model error): where INT8 breaks, the ratio falls."""
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as debug

    name = onnx.load(str(float_file), load_external_data=False).graph.input[0].name
    augmented = {}
    for key, path in (("float", float_file), ("int8", int8_file)):
        augmented[key] = work / f"augmented_{key}.onnx"
        debug.modify_model_output_intermediate_tensors(str(path), str(augmented[key]))
    acts = {k: debug.collect_activations(str(p), _Reader(name, inputs)) for k, p in augmented.items()}
    ratio = {}
    for tensor, match in debug.create_activation_matching(acts["int8"], acts["float"]).items():
        ref, got = match.get("float"), match.get("post_qdq")
        if ref is None or got is None or [a.shape for a in ref] != [a.shape for a in got]:
            continue  # a name the quantiser gave another tensor: not comparable
        ratio[tensor] = float(debug.compute_signal_to_quantization_noice_ratio(ref, got))
    graph = onnx.load(str(float_file), load_external_data=False).graph
    ranked = []
    for node in graph.node:
        ins = [ratio[t] for t in node.input if t in ratio]
        if node.op_type in DENSE_OPS + BETWEEN_OPS and ins and node.output[0] in ratio:
            ranked.append((min(ins) - ratio[node.output[0]], node.name))
    return [n for _, n in sorted(ranked, reverse=True)]


def quantize_onnx(
    fp32_file: Path,
    out: Path,
    meta: dict[str, Any],
    inputs: list[np.ndarray],
    scorer: Callable[[Path], float] | None,
    max_drop: float | None,
    timer: Callable[[Path, Path, np.ndarray], tuple[float, float]],
    keep_slower: bool = False,
) -> dict[str, Any]:
    """Quantise ``fp32_file`` into ``out`` (metadata copied); returns the report: ``fp32_ms``,
    ``int8_ms``, ``speedup``, ``instruction_sets``, and with ``scorer`` the gate's ``fp32``, ``int8``,
    ``default_int8``, ``drop``, ``max_drop``, ``kept_in_float``. ``timer(fp32, int8, x)`` gives both
    models' ms on ``x``. Raises :class:`SlowerThanFloat`, or ``GateFailed`` when the drop holds only
    with every node in float."""
    import onnx

    from detseg.engine.onnx_runtime import META_KEY
    from detseg.export.openvino_int8 import GateFailed
    from detseg.export.timing import fast_cpu_flags, instruction_sets_line

    task = meta.get("task", "segment")
    work = Path(tempfile.mkdtemp(prefix=".int8.", dir=out.parent)).resolve()
    try:
        pre = _pre_process(fp32_file, work / "pre.onnx")
        int8 = work / "int8.onnx"
        quantize_file(pre, int8, task, inputs, [])
        flags = fast_cpu_flags()
        report: dict[str, Any] = {"calibration_images": len(inputs), "format": "QDQ, U8S8, per-channel",
                                  "instruction_sets": flags, "kept_in_float": []}  # fmt: skip

        def timed() -> None:
            fp32_ms, int8_ms = timer(fp32_file, int8, inputs[0])
            report.update(fp32_ms=fp32_ms, int8_ms=int8_ms, speedup=fp32_ms / int8_ms)
            if int8_ms >= fp32_ms and not keep_slower:
                raise SlowerThanFloat(
                    f"INT8 runs slower than FP32 on this CPU ({int8_ms:.1f} vs {fp32_ms:.1f} ms per call; "
                    f"{instruction_sets_line(flags)}): not written; use --format openvino --precision int8, "
                    "or --keep-slower to write it anyway"
                )

        timed()
        if scorer is not None and max_drop is not None:
            fp32 = scorer(fp32_file)
            score = scorer(int8)
            report.update(fp32=fp32, default_int8=score, max_drop=max_drop)
            ranked: list[str] = []
            keep = 0
            while fp32 - score > max_drop:
                ranked = ranked or sensitivity(pre, int8, inputs[:4], work)
                if keep >= len(ranked):
                    raise GateFailed(
                        f"INT8 loses {fp32 - score:.4f} on the val split even with all {len(ranked)} nodes "
                        f"in float, more than --max-drop {max_drop}: not written"
                    )
                keep = min(len(ranked), max(1, 2 * keep))
                quantize_file(pre, int8, task, inputs, ranked[:keep])
                score = scorer(int8)
            report.update(int8=score, drop=fp32 - score, kept_in_float=ranked[:keep])
            if keep:
                timed()
        model = onnx.load(str(int8))
        source = onnx.load(str(fp32_file), load_external_data=False)
        del model.metadata_props[:]
        for prop in source.metadata_props:
            value = json.dumps({**meta, "int8": report}) if prop.key == META_KEY else prop.value
            model.metadata_props.add(key=prop.key, value=value)
        onnx.save(model, str(work / "final.onnx"))
        (work / "final.onnx").replace(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def time_sessions(fp32_file: Path, int8_file: Path, x: np.ndarray) -> tuple[float, float]:
    """Median ms per call of both models in ONNX Runtime on ``x`` (interleaved, torch's threads)."""
    import torch

    from detseg.engine.onnx_runtime import OnnxModel
    from detseg.export.timing import median_ms

    files = {"fp32": fp32_file, "int8": int8_file}
    models = {k: OnnxModel(p, {}, threads=torch.get_num_threads()) for k, p in files.items()}
    ms = median_ms({k: (lambda m=m: m.session.run(None, {m.input_name: x})) for k, m in models.items()})
    return ms["fp32"], ms["int8"]


def export_onnx_int8(
    weights: str | Path,
    out: str | Path,
    calib: str | Path | None,
    calib_split: str = "train",
    calib_images: int = 300,
    max_drop: float | None = 0.005,
    val_split: str = "val",
    keep_slower: bool = False,
    timer: Callable[[Path, Path, np.ndarray], tuple[float, float]] | None = None,
    **onnx_options: Any,
) -> dict[str, Any]:
    """``detseg export --format onnx --int8``: the FP32 export (:func:`export_onnx`, checked as always,
    ``onnx_options`` passed on), quantised by :func:`quantize_onnx` into ``out``; returns the FP32
    export's summary with ``path`` and ``int8`` (the report)."""
    from detseg.engine.onnx_runtime import META_KEY, OnnxModel, read_metadata
    from detseg.export.calibration import METRIC, calibration_inputs, load_split, score
    from detseg.export.onnx_export import export_onnx
    from detseg.export.openvino_export import calibration_needed

    if calib is None:
        raise ValueError(calibration_needed("--int8"))
    if onnx_options.get("half"):
        raise ValueError("--int8 and --half exclude each other")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.stem}.", dir=out.parent) as tmp:
        fp32_file = Path(tmp) / "fp32.onnx"
        summary = export_onnx(weights, fp32_file, **onnx_options)
        meta = json.loads(read_metadata(fp32_file)[META_KEY])
        inputs = calibration_inputs(meta, calib, calib_split, calib_images)
        scorer = None
        if max_drop is not None:
            dataset = load_split(meta, calib, val_split)
            scorer = lambda path: score(OnnxModel(path, meta), meta, dataset)  # noqa: E731
        report = quantize_onnx(fp32_file, out, meta, inputs, scorer, max_drop, timer or time_sessions,
                               keep_slower)  # fmt: skip
    report.update(calib=str(calib), calib_split=calib_split, split=val_split, metric=METRIC[meta["task"]])
    return {**summary, "path": str(out), "int8": report}
