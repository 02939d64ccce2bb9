"""INT8 for OpenVINO: NNCF's post-training quantisation, calibrated on real images, with an accuracy gate.

1. ``nncf.quantize`` (the CPU's default scheme: per-channel symmetric int8 weights, per-tensor int8
   activations, fast bias correction), calibrated on :func:`detseg.export.calibration.calibration_inputs`.
   Detectors keep their post-processing in float: the ops that resize the image, decode the boxes and
   run NMS (element-wise arithmetic, ``Exp``, ``Interpolate``, ``TopK``, ``NonMaxSuppression``...) are
   NNCF's ``ignored_scope``; their convolutions (backbone and heads) go int8.
2. The gate: FP32 and INT8 are scored on the spec's val split by detseg's evaluators (mIoU, AP50,
   accuracy). While the drop exceeds ``max_drop``, NNCF's ``quantize_with_accuracy_control`` ranks the
   quantised layers by the metric with each reverted to float alone (on the val images whose own
   score INT8 moved most) and reverts the most sensitive, one group at a time, until the score holds.
   What stayed in float is reported by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

WEIGHTED = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul")
DETECTOR_FLOAT_OPS = [
    "Add",
    "Subtract",
    "Multiply",
    "Divide",
    "Exp",
    "Log",
    "Sqrt",
    "Power",
    "Maximum",
    "Minimum",
    "Clamp",
    "Interpolate",
    "TopK",
    "NonMaxSuppression",
    "Sigmoid",
    "SoftMax",
    "Softmax",
    "ReduceMax",
    "Floor",
    "Ceiling",
    "Round",
    "Greater",
    "Less",
    "Select",
]


RANKING_IMAGES = 32  # val images NNCF ranks the layers on (those whose own score INT8 moved most)


class GateFailed(ValueError):
    """Low precision loses more than ``max_drop`` even with layers kept in float."""


def quantized_layers(model: Any) -> list[str]:
    """Friendly names of the weighted ops (conv, matmul) whose weights were compressed to int8."""
    names = []
    for op in model.get_ops():
        if op.get_type_name() in WEIGHTED and op.get_input_size() > 1 and _int8_weights(op.input_value(1)):
            names.append(op.get_friendly_name().removesuffix("/WithoutBiases"))
    return names


def _int8_weights(value: Any, depth: int = 0) -> bool:
    node = value.get_node()
    kind = node.get_type_name()
    if kind == "FakeQuantize":
        return True
    if kind == "Constant":
        return node.get_element_type().get_type_name() in ("i8", "u8", "i4", "u4")
    if depth > 6 or kind not in ("Multiply", "Subtract", "Convert", "Reshape", "Transpose", "Unsqueeze"):
        return False
    return any(_int8_weights(node.input_value(i), depth + 1) for i in range(node.get_input_size()))


def _ignored_scope(task: str) -> Any:
    import nncf

    if task in ("detect", "instance"):
        return nncf.IgnoredScope(types=DETECTOR_FLOAT_OPS, validate=False)
    return None


def quantize_openvino(
    model: Any,
    meta: dict[str, Any],
    calibration: list[np.ndarray],
    spec: str | None,
    val_split: str = "val",
    max_drop: float | None = 0.005,
) -> tuple[Any, dict[str, Any]]:
    """``(int8 openvino.Model, report)``. ``report``: ``calibration_images``, ``quantized_layers``, and
    with a gate (``spec`` and ``max_drop`` given) ``metric``, ``fp32``, ``int8`` (the scores),
    ``default_int8`` (NNCF's default INT8's score), ``drop``, ``max_drop``, ``kept_in_float`` (names).
    Raises :class:`GateFailed` when even the accuracy-controlled model loses more than ``max_drop``."""
    import logging

    import nncf

    from detseg.engine.openvino_runtime import OpenVinoModel, signal_stack_kept
    from detseg.export.calibration import METRIC, load_split, score

    nncf.set_log_level(logging.WARNING)  # its per-node INFO lines; detseg prints the report
    task = meta.get("task", "segment")
    calib_set = nncf.Dataset(calibration)
    options = dict(subset_size=len(calibration), ignored_scope=_ignored_scope(task))
    with signal_stack_kept():
        quantized = nncf.quantize(model, calib_set, **options)
    report: dict[str, Any] = {"calibration_images": len(calibration), "method": "nncf.quantize"}
    default_layers = quantized_layers(quantized)
    if spec is None or max_drop is None:
        report["quantized_layers"] = default_layers
        return quantized, report
    dataset = load_split(meta, spec, val_split)
    fp32 = score(OpenVinoModel(model, meta), meta, dataset)
    int8 = score(OpenVinoModel(quantized, meta), meta, dataset)
    report.update(
        metric=METRIC[task],
        split=val_split,
        fp32=fp32,
        default_int8=int8,
        int8=int8,
        max_drop=max_drop,
        kept_in_float=[],
    )
    if fp32 - int8 > max_drop:
        with signal_stack_kept():
            quantized = _accuracy_control(model, meta, calib_set, dataset, max_drop, options)
        int8 = score(OpenVinoModel(quantized, meta), meta, dataset)
        layers = set(quantized_layers(quantized))
        report.update(
            int8=int8,
            method="nncf.quantize_with_accuracy_control",
            kept_in_float=[n for n in default_layers if n not in layers],
        )
    report.update(drop=fp32 - int8, quantized_layers=quantized_layers(quantized))
    if report["drop"] > max_drop:
        raise GateFailed(
            f"INT8 loses {report['drop']:.4f} {report['metric']} on {val_split} ({fp32:.4f} -> {int8:.4f}) "
            f"even with {len(report['kept_in_float'])} of {len(default_layers)} layers in float, more than "
            f"--max-drop {max_drop}: not written; try --precision bf16, or a larger --max-drop"
        )
    return quantized, report


def _accuracy_control(
    model: Any, meta: dict[str, Any], calib_set: Any, dataset: Any, max_drop: float, options: dict[str, Any]
) -> Any:
    """NNCF's accuracy control with detseg's evaluator as ``validation_fn`` over the val images."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    from detseg.engine.openvino_runtime import OpenVinoModel
    from detseg.export.calibration import model_input, score

    def validate(compiled: Any, items: Any) -> tuple[float, list[float]]:
        # The metric and each image's own: NNCF ranks the layers by the metric with each reverted
        # (its "metric mode"), on the images whose score INT8 moved most.
        per_item: list[float] = []
        metric = score(OpenVinoModel(None, meta, compiled=compiled), meta, dataset, [int(i) for i in items],
                       per_item)  # fmt: skip
        return metric, per_item

    validation = nncf.Dataset(list(range(len(dataset))), lambda i: model_input(meta, dataset, i))
    return nncf.quantize_with_accuracy_control(
        model,
        calib_set,
        validation,
        validate,
        max_drop=max_drop,
        drop_type=nncf.DropType.ABSOLUTE,
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
            num_ranking_workers=1, ranking_subset_size=min(len(dataset), RANKING_IMAGES)
        ),
        **options,
    )


def agreement(reference: Any, candidate: Any, x: torch.Tensor, task: str) -> dict[str, float]:
    """How closely ``candidate`` follows ``reference`` (both called like the PyTorch model) on ``x``:
    segmenters ``pixel_agreement`` (equal argmax), classifiers ``top1_agreement``, detectors the
    matching of :func:`detseg.export.onnx_export.compare_detections` with a looser score tolerance."""
    from detseg.engine.tasks import class_logits

    with torch.no_grad():
        if task in ("detect", "instance"):
            from detseg.export.onnx_export import compare_detections

            ref, got = reference([x])[0], candidate([x])[0]
            report = compare_detections(ref, got, score_tol=0.05, box_tol=2.0)
            return {
                "detections": report["detections"],
                "unmatched": report["unmatched"],
                "max_box_diff": report["max_box_diff"],
            }
        ref, got = reference(x), candidate(x)
        if task == "classify":
            return {"top1_agreement": float((ref.argmax(1) == got.argmax(1)).float().mean())}
        same = class_logits(ref).argmax(1) == class_logits(got).argmax(1)
        return {"pixel_agreement": float(same.float().mean())}
