"""``detseg export``: a trained checkpoint to ONNX (or TorchScript), checked against PyTorch.

detseg export --weights runs/shapes-unet/best.pt --format onnx --out unet.onnx
detseg predict --weights unet.onnx --source images/ --out pred/     # ONNX Runtime, same outputs
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
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    p.add_argument("--out", type=Path, help="output file (default: the checkpoint with .onnx/.torchscript)")
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
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from detseg.export.onnx_export import export_onnx, export_torchscript

    weights = args.weights / "best.pt" if args.weights.is_dir() else args.weights
    suffix = ".onnx" if args.format == "onnx" else ".torchscript"
    out = args.out or weights.with_suffix(suffix)
    if args.format == "torchscript":
        summary = export_torchscript(weights, out, img_size=args.img_size, output=args.output)
    else:
        summary = export_onnx(
            weights, out, img_size=args.img_size, dynamic=args.dynamic, opset=args.opset, half=args.half,
            output=args.output, sample=args.sample, check=not args.no_check,
        )
    shape = "x".join(str(v) for v in summary["input_shape"])
    print(f"exported {weights} ({summary['task']}, output {summary['output']}, input {shape}) to "
          f"{summary['path']} in {summary['seconds']:.1f} s", file=sys.stderr)
    if "max_box_diff" in summary:
        cut = f" ({summary['at_cut']} near-tied at the per-image cap)" if summary.get("at_cut") else ""
        print(f"check vs PyTorch: {summary['detections']} detections, {summary['unmatched']} unmatched{cut}, "
              f"max box difference {summary['max_box_diff']:.2e} px, max score difference "
              f"{summary['max_score_diff']:.2e}", file=sys.stderr)
    elif "max_abs_diff" in summary:
        agree = summary.get("pixel_agreement", summary.get("top1_agreement"))
        extra = f", {100 * agree:.3f} % of {'pixels' if 'pixel_agreement' in summary else 'top-1 classes'} " \
                "equal" if agree is not None else ""
        print(f"check vs PyTorch: max |difference| {summary['max_abs_diff']:.2e}{extra}", file=sys.stderr)
    return 0
