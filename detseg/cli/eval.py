"""``detseg eval det`` and ``detseg eval seg``: evaluate detections or segmentation masks."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate detections (COCO/VOC metrics) or segmentation masks")
    sub = p.add_subparsers(dest="eval_command", metavar="KIND", required=True)

    d = sub.add_parser("det", help="detection metrics: COCO table, or VOC / lecture AP per class and mAP")
    d.add_argument("--gt", type=Path, help="COCO json, folder of VOC XML, or folder of text boxes")
    d.add_argument("--dt", type=Path, help="COCO results json or folder of text box files")
    _model_options(d)
    d.add_argument("--split", default="val", help="with --weights: split of the spec (default val)")
    d.add_argument("--iou-type", choices=("bbox", "segm"), default="bbox")
    d.add_argument("--metric", choices=("coco", "voc07", "voc12", "lecture"), default="coco")
    d.add_argument(
        "--iou", type=float, default=0.5, help="IoU threshold for voc/lecture and for curves (0.5)"
    )
    d.add_argument("--json", type=Path, help="write the metrics here as JSON")
    d.add_argument("--plots", type=Path, help="write PR, F1 and confusion-matrix PNGs into this folder")
    d.add_argument("--box-format", default="xyxy", help="text box files: xyxy | xywh | rel_xcycwh")
    d.add_argument(
        "--fix-pycocotools-bugs",
        action="store_true",
        help="count matches to ground-truth id 0 and use the largest maxDets for stat 0",
    )
    d.set_defaults(func=_det)

    s = sub.add_parser("seg", help="semantic segmentation metrics: IoU, mIoU, Dice, accuracies")
    s.add_argument("--gt", type=Path, help="dataset spec (YAML/json) or a folder of label PNGs")
    s.add_argument("--pred", type=Path, help="folder of predicted class-index PNGs (same stems)")
    _model_options(s)
    s.add_argument("--split", default="val", help="split of the spec (default val)")
    s.add_argument("--num-classes", type=int, help="number of classes (label folders; a spec knows it)")
    s.add_argument("--ignore-index", type=int, default=255)
    s.add_argument("--json", type=Path, help="write the metrics here as JSON")
    s.add_argument(
        "--tta",
        choices=["hflip", "flips", "d4"],
        help="with --weights: average the model over flipped (d4: also turned) views",
    )
    s.set_defaults(func=_seg)


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", type=Path, help="a detseg checkpoint (RUN_DIR/best.pt): run it on --data")
    p.add_argument("--data", type=Path, help="with --weights: the dataset spec to run the model on")
    p.add_argument("--device", default="cpu", help="with --weights: cpu, cuda, cuda:1")


def _inputs(args: argparse.Namespace, files: tuple[str, str]) -> bool:
    """True to evaluate a model (--weights --data), False for files; refuse a mixture or a half."""
    from detseg.cli import UserError

    if args.weights is not None or args.data is not None:
        if args.weights is None or args.data is None:
            raise UserError("--weights and --data go together")
        return True
    missing = [f"--{name}" for name in files if getattr(args, name) is None]
    if missing:
        raise UserError(f"give {' and '.join(missing)} (files), or --weights and --data (a model)")
    return False


def _clean(obj):
    """NaN -> None so that the JSON is standard."""
    if isinstance(obj, float):
        return None if math.isnan(obj) else obj
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def _write_json(path: Path | None, data: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_clean(data), indent=1))
        print(f"wrote {path}")


def _det(args: argparse.Namespace) -> int:
    from detseg.metrics.evaluate import evaluate_detection_files, evaluate_detections

    options = dict(
        iou_type=args.iou_type,
        metric=args.metric,
        iou=args.iou,
        plots=args.plots,
        fix_bugs=args.fix_pycocotools_bugs,
    )
    if _inputs(args, ("gt", "dt")):
        from detseg.engine.run import run_evaluation

        task = run_evaluation(args.weights, args.data, args.split, args.device)
        if not hasattr(task, "coco_inputs"):
            raise ValueError(f"{args.weights} is not a detector: use detseg eval seg")
        if options["iou_type"] != "bbox":
            raise ValueError("a detector's predictions are boxes: use --iou-type bbox")
        report = evaluate_detections(*task.coco_inputs(), **options)
    else:
        report = evaluate_detection_files(args.gt, args.dt, box_format=args.box_format, **options)
    print(report["text"])
    _write_json(args.json, report["json"])
    if args.plots is not None:
        print(f"wrote {len(report['plots'])} plots to {args.plots}")
    return 0


def _seg(args: argparse.Namespace) -> int:
    from detseg.metrics.evaluate import evaluate_segmentation_folders

    if _inputs(args, ("gt", "pred")):
        from detseg.engine.run import run_evaluation

        task = run_evaluation(args.weights, args.data, args.split, args.device, tta=args.tta)
        if hasattr(task, "coco_inputs"):
            raise ValueError(f"{args.weights} is a detector: use detseg eval det")
        metrics = task.eval_end()
        print(f"{args.weights} on {args.data} ({args.split}):")
        for key, value in metrics.items():
            print(f"  {key:<28} {value:.4f}")
        _write_json(args.json, metrics)
        return 0
    report = evaluate_segmentation_folders(
        args.gt, args.pred, split=args.split, num_classes=args.num_classes, ignore_index=args.ignore_index
    )
    print(report["text"])
    _write_json(args.json, report["json"])
    return 0
