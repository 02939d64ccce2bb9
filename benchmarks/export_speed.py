"""Eager PyTorch vs ONNX Runtime per model, at batch 1 and 8, with the outputs' largest difference.

Each model is built with seeded random weights (speed does not depend on them), exported by
``detseg.export.export_onnx`` exactly as ``detseg export`` does, and both are timed in this process with
the same number of threads (``--threads``, default 1), eager and ONNX Runtime interleaved call by call
so that a machine whose load drifts slows both alike; medians of ``--repeat`` calls, and the median of
the per-pair ratios. Detectors take a list of images (batch 8: eight images in one call; ONNX Runtime
runs them one by one). Segmenters are also timed eager on a channels-last input ("eager NHWC"), which
is what ``detseg predict`` gives them (an HWC image permuted) and which oneDNN runs faster; the speedup
column is against the plain NCHW eager call. The load average (``uptime``) is printed before and
after: on a shared machine the absolute figures move, the ratios much less.

    python benchmarks/export_speed.py [--models unet ssdlite deeplab] [--threads 1] [--repeat 15]
    python benchmarks/export_speed.py --predict RUN/best.pt RUN/best.onnx IMAGES [--rounds 3]

The second form times ``detseg predict`` itself (speed.json's inference_ms), checkpoint and ONNX file
alternately.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "export"))

# name: (registered model, builder arguments, input side)
MODELS = {
    "unet": ("unet", {"num_classes": 2, "width": 16}, 256),
    "ssdlite": ("ssdlite320_mobilenet_v3_large", {"num_classes": 3, "size": 320}, 320),
    "deeplab": ("deeplabv3_mobilenet_v3_large", {"num_classes": 21}, 256),
    "deeplab520": ("deeplabv3_mobilenet_v3_large", {"num_classes": 21}, 520),
    "fasterrcnn": ("fasterrcnn_mobilenet_v3_large_320_fpn", {"num_classes": 3, "size": 320}, 320),
    "rfcn": ("rfcn_resnet18", {"num_classes": 3, "size": 320}, 320),
    "classifier": ("resnet18_classifier", {"num_classes": 2}, 224),
}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _max_diff(ref, got) -> str:
    from detseg.export.onnx_export import compare_detections

    if isinstance(ref, list):
        reports = [compare_detections(r, g) for r, g in zip(ref, got, strict=True)]
        text = f"{max(r['max_box_diff'] for r in reports):.1e} box px"
        unmatched = sum(r["unmatched"] for r in reports)
        # Batched eager convolutions differ in the last bits from one-image ones: near-tied boxes at the
        # per-image cap (300) can swap in or out.
        total = sum(r["detections"] for r in reports)
        return text + (f", {unmatched} of {total} unmatched" if unmatched else "")
    return f"{float((ref.float() - got.float()).abs().max()):.1e} logit"


def bench(key: str, repeat: int, folder: Path) -> list[dict]:
    from export_toys import make_checkpoint

    from detseg.engine.predict import load_model
    from detseg.export.onnx_export import export_onnx
    from detseg.models.zoo import model_info

    name, kwargs, side = MODELS[key]
    kwargs = dict(kwargs)
    classes = [f"c{i}" for i in range(kwargs.pop("num_classes"))]
    ckpt = make_checkpoint(folder / key, name, classes, img_size=side, **kwargs)
    onnx_file = folder / f"{key}.onnx"
    export_onnx(ckpt, onnx_file, check=False)
    model, _ = load_model(ckpt)
    onnx_model, _ = load_model(onnx_file)
    detector = model_info(name).task == "detect"
    rows = []
    for batch in (1, 8):
        generator = torch.Generator().manual_seed(batch)
        x = torch.rand(batch, 3, side, side, generator=generator)
        inputs = list(x) if detector else x
        # Segmenters also eager on a channels-last input: what predict feeds them (an HWC image permuted).
        nhwc = None if detector else x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            ref, got = model(inputs), onnx_model(inputs)  # also the warm-up
            eager, ort, ratios, eager_cl = [], [], [], []
            for _ in range(repeat):
                t0 = time.perf_counter()
                model(inputs)
                t1 = time.perf_counter()
                onnx_model(inputs)
                t2 = time.perf_counter()
                if nhwc is not None:
                    model(nhwc)
                    eager_cl.append(time.perf_counter() - t2)
                eager.append(t1 - t0)
                ort.append(t2 - t1)
                ratios.append((t1 - t0) / (t2 - t1))
        rows.append({
            "model": f"{name} {side}px", "batch": batch,
            "eager_ms": 1000 * statistics.median(eager) / batch,
            "ort_ms": 1000 * statistics.median(ort) / batch,
            "speedup": statistics.median(ratios), "max_diff": _max_diff(ref, got),
            "eager_cl_ms": 1000 * statistics.median(eager_cl) / batch if eager_cl else None,
        })
        print(_row(rows[-1]), flush=True)
    return rows


def _row(r: dict) -> str:
    cl = f"{r['eager_cl_ms']:>9.1f}" if r["eager_cl_ms"] is not None else f"{'-':>9}"
    return (f"| {r['model']:<42} | {r['batch']:>5} | {r['eager_ms']:>9.1f} | {cl} | {r['ort_ms']:>9.1f} | "
            f"{r['speedup']:>6.2f}x | {r['max_diff']} |")


def predict_rounds(checkpoint: str, onnx_file: str, source: str, rounds: int) -> None:
    """``detseg predict`` with the checkpoint and with its ONNX file, alternately, ``rounds`` times each:
    the ``inference_ms`` (median per image) of every run's speed.json, their medians and the ratio."""
    from detseg.engine.predict import predict

    runs: dict[str, list[float]] = {"pytorch": [], "onnxruntime": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            for backend, weights in (("pytorch", checkpoint), ("onnxruntime", onnx_file)):
                speed = predict(weights, source, Path(tmp) / f"{backend}{i}")["speed"]
                runs[backend].append(speed["inference_ms"])
                print(f"round {i + 1}: {backend:<11} {speed['inference_ms']:8.1f} ms inference, "
                      f"{speed['preprocess_ms']:.1f} ms preprocess, {speed['postprocess_ms']:.1f} ms "
                      f"postprocess per image at {speed['image_size']}", flush=True)
    eager, ort = statistics.median(runs["pytorch"]), statistics.median(runs["onnxruntime"])
    print(f"detseg predict, median of {rounds} runs each: PyTorch {eager:.1f} ms, ONNX Runtime {ort:.1f} ms "
          f"inference per image ({eager / ort:.2f}x)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["unet", "ssdlite", "deeplab"], choices=sorted(MODELS))
    parser.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime intra-op threads")
    parser.add_argument("--repeat", type=int, default=15, help="timed calls per model and batch")
    parser.add_argument(
        "--predict", nargs=3, metavar=("CKPT", "ONNX", "SOURCE"),
        help="instead: detseg predict with CKPT and with ONNX on SOURCE, alternately (--rounds times)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import onnxruntime

    if args.predict:
        print(f"before: {uptime()}")
        predict_rounds(*args.predict, rounds=args.rounds)
        print(f"after:  {uptime()}")
        return 0

    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {args.threads} thread(s), "
          f"medians of {args.repeat} interleaved calls, ms per image")
    print(f"before: {uptime()}")
    print(f"| {'model':<42} | batch | eager ms  | eager NHWC |  ORT ms   | speedup | max difference |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.models:
            bench(key, args.repeat, Path(tmp))
    print(f"after:  {uptime()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
