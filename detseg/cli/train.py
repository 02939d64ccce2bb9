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
from typing import Any


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
    add_setting_options(p)
    p.add_argument(
        "--backbone",
        metavar="timm:NAME",
        help="a timm encoder under the segmenter (unet, fcn*, deeplabv3*, timm_deeplabv3plus, fpn*) or the "
        "detector (fasterrcnn*, retinanet*, ssdlite*), e.g. timm:tf_efficientnet_lite0 with --pretrained "
        "in1k (`detseg zoo list --backbones`)",
    )
    p.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="at the end, an HTML evaluation report of best.pt on the validation split (DIR/index.html)",
    )
    p.set_defaults(func=run_train)


def add_setting_options(p: argparse.ArgumentParser, names: tuple[str, ...] | None = None) -> None:
    """One option per training setting (each of ``names``, else every one with an option) as
    :class:`~detseg.engine.config.RunConfig` declares it: flag, type, help. Left out, each is None (not
    given): the spec's train_defaults, the model family's and detseg's defaults fill it."""
    from detseg.engine.config import SETTINGS, base_text

    groups: dict[str, Any] = {}
    for f in SETTINGS:
        meta, cli = f.metadata, dict(f.metadata["cli"])
        if meta["flag"] is None or (names is not None and f.name not in names):
            continue
        where: Any = p
        for key, make in (("group", p.add_argument_group), ("exclusive", None)):
            if key in cli:
                title = cli.pop(key)
                if title not in groups:
                    groups[title] = make(title) if make else where.add_mutually_exclusive_group()
                where = groups[title]
        flag = meta["flag"] or "--" + f.name.replace("_", "-")
        off_flag = cli.pop("off_flag", None)  # --no-amp: the same as --amp off
        kwargs = {"dest": f.name, "help": meta["help"].replace("{base}", base_text(f.name)), **cli}
        if meta["type"] is bool:
            kwargs["action"] = "store_false" if flag.startswith("--no-") else "store_true"
        else:
            kwargs["type"] = meta["type"]
        kwargs.update(required=True) if meta["required"] else kwargs.update(default=None)
        where.add_argument(flag, **kwargs)
        if off_flag:
            where.add_argument(off_flag, dest=f.name, action="store_const", const="off", help=f"{flag} off")


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
    add_slicing_options(q)
    q.add_argument("--score-threshold", type=float,
                   help="detection: the boxes drawn and written to text files (default 0.3, as the API's)")
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


def add_slicing_options(p: argparse.ArgumentParser) -> None:
    """``--tile``/``--slice`` and ``--overlap`` (segmenters' windows, detectors' slices) and the detectors'
    sliced-inference options (docs/detection.md#sliced-inference), shared by predict and eval det."""
    with_tile = "detection with --tile: "
    p.add_argument("--tile", "--slice", type=int, metavar="SIZE",
                   help="segmentation: tile size (default: the training --img-size); detection: run the "
                   "detector on overlapping SIZE x SIZE slices and merge their boxes (default: whole images)")
    p.add_argument("--overlap", type=float, default=0.25, help="tile overlap, in [0, 1) (default 0.25)")
    p.add_argument("--full-image", action="store_true",
                   help=with_tile + "also run the whole image and merge its boxes with the slices'")
    p.add_argument("--merge", choices=("greedy-nmm", "nmm", "nms"),
                   help=with_tile + "how overlapping boxes become one (default greedy-nmm, as SAHI)")
    p.add_argument("--match", choices=("ios", "iou"),
                   help=with_tile + "boxes match by intersection over the smaller box (ios, default: boxes "
                   "cut by slice borders) or over the union (iou: dense scenes)")
    p.add_argument("--merge-threshold", type=float, metavar="T", help=with_tile + "match at T (default 0.5)")
    p.add_argument("--tile-batch", type=int, metavar="N",
                   help="slices (detection) or tiles (segmentation, default 4) per model call")


def slicing_options(args: argparse.Namespace) -> dict:
    """The parsed :func:`add_slicing_options` as :func:`detseg.engine.slicing.with_slicing` takes them."""
    names = ("tile", "overlap", "full_image", "merge", "match", "merge_threshold", "tile_batch")
    return {name: getattr(args, name) for name in names}


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
    from detseg.engine.config import SETTINGS, RunConfig

    values = {f.name: getattr(args, f.name) for f in SETTINGS if getattr(args, f.name, None) is not None}
    model_args = parse_model_args(values.pop("model_args", []))
    if getattr(args, "backbone", None):
        model_args.setdefault("backbone", args.backbone)
    if "scale_range" in values:
        values["scale_range"] = tuple(values["scale_range"])
    values.setdefault("out", Path("runs") / args.model)
    return RunConfig(model_args=model_args or None, **values)


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
        from detseg.engine.slicing import with_slicing

        with_slicing(None, "classify", **slicing_options(args))  # the detectors' options: refused
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
    from detseg.models.registry import is_timm_name, model_info

    return is_timm_name(model) or model_info(model).task == "classify"


def _predict(args: argparse.Namespace, device: str, predict) -> dict:
    """``detseg predict`` with a checkpoint (``--weights``) or a model used as is (``--model --pretrained``,
    detectors and segmenters: detseg.engine.pretrained)."""
    from detseg.engine.results import SCORE_THRESHOLD

    return predict(
        args.weights,
        args.source,
        args.out,
        device=device,
        **slicing_options(args),
        score_threshold=SCORE_THRESHOLD if args.score_threshold is None else args.score_threshold,
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
