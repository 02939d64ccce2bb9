"""``detseg data check|show`` (look at a data set) and ``detseg convert`` (between annotation formats)."""

from __future__ import annotations

import argparse
from pathlib import Path

from detseg.cli.train import add_setting_options

#: The training settings that ``data show --augment`` takes (the augmentation ones, and the seed).
AUGMENT_SETTINGS = ("img_size", "scale_range", "vflip", "rotate", "elastic", "color_jitter", "zoom_out",
                    "iou_crop", "mosaic", "mixup", "copy_paste", "seed")  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="check a data set or draw samples of it")
    topics = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    check = topics.add_parser(
        "check",
        help="count images, objects, mask pixels and list every problem",
        description="Exit code 1 when any problem is found.",
    )
    check.add_argument("spec", type=Path, metavar="SPEC", help="dataset spec YAML, COCO json or VOC folder")
    check.add_argument("--split", action="append", help="check only this split (repeatable)")
    check.add_argument(
        "--headers-only",
        action="store_true",
        help="read image headers only (faster; misses corrupt pixel data)",
    )
    check.add_argument("--max-problems", type=int, default=50, help="problems listed per split (default 50)")
    check.set_defaults(func=run_check)

    show = topics.add_parser(
        "show",
        help="draw samples with boxes, labels and mask overlays to PNG, and a contact sheet",
        description="One PNG per sample (enlarged to at least 512 px, class names above the boxes, a "
        "legend of class colours) and contact_sheet.png with all of them; nothing is written when a "
        "sample is bad.",
    )
    show.add_argument("spec", type=Path, metavar="SPEC")
    show.add_argument("--out", type=Path, required=True, help="folder for the PNG files")
    show.add_argument("--split", default=None, help="split to draw (default: val, else the first)")
    show.add_argument("--num", type=int, default=8, help="samples to draw (default 8)")
    show.add_argument("--skip-bad", action="store_true", help="skip bad samples with a warning")
    augment = show.add_argument_group(
        "augmentation preview",
        "--augment draws each sample as training sees it: the options below (as `detseg train` takes "
        "them), else the spec's train_defaults, else detseg's defaults; --img-size defaults to 256",
    )
    augment.add_argument("--augment", action="store_true", help="draw training-augmented samples")
    augment.add_argument("--repeats", type=int, default=1, help="augmented draws of each sample (default 1)")
    add_setting_options(augment, AUGMENT_SETTINGS)
    show.set_defaults(func=run_show)

    conv = subparsers.add_parser(
        "convert",
        help="convert annotations: VOC XML, text boxes, mask folders <-> COCO json",
        description="Convert ground truth (or, with --gt, detection results) from one format to another. "
        "coco: a json file; voc: a folder of XML; text: a folder of .txt; masks: a folder of PNG.",
    )
    conv.add_argument("src", type=Path, metavar="SRC")
    conv.add_argument("dst", type=Path, metavar="DST")
    conv.add_argument("--from", dest="src_format", required=True, choices=["coco", "voc", "text", "masks"])
    conv.add_argument("--to", dest="dst_format", required=True, choices=["coco", "voc", "text"])
    conv.add_argument(
        "--images", type=Path, help="image folder (image sizes; needed for masks and rel boxes)"
    )
    conv.add_argument("--classes", help="class names, comma-separated or a names file (label order)")
    conv.add_argument("--id-names", type=Path, help="names file for numeric class ids in text files")
    conv.add_argument(
        "--box-format",
        default="xyxy",
        choices=["xyxy", "xywh", "rel_xcycwh"],
        help="numbers in text files read (default xyxy)",
    )
    conv.add_argument(
        "--out-box-format",
        choices=["xyxy", "xywh", "rel_xcycwh"],
        help="numbers in text files written (default: --box-format)",
    )
    conv.add_argument("--values", help="masks: pixel value -> class index, e.g. '0:0,255:1' or '11:ignore'")
    conv.add_argument("--ignore-index", type=int, default=255, help="masks: void class index (default 255)")
    conv.add_argument(
        "--segmentation",
        default="polygon",
        choices=["polygon", "rle"],
        help="masks -> coco: polygons (cv2 contours) or exact RLE (default polygon)",
    )
    conv.add_argument("--gt", type=Path, help="SRC holds detection results on this ground truth")
    conv.set_defaults(func=run_convert)


def run_check(args: argparse.Namespace) -> int:
    from detseg.data.check import check_dataset, format_report

    report = check_dataset(args.spec, args.split, decode_images=not args.headers_only)
    print(format_report(report, args.max_problems))
    return 0 if report.ok else 1


def run_show(args: argparse.Namespace) -> int:
    from detseg.data.dataset import build_dataset
    from detseg.data.spec import load_spec

    spec = load_spec(args.spec)
    split = args.split or ("val" if "val" in spec.splits else next(iter(spec.splits)))
    from detseg.viz.samples import draw_samples

    if args.augment:
        dataset = _augmented(args, spec, split)
    else:
        dataset = build_dataset(spec, split, None, skip_bad=args.skip_bad)
    if args.augment and args.repeats > 1:
        dataset = _Repeated(dataset, args.repeats)
    written = draw_samples(dataset, args.out, args.num * (args.repeats if args.augment else 1))
    samples = [p for p in written if p.name != "contact_sheet.png"]
    print(f"wrote {len(samples)} samples and contact_sheet.png to {args.out}")
    return 0


def _augmented(args: argparse.Namespace, spec, split: str):
    """``split`` as ``detseg train`` would augment it with these options (model family defaults aside: no
    model is named here; mosaic, mixup and copy-paste included), seeded by --seed."""
    import torch

    from detseg.engine.config import RunConfig, resolve_config
    from detseg.engine.run import check_mixing, train_preset, training_set

    if spec.task not in ("segment", "detect", "instance"):
        raise ValueError(f"--augment: {spec.task} specs have no augmentation preview (segment and detect do)")
    given = {name: getattr(args, name) for name in AUGMENT_SETTINGS if getattr(args, name) is not None}
    rc = resolve_config(RunConfig(model="none", data=args.spec, **given), None, spec)
    check_mixing(rc)
    torch.manual_seed(rc.seed)
    size = rc.img_size or 256
    size = size if spec.task == "segment" else (size, size)
    return training_set(rc, spec, split, train_preset(rc, spec, size), size, True, args.skip_bad)


class _Repeated:
    """Each sample of ``dataset`` ``times`` times in a row (a fresh augmentation each time)."""

    def __init__(self, dataset, times: int) -> None:
        self.dataset, self.times = dataset, times
        self.classes, self.split = dataset.classes, dataset.split
        self.ignore_index = getattr(dataset, "ignore_index", 255)

    def __len__(self) -> int:
        return len(self.dataset) * self.times

    def __getitem__(self, index: int):
        return self.dataset[index // self.times]


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    path = Path(text)
    if path.is_file():
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [name.strip() for name in text.split(",") if name.strip()]


def parse_values(text: str | None, ignore_index: int) -> dict[int, int] | None:
    """``'0:0,255:1,11:ignore'`` -> ``{0: 0, 255: 1, 11: ignore_index}``."""
    if not text:
        return None
    values = {}
    for item in text.split(","):
        raw, _, cls = item.partition(":")
        try:
            values[int(raw)] = ignore_index if cls.strip() == "ignore" else int(cls)
        except ValueError:
            raise ValueError(f"--values {text!r}: give pairs like '0:0,255:1' or '11:ignore'") from None
    return values


def run_convert(args: argparse.Namespace) -> int:
    from detseg.data.convert import convert

    counts = convert(
        args.src,
        args.dst,
        args.src_format,
        args.dst_format,
        gt=args.gt,
        images=args.images,
        classes=_names(args.classes),
        box_format=args.box_format,
        out_box_format=args.out_box_format,
        id_names=_names(str(args.id_names)) if args.id_names else None,
        values=parse_values(args.values, args.ignore_index),
        ignore_index=args.ignore_index,
        segmentation=args.segmentation,
    )
    print(f"wrote {args.dst} ({args.dst_format}): " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    return 0
