"""``detseg eval det`` and ``detseg eval seg``: evaluate detections or segmentation masks."""

from __future__ import annotations

import argparse
from pathlib import Path

from detseg.cli.train import add_slicing_options, slicing_options
from detseg.jsonio import dumps


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate detections (COCO/VOC metrics) or segmentation masks")
    sub = p.add_subparsers(dest="eval_command", metavar="KIND", required=True)

    d = sub.add_parser("det", help="detection metrics: COCO table, or VOC / lecture AP per class and mAP")
    d.add_argument("--gt", type=Path, help="COCO json, folder of VOC XML, or folder of text boxes")
    d.add_argument("--dt", type=Path, help="COCO results json or folder of text box files")
    _model_options(d)
    d.add_argument("--split", default="val", help="with --weights: split of the spec (default val)")
    add_slicing_options(d)  # --tile: sliced inference of the model (docs/detection.md#sliced-inference)
    d.add_argument("--iou-type", choices=("bbox", "segm"), default="bbox")
    d.add_argument("--metric", choices=("coco", "voc07", "voc12", "lecture"), default="coco")
    d.add_argument(
        "--iou", type=float, default=0.5, help="IoU threshold for voc/lecture and for curves (0.5)"
    )
    d.add_argument("--json", type=Path, help="write the metrics here as JSON")
    d.add_argument("--plots", type=Path, help="write PR, F1 and confusion-matrix PNGs into this folder")
    d.add_argument("--box-format", default="xyxy", help="text box files: xyxy | xywh | rel_xcycwh")
    d.add_argument(
        "--box-convention",
        choices=("voc", "coco"),
        help="voc: whole pixels, x2 is the last pixel (width x2 - x1 + 1, the VOC devkit's and Padilla's"
        " areas); coco: continuous. Default: voc for VOC XML ground truth, coco for json and text files",
    )
    _report_options(d)
    d.add_argument(
        "--fix-pycocotools-bugs",
        action="store_true",
        help="count matches to ground-truth id 0 and use the largest maxDets for stat 0",
    )
    d.set_defaults(func=_det)

    s = sub.add_parser("seg", help="semantic segmentation metrics: IoU, mIoU, Dice, accuracies")
    s.add_argument("--gt", type=Path, help="dataset spec (YAML/json) or a folder of label PNGs")
    s.add_argument(
        "--pred",
        type=Path,
        help="folder of predicted masks (same stems): class indices, or the spec's pixel values as "
        "detseg predict writes them",
    )
    _model_options(s)
    s.add_argument("--split", default="val", help="split of the spec (default val)")
    s.add_argument("--num-classes", type=int, help="number of classes (label folders; a spec knows it)")
    s.add_argument("--ignore-index", type=int, default=255)
    s.add_argument("--json", type=Path, help="write the metrics here as JSON")
    _report_options(s)
    s.add_argument(
        "--tta",
        choices=["hflip", "flips", "d4"],
        help="with --weights: average the model over flipped (d4: also turned) views",
    )
    s.set_defaults(func=_seg)


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", type=Path, help="checkpoint (RUN/best.pt) or .onnx export: run it on --data")
    p.add_argument("--data", type=Path, help="with --weights: the dataset spec to run the model on")
    p.add_argument("--device", default="cpu", help="with --weights: cpu, cuda, cuda:1")
    # A model used as is with its pre-trained weights' classes (detseg.engine.class_map).
    p.add_argument("--model", help="instead of --weights: a registered model run as is with --pretrained")
    p.add_argument("--pretrained", help="with --model: its weights (COCO_V1, COCO_WITH_VOC_LABELS_V1, file)")
    p.add_argument("--offline", action="store_true", help="never download weights (also DETSEG_OFFLINE=1)")
    p.add_argument(
        "--class-map",
        action="append",
        metavar="DATA=MODEL",
        help="with --model: data class name = the model's class name, where they differ (repeatable or "
        "comma-separated); other data classes match by exact name, the rest are reported and left out",
    )


def _report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--report", type=Path, help="write a self-contained HTML report into this folder (index.html)"
    )
    p.add_argument(
        "--images",
        type=Path,
        help="with --gt files: the image folder for the report's galleries (by file name)",
    )


def _print_report(report: dict) -> None:
    """The report's location and, when images were missing, how many."""
    if report.get("report_missing"):
        print(f"warning: {report['report_missing']} image(s) not found for the report's galleries")
    if report.get("report"):
        print(f"wrote {report['report']}")


def _inputs(args: argparse.Namespace, files: tuple[str, str]) -> bool:
    """True to evaluate a model (--weights --data), False for files; refuse a mixture or a half."""
    from detseg.cli import UserError

    model = getattr(args, "model", None)
    if args.weights is not None or args.data is not None or model is not None:
        if model is not None and args.weights is not None:
            raise UserError("give --weights (a checkpoint) or --model with --pretrained, not both")
        if (args.weights is None and model is None) or args.data is None:
            raise UserError("--weights and --data go together (or --model --pretrained and --data)")
        if model is not None and not args.pretrained:
            raise UserError(f"--model {model}: give its weights with --pretrained (e.g. COCO_V1)")
        return True
    if getattr(args, "class_map", None):
        raise UserError("--class-map goes with --model --pretrained")
    missing = [f"--{name}" for name in files if getattr(args, name) is None]
    if missing:
        raise UserError(f"give {' and '.join(missing)} (files), or --weights and --data (a model)")
    return False


def _run_model(args: argparse.Namespace, run_evaluation, **options):
    """Run ``--weights`` or ``--model --pretrained`` over ``--data``; with the latter, print which data
    classes matched the model's and which it does not know (left out of the mean)."""
    import contextlib

    from detseg.models.weights import offline_mode

    if getattr(args, "model", None) is None:
        return run_evaluation(args.weights, args.data, args.split, args.device, **options)
    from detseg.engine.class_map import parse_class_map

    class_map = parse_class_map(args.class_map)
    with offline_mode(True) if args.offline else contextlib.nullcontext():
        task = run_evaluation(None, args.data, args.split, args.device, model_name=args.model,
                              pretrained=args.pretrained, class_map=class_map, **options)
    args.weights = f"{args.model} ({args.pretrained})"  # what the lines below name
    match = getattr(task, "class_match", None)
    if match:
        pairs = ", ".join(f"{d}={m}" if d != m else d for d, m in match["mapped"].items())
        print(f"classes matched to {args.model}'s: {pairs}")
        if match["unknown"]:
            print(f"classes {args.model} ({args.pretrained}) does not know, left out of the mean: "
                  f"{', '.join(match['unknown'])}")
    return task


def _write_json(path: Path | None, data: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dumps(data))
        print(f"wrote {path}")


def _det(args: argparse.Namespace) -> int:
    from detseg.metrics.evaluate import evaluate_detection_files, evaluate_detections

    options = dict(
        iou_type=args.iou_type,
        metric=args.metric,
        iou=args.iou,
        plots=args.plots,
        fix_bugs=args.fix_pycocotools_bugs,
        report=args.report,
    )
    if _inputs(args, ("gt", "dt")):
        from detseg.engine.run import run_evaluation

        task = _run_model(args, run_evaluation, slicing=slicing_options(args))
        if not hasattr(task, "coco_inputs"):
            raise ValueError(f"{args.weights} is not a detector: use detseg eval seg")
        if options["iou_type"] != "bbox" and not getattr(task, "with_masks", False):
            raise ValueError(
                f"{args.weights} predicts boxes (no masks) or {args.data} has no instance masks: "
                "use --iou-type bbox"
            )
        if args.box_convention is not None:
            raise ValueError("--box-convention is for --gt/--dt files (a model's boxes are continuous)")
        gt, results = task.coco_inputs()
        image_dir = None
        if args.report is not None:
            from detseg.metrics.evaluate import name_spec_images

            image_dir = name_spec_images(gt, args.data, args.split)
        slices = (args.tile, args.overlap) if args.tile is not None else None
        report = evaluate_detections(gt, results, **options, image_dir=image_dir, slices=slices)
    else:
        if any(v not in (None, False, 0.25) for v in slicing_options(args).values()):
            raise ValueError("--tile and the merge options run a model: give --weights and --data")
        report = evaluate_detection_files(
            args.gt,
            args.dt,
            box_format=args.box_format,
            box_convention=args.box_convention,
            image_dir=args.images,
            **options,
        )
    print(report["text"])
    _write_json(args.json, report["json"])
    if args.plots is not None:
        print(f"wrote {len(report['plots'])} plots to {args.plots}")
    _print_report(report)
    return 0


def _seg(args: argparse.Namespace) -> int:
    from detseg.metrics.evaluate import evaluate_segmentation_folders

    if _inputs(args, ("gt", "pred")):
        from detseg.engine.run import run_evaluation

        if args.report is not None and getattr(args, "model", None) is not None:
            raise ValueError("eval seg --report runs a checkpoint (--weights); --model prints the table")
        if args.report is not None:
            from detseg.engine.report import write_model_report

            where = (args.weights, args.data, args.report, args.split, args.device)
            report = write_model_report(*where, tta=args.tta)
            print(report["text"])
            _write_json(args.json, report["json"])
            _print_report(report)
            return 0
        task = _run_model(args, run_evaluation, tta=args.tta)
        if hasattr(task, "coco_inputs"):
            raise ValueError(f"{args.weights} is a detector: use detseg eval det")
        metrics = task.eval_end()
        print(f"{args.weights} on {args.data} ({args.split}):")
        for key, value in metrics.items():
            print(f"  {key:<28} {value:.4f}")
        _write_json(args.json, metrics)
        return 0
    report = evaluate_segmentation_folders(
        args.gt,
        args.pred,
        split=args.split,
        num_classes=args.num_classes,
        ignore_index=args.ignore_index,
        report=args.report,
        image_dir=args.images,
    )
    print(report["text"])
    _write_json(args.json, report["json"])
    _print_report(report)
    return 0
