"""``detseg export``: a trained checkpoint to ONNX (or TorchScript), checked against PyTorch.

detseg export --weights runs/shapes-unet/best.pt --format onnx --out unet.onnx
detseg predict --weights unet.onnx --source images/ --out pred/     # ONNX Runtime, same outputs
detseg export --weights runs/shapes-unet/best.pt --format openvino --precision int8 --calib data/segment.yaml
detseg export --weights runs/shapes-unet/best.pt --format onnx --int8 --calib data/segment.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX (or TorchScript) for ONNX Runtime",
        description="Write the model of a checkpoint as ONNX with detseg's metadata (model, classes, input "
        "size, normalisation, score threshold, version), run ONNX Runtime on a sample beside PyTorch and "
        "print the largest difference; `detseg predict/eval --weights FILE.onnx` run it.",
    )
    p.add_argument("--weights", required=True, type=Path, help="checkpoint (RUN_DIR/best.pt) or run folder")
    p.add_argument("--format", choices=["onnx", "torchscript", "openvino"], default="onnx")
    p.add_argument(
        "--out",
        type=Path,
        help="output file (default: the checkpoint with .onnx/.int8.onnx/.xml/.torchscript)",
    )
    p.add_argument("--img-size", type=int, help="input side (default: the training --img-size)")
    p.add_argument(
        "--dynamic",
        action="store_true",
        help="segmenters/classifiers: any input height and width (the batch axis is always dynamic; "
        "detectors always take any size)",
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--half", action="store_true", help="float16 weights and input (for the CUDA provider)")
    p.add_argument(
        "--output",
        choices=["logits", "argmax"],
        default="logits",
        help="segmenters: class logits [B,K,H,W] (default) or class indices [B,H,W]",
    )
    p.add_argument("--sample", type=Path, help="an image for the self-check (default: seeded noise)")
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    low = p.add_argument_group("low precision (docs/export.md)")
    low.add_argument(
        "--precision",
        choices=["fp32", "bf16", "int8"],
        default="fp32",
        help="--format openvino: fp32, bf16 (inference precision hint) or int8 (NNCF, needs --calib)",
    )
    low.add_argument(
        "--int8", action="store_true", help="--format onnx: ONNX Runtime static INT8 (needs --calib)"
    )
    low.add_argument(
        "--calib", type=Path, help="INT8: dataset spec whose images calibrate and whose val split gates"
    )
    low.add_argument(
        "--calib-split", default="train", help="INT8: the spec's split to calibrate on (default train)"
    )
    low.add_argument("--calib-images", type=int, default=300, help="INT8: calibration images (default 300)")
    low.add_argument(
        "--val-split", default="val", help="INT8: the split the accuracy gate scores (default val)"
    )
    low.add_argument(
        "--max-drop",
        type=float,
        default=0.005,
        help="INT8: the most mIoU / AP50 / accuracy it may lose on --val-split; sensitive layers stay in "
        "float until it holds (default 0.005; a negative value skips the gate)",
    )
    low.add_argument(
        "--keep-slower", action="store_true", help="--int8: write it even if slower than FP32 here"
    )
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from detseg.export.onnx_export import export_onnx, export_torchscript

    weights = args.weights / "best.pt" if args.weights.is_dir() else args.weights
    if args.format != "openvino" and args.precision != "fp32":
        raise ValueError("--precision is for --format openvino (ONNX: --int8, or --half)")
    if args.int8 and args.format != "onnx":
        raise ValueError("--int8 is for --format onnx (OpenVINO: --precision int8)")
    suffix = {"onnx": ".int8.onnx" if args.int8 else ".onnx", "openvino": ".xml"}.get(
        args.format, ".torchscript"
    )
    out = args.out or weights.with_suffix(suffix)
    max_drop = None if args.max_drop < 0 else args.max_drop
    calib = dict(calib=args.calib, calib_split=args.calib_split, calib_images=args.calib_images,
                 max_drop=max_drop, val_split=args.val_split)  # fmt: skip
    if args.format == "openvino":
        from detseg.export.openvino_export import export_openvino

        if args.half:
            raise ValueError("--half is for --format onnx; OpenVINO: --precision bf16 (or int8)")

        options = dict(img_size=args.img_size, sample=args.sample, check=not args.no_check, opset=args.opset,
                       output=args.output)  # fmt: skip
        summary = export_openvino(weights, out, args.precision, **options, **calib)
        _print_low_precision(weights, summary)
        return 0
    if args.int8:
        from detseg.export.onnx_int8 import export_onnx_int8

        summary = export_onnx_int8(weights, out, keep_slower=args.keep_slower, img_size=args.img_size,
                                   dynamic=args.dynamic, opset=args.opset, sample=args.sample,
                                   check=not args.no_check, **calib)  # fmt: skip
        _print_low_precision(weights, summary)
        return 0
    if args.format == "torchscript":
        summary = export_torchscript(weights, out, img_size=args.img_size, output=args.output)
    else:
        summary = export_onnx(
            weights,
            out,
            img_size=args.img_size,
            dynamic=args.dynamic,
            opset=args.opset,
            half=args.half,
            output=args.output,
            sample=args.sample,
            check=not args.no_check,
        )
    shape = "x".join(str(v) for v in summary["input_shape"])
    print(
        f"exported {weights} ({summary['task']}, output {summary['output']}, input {shape}) to "
        f"{summary['path']} in {summary['seconds']:.1f} s",
        file=sys.stderr,
    )
    if "max_box_diff" in summary:
        cut = f" ({summary['at_cut']} near-tied at the per-image cap)" if summary.get("at_cut") else ""
        print(
            f"check vs PyTorch: {summary['detections']} detections, {summary['unmatched']} unmatched{cut}, "
            f"max box difference {summary['max_box_diff']:.2e} px, max score difference "
            f"{summary['max_score_diff']:.2e}",
            file=sys.stderr,
        )
    elif "max_abs_diff" in summary:
        agree = summary.get("pixel_agreement", summary.get("top1_agreement"))
        extra = (
            f", {100 * agree:.3f} % of {'pixels' if 'pixel_agreement' in summary else 'top-1 classes'} equal"
            if agree is not None
            else ""
        )
        print(f"check vs PyTorch: max |difference| {summary['max_abs_diff']:.2e}{extra}", file=sys.stderr)
    return 0


def _print_low_precision(weights: Path, summary: dict) -> None:
    """The export's lines: what was written, agreement with FP32, speed, the gate's figures."""
    report = summary.get("quantization") or summary.get("int8") or {}
    what = summary.get("precision") or "int8"
    print(f"exported {weights} ({summary['task']}, {what}) to {summary['path']} in "
          f"{summary['seconds']:.1f} s", file=sys.stderr)  # fmt: skip
    agree = summary.get("agreement") or {}
    if agree:
        text = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in agree.items())
        print(f"agreement with FP32 on the sample: {text}", file=sys.stderr)
    if "ms" in summary:
        ms = summary["ms"]
        print(f"speed on this CPU ({', '.join(f'{k} {v:.1f} ms' for k, v in ms.items())}): "
              f"{summary['speedup_vs_fp32']:.2f}x OpenVINO FP32, {summary['speedup_vs_onnxruntime']:.2f}x "
              "ONNX Runtime FP32", file=sys.stderr)  # fmt: skip
    elif "speedup" in report:
        print(f"speed on this CPU: INT8 {report['int8_ms']:.1f} ms, FP32 {report['fp32_ms']:.1f} ms per call "
              f"({report['speedup']:.2f}x)", file=sys.stderr)  # fmt: skip
    fp32 = report.get("fp32")
    if fp32 is not None:
        int8 = report["int8"]
        kept = report.get("kept_in_float") or []
        metric = report.get("metric", "score")
        print(f"accuracy gate on {report.get('split', 'val')}: {metric} FP32 {fp32:.4f}, INT8 {int8:.4f} "
              f"(default INT8 {report['default_int8']:.4f}), drop {report['drop']:.4f} <= "
              f"{report['max_drop']}; kept in float: {', '.join(kept) if kept else 'none'}",
              file=sys.stderr)  # fmt: skip
