"""Every precision side by side: eager FP32 and BF16 autocast, ONNX Runtime FP32 / INT8, OpenVINO FP32 /
BF16 / INT8, per model at batch 1 and 8, with each one's agreement with eager FP32.

Each model is exported exactly as ``detseg export`` does (:func:`export_onnx`, :func:`export_onnx_int8`,
:func:`export_openvino`), INT8 calibrated on real images of a spec through detseg's preprocessing, and
all seven are timed in this process with the same threads, interleaved call by call (medians of
``--repeat`` calls, ms per image). Agreement is measured on the spec's val images (windows of the
model's size): segmenters the share of pixels with eager FP32's class, classifiers of equal top-1,
detectors of eager FP32's detections matched (same label, score within 0.05, box within 2 px).

    python benchmarks/export_precision.py --models unet16 unet64 [--threads 2] [--repeat 5]
    python benchmarks/export_precision.py --checkpoint RUN/best.pt --data SPEC [--max-drop 0.005]

Without ``--checkpoint`` the models have seeded random weights (speed does not depend on them) and are
calibrated on ``detseg synth`` shapes (hymenoptera for the classifier); their INT8 is not gated (a
random model has no accuracy to keep). With ``--checkpoint`` the trained model is also scored on the
spec's val split by detseg's evaluator in every runtime, and INT8 goes through the accuracy gate.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "export"))

# name: (registered model, builder arguments, input side, data: "synth" or a spec under examples/)
MODELS = {
    "unet16": ("unet", {"width": 16}, 256, "synth"),
    "unet64": ("unet", {"width": 64}, 256, "synth"),
    "deeplab": ("deeplabv3_mobilenet_v3_large", {}, 256, "synth"),
    "ssdlite": ("ssdlite320_mobilenet_v3_large", {"size": 320}, 320, "synth"),
    "classifier": ("resnet18_classifier", {}, 224, "hymenoptera.yaml"),
}
RUNTIMES = ["eager FP32", "eager BF16", "ORT FP32", "ORT INT8", "OV FP32", "OV BF16", "OV INT8"]


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _checkpoint(key: str, folder: Path) -> tuple[Path, Path]:
    """A seeded random checkpoint of ``key`` and the spec whose images calibrate and check it."""
    from export_toys import make_checkpoint

    from detseg.cli import main
    from detseg.data.spec import load_spec
    from detseg.models.zoo import model_info

    name, kwargs, side, data = MODELS[key]
    if data == "synth":
        shapes = folder / f"shapes{side}"
        if not shapes.exists():
            main(["synth", str(shapes), "--num-train", "64", "--num-val", "8", "--size", str(side)])
        task = model_info(name).task
        spec = shapes / ("detect.yaml" if task == "detect" else "segment.yaml")
    else:
        spec = ROOT / "examples" / data
    classes = list(load_spec(spec).classes)
    return make_checkpoint(folder / key, name, classes, img_size=side, **kwargs), spec


def _exports(ckpt: Path, spec: Path, folder: Path, calib: int, max_drop: float | None) -> tuple[dict, dict]:
    """The four exported files and the gate's scores they came with (``{runtime: score}``, when gated)."""
    from detseg.export.onnx_export import export_onnx
    from detseg.export.onnx_int8 import export_onnx_int8
    from detseg.export.openvino_export import export_openvino

    files = {"ORT FP32": folder / "m.onnx", "ORT INT8": folder / "m.int8.onnx"}
    dynamic = max_drop is not None  # a trained segmenter is scored on whole images: any window size
    export_onnx(ckpt, files["ORT FP32"], check=False, dynamic=dynamic)
    from detseg.export.openvino_int8 import GateFailed

    def int8_onnx(gate: float | None) -> dict:
        return export_onnx_int8(ckpt, files["ORT INT8"], spec, calib_images=calib, max_drop=gate,
                                keep_slower=True, check=False, dynamic=dynamic)["int8"]  # fmt: skip

    try:
        report = int8_onnx(max_drop)
    except GateFailed as exc:  # refused: timed anyway as NNCF's / ORT's plain INT8, and said so
        print(f"  ORT INT8: refused by the gate ({exc}); the row times the ungated INT8", flush=True)
        report = int8_onnx(None)
    scores = {"ORT FP32": report.get("fp32"), "ORT INT8": report.get("int8")}
    print(f"  ORT INT8: {_gate(report)}", flush=True)
    for precision in ("fp32", "bf16", "int8"):
        files[f"OV {precision.upper()}"] = out = folder / f"m_{precision}.xml"
        options = dict(calib=spec, calib_images=calib, check=False)
        try:
            summary = export_openvino(ckpt, out, precision, max_drop=max_drop, **options)
        except GateFailed as exc:
            print(f"  OV INT8: refused by the gate ({exc}); the row times the ungated INT8", flush=True)
            summary = export_openvino(ckpt, out, precision, max_drop=None, **options)
        if precision == "int8":
            q = summary["quantization"]
            scores.update({"OV FP32": q.get("fp32"), "OV INT8": q.get("int8")})
            print(f"  OV INT8: {_gate(q)}", flush=True)
    return files, {k: v for k, v in scores.items() if v is not None}


def _gate(report: dict) -> str:
    if "fp32" not in report:
        return "not gated (random weights, or refused by the gate above)"
    kept = report["kept_in_float"]
    return (f"{report['metric']} FP32 {report['fp32']:.4f}, default INT8 {report['default_int8']:.4f}, "
            f"INT8 {report['int8']:.4f}; kept in float: {len(kept)} {kept[:4]}")  # fmt: skip


class _Autocast(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self.model(x)
        if isinstance(out, list):
            return [{k: v.float() if v.is_floating_point() else v for k, v in o.items()} for o in out]
        return out.float()


def _agreement(task: str, ref, got) -> float:
    from detseg.engine.tasks import class_logits
    from detseg.export.onnx_export import compare_detections

    if task == "detect":
        reports = [
            compare_detections(r, g, score_tol=0.05, box_tol=2.0) for r, g in zip(ref, got, strict=True)
        ]
        total = sum(r["detections"] for r in reports)
        return 1.0 - sum(r["unmatched"] for r in reports) / max(1, 2 * total)
    if task == "classify":
        return float((ref.argmax(1) == got.argmax(1)).float().mean())
    return float((class_logits(ref).argmax(1) == class_logits(got).argmax(1)).float().mean())


@torch.no_grad()
def bench(ckpt: Path, spec: Path, folder: Path, args: argparse.Namespace, label: str) -> None:
    import numpy as np

    from detseg.engine.loader import load_model
    from detseg.export.calibration import METRIC, calibration_inputs, load_split, score
    from detseg.export.timing import median_ms

    files, scores = _exports(
        ckpt, spec, folder, args.calib_images, args.max_drop if args.checkpoint else None
    )
    model, meta = load_model(ckpt)
    task = "detect" if meta["task"] in ("detect", "instance") else meta["task"]
    models = {"eager FP32": model, "eager BF16": _Autocast(model)}
    models.update({k: load_model(p)[0] for k, p in files.items()})
    inputs = calibration_inputs(meta, spec, "val", 8)
    for batch in args.batches:
        if task == "detect":
            x = [torch.from_numpy(a) for a in (inputs * 8)[:batch]]
        else:
            x = torch.from_numpy(np.concatenate((inputs * 8)[:batch]))
        outputs = {k: m(x) for k, m in models.items()}
        agree = {k: _agreement(task, outputs["eager FP32"], v) for k, v in outputs.items()}
        ms = median_ms({k: (lambda m=m, x=x: m(x)) for k, m in models.items()}, repeat=args.repeat)
        base = ms["ORT FP32"]
        cells = [f"{ms[k] / batch:.1f} ({base / ms[k]:.2f}x, {100 * agree[k]:.1f} %)" for k in RUNTIMES]
        print(f"| {label} | {batch} | " + " | ".join(cells) + " |", flush=True)
    if args.checkpoint:
        dataset = load_split(meta, spec, "val")
        scores.update({k: score(m, meta, dataset) for k, m in models.items() if k not in scores})
        cells = " | ".join(f"{scores[k]:.4f}" for k in RUNTIMES)
        print(f"| {label}: val {METRIC[meta['task']]} | | {cells} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["unet16", "unet64"], choices=sorted(MODELS))
    parser.add_argument("--checkpoint", type=Path, help="a trained checkpoint instead of --models")
    parser.add_argument("--data", type=Path, help="with --checkpoint: its spec (calibration, val split)")
    parser.add_argument("--threads", type=int, default=2, help="torch, ONNX Runtime and OpenVINO threads")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per runtime and batch")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--calib-images", type=int, default=64)
    parser.add_argument("--max-drop", type=float, default=0.005)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import nncf
    import onnxruntime
    import openvino

    from detseg.export.timing import instruction_sets_line

    versions = (
        f"onnxruntime {onnxruntime.__version__}, openvino {openvino.__version__}, nncf {nncf.__version__}"
    )
    print(f"torch {torch.__version__}, {versions}; {args.threads} thread(s); {instruction_sets_line()}")
    print(f"before: {uptime()}")
    print(
        "ms per image (speed-up vs ORT FP32, agreement with eager FP32), medians of "
        f"{args.repeat} interleaved calls"
    )
    print(f"| model | batch | {' | '.join(RUNTIMES)} |")
    print("|---" * (len(RUNTIMES) + 2) + "|")
    with tempfile.TemporaryDirectory() as tmp:
        if args.checkpoint:
            bench(args.checkpoint, args.data, Path(tmp), args, args.checkpoint.parent.name)
        for key in [] if args.checkpoint else args.models:
            ckpt, spec = _checkpoint(key, Path(tmp))
            work = Path(tmp) / f"{key}-files"
            work.mkdir()
            name, _, side, _ = MODELS[key]
            bench(ckpt, spec, work, args, f"{key} ({name}, {side} px)")
    print(f"after:  {uptime()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
