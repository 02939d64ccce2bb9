"""``detseg train`` and ``detseg predict``: train a zoo model on a dataset spec, run a saved one on images.

detseg train --model unet --data examples/membrane.yaml --epochs 40 --img-size 256 --out runs/membrane
torchrun --nproc_per_node 2 -m detseg train ...          # DDP (gloo on CPU, nccl on GPU)
detseg train ... --resume                                # continue runs/membrane/last.pt exactly
detseg predict --weights runs/membrane/best.pt --source images/ --out predictions/
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_train(subparsers)
    _register_predict(subparsers)


def _register_train(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model from the zoo on a dataset spec",
        description="Train a registered model (detseg.models.zoo) on the train split of a dataset spec, "
        "evaluating on its val split every epoch; writes RUN_DIR/{last,best}.pt, log.csv, steps.csv, "
        "loss.png, metrics.png, config.json. Options left out come from the spec's train_defaults, then "
        "the model family's registered defaults, then detseg's (printed with their source at the start).",
    )
    p.add_argument(
        "--model", required=True, help="a registered model name (e.g. unet, ssdlite320_mobilenet_v3)"
    )
    p.add_argument("--data", required=True, type=Path, help="dataset spec (YAML, COCO json or VOC folder)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, help="passes over the training split")
    length.add_argument("--iters", type=int, help="optimizer steps (instead of --epochs)")
    p.add_argument(
        "--time",
        type=float,
        metavar="MINUTES",
        help="train for at most MINUTES (evaluation included): the epochs and the schedule are fitted to "
        "the budget after every epoch; with --epochs/--iters, whichever ends first",
    )
    p.add_argument("--out", type=Path, help="run folder (default runs/MODEL)")
    _optimizer_options(p)
    _data_options(p)
    _transfer_options(p)
    _run_options(p)
    p.add_argument("--seed", type=int, help="base: 0")
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        metavar="CHECKPOINT",
        help="continue from CHECKPOINT (default RUN_DIR/last.pt) exactly where it stopped",
    )
    p.add_argument("--workers", type=int, help="data loading processes (base: 0)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 or auto (base: auto)")
    p.set_defaults(func=run_train)


def _optimizer_options(p: argparse.ArgumentParser) -> None:
    """How it learns: batch, optimizer, schedule (None: from the defaults)."""
    # Settings left out (None) come from the spec's train_defaults, then the model's registered default_cfg,
    # then detseg's base defaults (detseg.engine.config); the run prints each value with its source.
    p.add_argument("--batch-size", type=int, help="global batch size, split over DDP processes (base: 4)")
    p.add_argument("--lr", type=float, help="base learning rate (base: 0.01 for sgd, 0.001 for adamw)")
    p.add_argument("--optimizer", choices=["sgd", "adamw"], help="base: sgd")
    p.add_argument("--momentum", type=float, help="SGD momentum (base: 0.9)")
    p.add_argument("--weight-decay", type=float, help="base: 1e-4 for sgd, 1e-2 for adamw")
    p.add_argument("--schedule", choices=["poly", "cosine", "constant"], help="base: poly")
    p.add_argument("--warmup", type=int, metavar="ITERS", help="linear warm-up iterations (base: 0)")
    p.add_argument(
        "--amp", action="store_true", default=None, help="mixed precision (float16 on CUDA, bfloat16 on CPU)"
    )
    p.add_argument("--clip-grad", type=float, metavar="NORM", help="clip the gradient norm to NORM")


def _data_options(p: argparse.ArgumentParser) -> None:
    """Input size, augmentation and loss."""
    p.add_argument(
        "--img-size",
        type=int,
        help="segmentation: random crop size in training (and prediction tile size); detection: "
        "input size (default: the model's default_cfg, else its registered input size)",
    )
    p.add_argument(
        "--scale-range",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="segmentation: random rescaling before the crop (base: 0.5 2.0)",
    )
    p.add_argument(
        "--vflip", type=float, metavar="P", help="vertical flip probability (segmentation and detection)"
    )
    p.add_argument(
        "--rotate",
        type=float,
        metavar="DEG",
        help="segmentation: random rotation in [-DEG, DEG] degrees (new corners are ignored in the loss)",
    )
    p.add_argument(
        "--elastic",
        type=float,
        metavar="PIXELS",
        help="segmentation: U-Net's elastic deformation, displacements of PIXELS std on a 3x3 grid (e.g. 10)",
    )
    p.add_argument(
        "--zoom-out",
        type=float,
        metavar="MAX",
        help="detection: SSD's zoom-out augmentation up to MAX times (base: 4; 1: none), for small objects",
    )
    p.add_argument(
        "--color-jitter",
        type=float,
        metavar="J",
        help="segmentation: brightness and contrast jitter, factors in [1-J, 1+J] (e.g. 0.3)",
    )
    p.add_argument(
        "--no-iou-crop",
        dest="iou_crop",
        action="store_false",
        default=None,
        help="detection: leave out SSD's IoU-constrained random crop (short runs from scratch learn faster)",
    )
    p.add_argument(
        "--boxes-only",
        action="store_true",
        default=None,
        help="instance data (Mask R-CNN): train the box branch alone; the masks are neither read nor needed",
    )
    p.add_argument(
        "--loss",
        choices=["ce", "dice", "ce+dice", "lovasz", "ce+lovasz", "bce", "balanced-bce"],
        help="segmentation loss (bce ones: two classes, one output channel; base: ce)",
    )
    p.add_argument("--class-weights", type=float, nargs="+", metavar="W", help="cross-entropy class weights")


def _transfer_options(p: argparse.ArgumentParser) -> None:
    """Pre-trained weights and the lecture's transfer learning."""
    p.add_argument(
        "--pretrained",
        help="pre-trained weights: a name, a file, or a detseg checkpoint (RUN_DIR/best.pt) of the same "
        "model; trained on other classes, its head is replaced (the report says which tensors)",
    )
    p.add_argument(
        "--backbone",
        metavar="timm:NAME",
        help="a timm encoder under the segmenter (unet, fcn*, deeplabv3*, timm_deeplabv3plus, fpn*) or the "
        "detector (fasterrcnn*, retinanet*, ssdlite*), e.g. timm:tf_efficientnet_lite0 with --pretrained "
        "in1k (`detseg zoo list --backbones`)",
    )
    t = p.add_argument_group("transfer learning (docs/transfer.md)")
    t.add_argument(
        "--freeze",
        metavar="backbone|stages:N|bn|none",
        help="freeze the backbone, or its first N stages; frozen BatchNorm keeps its statistics (eval mode); "
        "bn: only the backbone's BatchNorm statistics (every weight trains)",
    )
    t.add_argument(
        "--lr-backbone", type=float, metavar="LR", help="learning rate of the backbone (the rest: --lr)"
    )
    t.add_argument(
        "--new-head",
        action="store_true",
        default=None,
        help="replace the head even when the classes are the same",
    )
    t.add_argument(
        "--extend-from",
        metavar="CHECKPOINT",
        help="add classes to a trained model: the data's classes must be its classes, in order, then new "
        "ones; the old classes' head weights are kept",
    )
    t.add_argument(
        "--distill",
        type=float,
        metavar="W",
        help="with --extend-from: Learning without Forgetting, W x distillation of the old model's outputs "
        "on the old classes (e.g. 1.0)",
    )
    t.add_argument("--temperature", type=float, metavar="T", help="distillation temperature (default 2)")
    t.add_argument(
        "--pseudo-labels",
        type=float,
        metavar="SCORE",
        help="with --extend-from: old objects left unlabelled in the new data get the old model's "
        "predictions scoring >= SCORE as labels (e.g. 0.5); combines with --distill",
    )


def _run_options(p: argparse.ArgumentParser) -> None:
    """Model arguments, splits, evaluation and the machinery."""
    p.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra model builder argument, e.g. --model-arg width=32 (repeatable)",
    )
    p.add_argument("--train-split", help="the split trained on (base: train)")
    p.add_argument(
        "--val-split",
        help="evaluated every --eval-interval epochs; chooses best.pt (base: val; 'none' to skip)",
    )
    p.add_argument(
        "--test-split",
        help="scored once at the end, with last.pt and best.pt (RUN_DIR/test.json); must differ from the "
        "training and validation splits",
    )
    p.add_argument("--eval-interval", type=int, metavar="EPOCHS", help="base: 1")
    p.add_argument(
        "--sync-bn", action="store_true", default=None, help="DDP: synchronise BatchNorm statistics"
    )
    p.add_argument(
        "--ema",
        type=float,
        metavar="DECAY",
        help="evaluate and predict with an exponential moving average of the weights (e.g. 0.99)",
    )
    p.add_argument(
        "--channels-last",
        action="store_true",
        default=None,
        help="NHWC memory format: about 1.4x faster convolutions on CPU (U-Net: 0.41 s a step, not 0.59)",
    )
    p.add_argument("--tensorboard", action="store_true", default=None, help="also write TensorBoard scalars")
    p.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="at the end, an HTML evaluation report of best.pt on the validation split (DIR/index.html)",
    )
    p.add_argument(
        "--quiet", action="store_true", default=None, help="no settings, progress bars or per-epoch lines"
    )


def _register_predict(subparsers: argparse._SubParsersAction) -> None:
    q = subparsers.add_parser(
        "predict",
        help="run a trained model on an image or a folder",
        description="Segmentation: class-index PNGs in the data set's values (same stem) and overlays; "
        "detection: drawn boxes, labels/*.txt box files and a COCO results.json.",
    )
    q.add_argument("--weights", type=Path, help="checkpoint (RUN_DIR/best.pt), run folder or .onnx")
    # A model used as its weights made it (a classifier: timm:tf_efficientnet_lite0 --pretrained in1k).
    q.add_argument("--model", help="a zoo or timm:NAME model to run as is with --pretrained, instead of "
                   "--weights (e.g. ssdlite320_mobilenet_v3_large --pretrained COCO_V1: COCO's names)")
    q.add_argument("--pretrained", help="--model's weights: a torchvision weights name (COCO_V1, "
                   "COCO_WITH_VOC_LABELS_V1, IMAGENET1K_V1), a timm tag such as in1k, a URL, a file...")
    q.add_argument("--offline", action="store_true",
                   help="never download weights (also DETSEG_OFFLINE=1): say which file to put where")
    q.add_argument("--source", required=True, type=Path, help="an image, a folder of images or a video")
    q.add_argument("--out", required=True, type=Path, help="output folder")
    q.add_argument("--device", default="auto")
    q.add_argument("--tile", type=int, help="segmentation tile size (default: the training --img-size)")
    q.add_argument("--overlap", type=float, default=0.25, help="tile overlap fraction (default 0.25)")
    q.add_argument("--score-threshold", type=float, default=0.3, help="detection: boxes drawn and written")
    q.add_argument(
        "--tta",
        choices=["hflip", "flips", "d4"],
        help="segmentation: average over flipped (d4: also turned) views (docs/segmentation.md)",
    )
    # Scale and deployment (docs/export.md): batches, loader workers, videos, ONNX files without metadata.
    q.add_argument("--batch-size", type=int, default=1, help="images per model call (default 1)")
    q.add_argument("--workers", type=int, default=0, help="image decoding processes (default 0)")
    q.add_argument("--save-frames", action="store_true", help="a video source: also each annotated frame")
    q.add_argument(
        "--classes", help="an ONNX file without detseg metadata: class names, comma-separated or a names file"
    )
    q.add_argument("--img-size", type=int, help="an ONNX file without detseg metadata: its tile size")
    q.set_defaults(func=run_predict)


def parse_model_args(items: list[str]) -> dict:
    """``["width=32", "padding=valid"]`` -> ``{"width": 32, "padding": "valid"}`` (values read as YAML)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-arg {item!r}: write KEY=VALUE, e.g. width=32")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return out


def run_config(args: argparse.Namespace):
    """The :class:`~detseg.engine.config.RunConfig` of a parsed ``detseg train`` command line (options
    left out stay None: the model's and the spec's defaults fill them)."""
    from dataclasses import fields

    from detseg.engine.config import RunConfig

    names = {f.name for f in fields(RunConfig)} - {"sources", "model_args", "scale_range", "out"}
    values = {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}
    model_args = parse_model_args(args.model_arg)
    if getattr(args, "backbone", None):
        model_args.setdefault("backbone", args.backbone)
    return RunConfig(
        out=args.out or Path("runs") / args.model,
        model_args=model_args or None,
        scale_range=tuple(args.scale_range) if args.scale_range else None,
        **values,
    )


def run_train(args: argparse.Namespace) -> int:
    from detseg.engine.run import train
    from detseg.engine.trainer import NonFiniteLossError

    config = run_config(args)
    try:
        summary = train(config)
    except NonFiniteLossError as exc:
        print(f"detseg train: stopped: {exc}", file=sys.stderr)
        return 1
    best = ", ".join(
        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary["best"].items()
    )
    if os.environ.get("RANK", "0") == "0":  # under torchrun: once
        print(f"detseg train: done; best ({best}) in {Path(config.out) / 'best.pt'}", file=sys.stderr)
        if getattr(args, "report", None) is not None:
            _train_report(args, config)
    return 0


def _train_report(args: argparse.Namespace, config) -> None:
    """``--report DIR``: best.pt scored on the validation split that chose it, as an HTML report."""
    from detseg.engine.report import write_model_report

    split = getattr(config, "val_split", None) or "val"
    if str(split).lower() == "none":
        print("detseg train: --report needs a validation split (--val-split none given)", file=sys.stderr)
        return
    device = getattr(config, "device", None)
    if device in (None, "auto"):
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    report = write_model_report(Path(config.out) / "best.pt", config.data, args.report, split, device)
    if report.get("report_missing"):
        print(f"warning: {report['report_missing']} image(s) not found for the report", file=sys.stderr)
    print(f"detseg train: report of best.pt on '{split}' in {report['report']}", file=sys.stderr)


def run_predict(args: argparse.Namespace) -> int:
    import torch

    from detseg.engine.predict import predict

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if getattr(args, "model", None) and args.weights is None and _is_classifier(args.model):
        return _predict_pretrained(args, device)
    if args.weights is None and not getattr(args, "model", None):
        raise ValueError("give --weights RUN/best.pt, or --model NAME --pretrained WEIGHTS")
    from detseg.models.weights import offline_mode

    with offline_mode(True) if getattr(args, "offline", False) else contextlib.nullcontext():
        summary = _predict(args, device, predict)
    if summary["task"] == "classify":  # predictions.json and contact sheets
        what = "top-1 " + ", ".join(f"{name} {n}" for name, n in list(summary["top1_counts"].items())[:5])
    else:
        what = "masks" if summary["task"] == "segment" else f"{summary['detections']} detections"
    print(f"predicted {summary['images']} image(s): {what} in {args.out}", file=sys.stderr)
    print(summary["speed_line"], file=sys.stderr)  # Speed: ... per image (OUT/speed.json)
    return 0


def _is_classifier(model: str) -> bool:
    from detseg.models.zoo import model_info

    return model.startswith("timm:") or model_info(model).task == "classify"


def _predict(args: argparse.Namespace, device: str, predict) -> dict:
    """``detseg predict`` with a checkpoint (``--weights``) or a model used as is (``--model --pretrained``,
    detectors and segmenters: detseg.engine.pretrained)."""
    return predict(
        args.weights,
        args.source,
        args.out,
        device=device,
        tile=args.tile,
        overlap=args.overlap,
        score_threshold=args.score_threshold,
        tta=args.tta,
        batch_size=args.batch_size,
        workers=args.workers,
        save_frames=args.save_frames,
        classes=_class_names(args.classes),
        img_size=args.img_size,
        model_name=args.model if args.weights is None else None,
        pretrained=args.pretrained,
    )


def _predict_pretrained(args: argparse.Namespace, device: str) -> int:
    """``--model NAME --pretrained WEIGHTS``: a classifier as its weights made it (predictions.json)."""
    from detseg.engine.classify_predict import predict_pretrained
    from detseg.models.weights import offline_mode

    with offline_mode(True) if args.offline else contextlib.nullcontext():
        summary = predict_pretrained(args.model, args.pretrained, args.source, args.out, device,
                                     max(args.batch_size, 16))
    counts = ", ".join(f"{name} {n}" for name, n in list(summary["top1_counts"].items())[:5])
    print(f"predicted {summary['images']} image(s) with {summary['weights']}: top-1 {counts}; "
          f"{summary['predictions']}", file=sys.stderr)
    print(summary["speed_line"], file=sys.stderr)
    return 0


def _class_names(value: str | None) -> list[str] | None:
    """``--classes``: ``"cat,dog"`` or a file with one name per line."""
    if value is None:
        return None
    if Path(value).is_file():
        return [line.strip() for line in Path(value).read_text().splitlines() if line.strip()]
    return [name.strip() for name in value.split(",") if name.strip()]
