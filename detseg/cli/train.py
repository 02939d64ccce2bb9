"""``detseg train`` and ``detseg predict``: train a zoo model on a dataset spec, run a saved one on images.

detseg train --model unet --data examples/membrane.yaml --epochs 40 --img-size 256 --out runs/membrane
torchrun --nproc_per_node 2 -m detseg train ...          # DDP (gloo on CPU, nccl on GPU)
detseg train ... --resume                                # continue runs/membrane/last.pt exactly
detseg predict --weights runs/membrane/best.pt --source images/ --out predictions/
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model from the zoo on a dataset spec",
        description="Train a registered model (detseg.models.zoo) on the train split of a dataset spec, "
        "evaluating on its val split every epoch; writes RUN_DIR/{last,best}.pt, log.csv, steps.csv, "
        "loss.png, metrics.png.",
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
    p.add_argument("--batch-size", type=int, default=4, help="global batch size (split over DDP processes)")
    p.add_argument("--lr", type=float, help="base learning rate (default 0.01 for sgd, 0.001 for adamw)")
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, help="default 1e-4 for sgd, 1e-2 for adamw")
    p.add_argument("--schedule", choices=["poly", "cosine", "constant"], default="poly")
    p.add_argument("--warmup", type=int, default=0, metavar="ITERS", help="linear warm-up iterations")
    p.add_argument("--amp", action="store_true", help="mixed precision (float16 on CUDA, bfloat16 on CPU)")
    p.add_argument("--clip-grad", type=float, metavar="NORM", help="clip the gradient norm to NORM")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        metavar="CHECKPOINT",
        help="continue from CHECKPOINT (default RUN_DIR/last.pt) exactly where it stopped",
    )
    p.add_argument("--workers", type=int, default=0, help="data loading processes")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument(
        "--img-size",
        type=int,
        help="segmentation: random crop size in training (and prediction tile size); detection: "
        "input size (default: the model's registered input size)",
    )
    p.add_argument(
        "--scale-range",
        type=float,
        nargs=2,
        default=(0.5, 2.0),
        metavar=("MIN", "MAX"),
        help="segmentation: random rescaling before the crop (default 0.5 2.0)",
    )
    p.add_argument(
        "--vflip", type=float, default=0.0, metavar="P", help="segmentation: vertical flip probability"
    )
    p.add_argument(
        "--rotate",
        type=float,
        default=0.0,
        metavar="DEG",
        help="segmentation: random rotation in [-DEG, DEG] degrees (new corners are ignored in the loss)",
    )
    p.add_argument(
        "--elastic",
        type=float,
        default=0.0,
        metavar="PIXELS",
        help="segmentation: U-Net's elastic deformation, displacements of PIXELS std on a 3x3 grid (e.g. 10)",
    )
    p.add_argument(
        "--zoom-out",
        type=float,
        default=4.0,
        metavar="MAX",
        help="detection: SSD's zoom-out augmentation up to MAX times (default 4; 1: none), for small objects",
    )
    p.add_argument(
        "--color-jitter",
        type=float,
        default=0.0,
        metavar="J",
        help="segmentation: brightness and contrast jitter, factors in [1-J, 1+J] (e.g. 0.3)",
    )
    p.add_argument(
        "--no-iou-crop",
        dest="iou_crop",
        action="store_false",
        help="detection: leave out SSD's IoU-constrained random crop (short runs from scratch learn faster)",
    )
    p.add_argument(
        "--loss",
        choices=["ce", "dice", "ce+dice", "lovasz", "ce+lovasz", "bce", "balanced-bce"],
        default="ce",
        help="segmentation loss (bce ones: two classes, one output channel)",
    )
    p.add_argument("--class-weights", type=float, nargs="+", metavar="W", help="cross-entropy class weights")
    p.add_argument(
        "--pretrained",
        help="pre-trained weights: a name, a file, or a detseg checkpoint (RUN_DIR/best.pt) of the same "
        "model; trained on other classes, its head is replaced (the report says which tensors)",
    )
    t = p.add_argument_group("transfer learning (docs/transfer.md)")
    t.add_argument(
        "--freeze",
        metavar="backbone|stages:N|none",
        help="freeze the backbone, or its first N stages; frozen BatchNorm keeps its statistics (eval mode)",
    )
    t.add_argument(
        "--lr-backbone", type=float, metavar="LR", help="learning rate of the backbone (the rest: --lr)"
    )
    t.add_argument(
        "--new-head", action="store_true", help="replace the head even when the classes are the same"
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
    p.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra model builder argument, e.g. --model-arg width=32 (repeatable)",
    )
    p.add_argument("--train-split", default="train")
    p.add_argument("--val-split", default="val", help="evaluated every epoch; 'none' to skip")
    p.add_argument("--eval-interval", type=int, default=1, metavar="EPOCHS")
    p.add_argument("--sync-bn", action="store_true", help="DDP: synchronise BatchNorm statistics")
    p.add_argument(
        "--ema",
        type=float,
        default=0.0,
        metavar="DECAY",
        help="evaluate and predict with an exponential moving average of the weights (e.g. 0.99)",
    )
    p.add_argument(
        "--channels-last",
        action="store_true",
        help="NHWC memory format: about 1.4x faster convolutions on CPU (U-Net: 0.41 s a step, not 0.59)",
    )
    p.add_argument("--tensorboard", action="store_true", help="also write TensorBoard scalars")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.set_defaults(func=run_train)

    q = subparsers.add_parser(
        "predict",
        help="run a trained model on an image or a folder",
        description="Segmentation: class-index PNGs in the data set's values (same stem) and overlays; "
        "detection: drawn boxes, labels/*.txt box files and a COCO results.json.",
    )
    q.add_argument("--weights", required=True, type=Path, help="checkpoint (RUN_DIR/best.pt) or run folder")
    q.add_argument("--source", required=True, type=Path, help="an image or a folder of images")
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


def run_train(args: argparse.Namespace) -> int:
    from detseg.engine.run import train
    from detseg.engine.trainer import NonFiniteLossError

    if args.epochs is None and args.iters is None and args.time is None:
        print("detseg train: give --epochs, --iters or --time", file=sys.stderr)
        return 2

    out = args.out or Path("runs") / args.model
    try:
        summary = train(
            args.model,
            args.data,
            out,
            img_size=args.img_size,
            loss=args.loss,
            class_weights=args.class_weights,
            scale_range=tuple(args.scale_range),
            vflip=args.vflip,
            rotate=args.rotate,
            elastic=args.elastic,
            color_jitter=args.color_jitter,
            zoom_out=args.zoom_out,
            iou_crop=args.iou_crop,
            pretrained=args.pretrained,
            model_args=parse_model_args(args.model_arg),
            train_split=args.train_split,
            val_split=args.val_split,
            resume=args.resume,
            extend_from=args.extend_from,
            distill=args.distill,
            temperature=args.temperature,
            new_head=args.new_head,
            pseudo_labels=args.pseudo_labels,
            freeze=args.freeze,
            lr_backbone=args.lr_backbone,
            epochs=args.epochs,
            iters=args.iters,
            time=args.time,
            batch_size=args.batch_size,
            lr=args.lr,
            optimizer=args.optimizer,
            momentum=args.momentum,
            weight_decay=args.weight_decay,
            schedule=args.schedule,
            warmup=args.warmup,
            amp=args.amp,
            clip_grad=args.clip_grad,
            seed=args.seed,
            workers=args.workers,
            device=args.device,
            eval_interval=args.eval_interval,
            quiet=args.quiet,
            tensorboard=args.tensorboard,
            sync_bn=args.sync_bn,
            channels_last=args.channels_last,
            ema=args.ema,
        )
    except NonFiniteLossError as exc:
        print(f"detseg train: stopped: {exc}", file=sys.stderr)
        return 1
    best = ", ".join(
        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary["best"].items()
    )
    if os.environ.get("RANK", "0") == "0":  # under torchrun: once
        print(f"detseg train: done; best ({best}) in {Path(out) / 'best.pt'}", file=sys.stderr)
    return 0


def run_predict(args: argparse.Namespace) -> int:
    import torch

    from detseg.engine.predict import predict

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    summary = predict(
        args.weights,
        args.source,
        args.out,
        device=device,
        tile=args.tile,
        overlap=args.overlap,
        score_threshold=args.score_threshold,
        tta=args.tta,
    )
    what = "masks" if summary["task"] == "segment" else f"{summary['detections']} detections"
    print(f"predicted {summary['images']} image(s): {what} in {args.out}", file=sys.stderr)
    return 0
