"""``detseg synth OUT_DIR``: write the built-in synthetic shapes data set (COCO json, mask PNGs, specs)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    # Defaults mirror SynthConfig; they are repeated here so that --help needs no heavy import.
    p = subparsers.add_parser(
        "synth",
        help="generate the synthetic shapes data set (deterministic by seed)",
        description="Write images/, masks/, annotations/ (COCO), detect.yaml and segment.yaml to OUT_DIR.",
    )
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-train", type=int, default=200, help="training images (default 200)")
    p.add_argument("--num-val", type=int, default=50, help="validation images (default 50)")
    p.add_argument("--size", default="128", help="image size: N (square) or WIDTHxHEIGHT (default 128)")
    p.add_argument("--domain", choices=["source", "target"],
                   help="preset knobs: source = plain background, bright palette; target = texture, dark")
    p.add_argument("--background", choices=["plain", "noise", "texture"], help="default plain")
    p.add_argument("--palette",
                   help="bright | pastel | dark, or colours '#rrggbb,#rrggbb,...' (default bright)")
    p.add_argument("--classes", nargs="+", default=["circle", "square", "triangle"], metavar="SHAPE",
                   help="shapes to draw, in class order: circle square triangle ellipse star hexagon cross")
    p.add_argument("--min-size", "--min-object", type=int, default=16,
                   help="smallest object diameter in pixels (default 16)")
    p.add_argument("--max-size", "--max-object", type=int, default=48,
                   help="largest object diameter in pixels (default 48)")
    p.add_argument("--min-objects", type=int, default=1, help="fewest objects per image (default 1)")
    p.add_argument("--max-objects", type=int, default=4, help="most objects per image (default 4)")
    p.add_argument("--objects", type=int, metavar="N",
                   help="exactly N objects per image (sets --min-objects and --max-objects); large images "
                   "with many small objects for sliced inference: --size 2048 --min-object 8 "
                   "--max-object 32 --objects 80")
    p.add_argument("--color-jitter", type=int, default=20, help="+- per channel around a palette colour")
    p.add_argument("--no-occlusion", action="store_true", help="place objects without overlap")
    p.add_argument("--min-visible", type=float, default=0.3,
                   help="drop objects with less than this fraction left visible (default 0.3)")
    p.add_argument("--overwrite", action="store_true", help="replace a data set already in OUT_DIR")
    p.set_defaults(func=run)


def parse_size(text: str) -> tuple[int, int]:
    """``"128"`` -> (128, 128); ``"160x120"`` (width x height) -> (120, 160) as (H, W)."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        raise ValueError(f"--size {text!r}: give N or WIDTHxHEIGHT, e.g. 128 or 160x120") from None
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) == 2:
        return parts[1], parts[0]
    raise ValueError(f"--size {text!r}: give N or WIDTHxHEIGHT, e.g. 128 or 160x120")


def run(args: argparse.Namespace) -> int:
    from detseg.data.synthetic import DOMAINS, SynthConfig, generate

    knobs = dict(DOMAINS[args.domain]) if args.domain else {}
    if args.background:
        knobs["background"] = args.background
    if args.palette:
        named = args.palette.strip().lower()
        knobs["palette"] = args.palette.split(",") if args.palette.startswith("#") else named
    config = SynthConfig(
        seed=args.seed,
        image_size=parse_size(args.size),
        num_train=args.num_train,
        num_val=args.num_val,
        classes=[c for name in args.classes for c in name.split(",") if c],
        objects_per_image=(args.min_objects, args.max_objects) if args.objects is None
        else (args.objects, args.objects),
        object_size=(args.min_size, args.max_size),
        color_jitter=args.color_jitter,
        occlusion=not args.no_occlusion,
        min_visible=args.min_visible,
        **knobs,
    )
    out = generate(config, args.out_dir, overwrite=args.overwrite)
    for split in ("train", "val"):
        coco = json.loads((out / "annotations" / f"{split}.json").read_text())
        per_class = {c["name"]: 0 for c in coco["categories"]}
        names = {c["id"]: c["name"] for c in coco["categories"]}
        for ann in coco["annotations"]:
            per_class[names[ann["category_id"]]] += 1
        counts = ", ".join(f"{name} {n}" for name, n in per_class.items())
        print(f"{split}: {len(coco['images'])} images, {len(coco['annotations'])} objects ({counts})")
    print(
        f"specs: {out / 'detect.yaml'} (detection), {out / 'segment.yaml'} (segmentation), "
        f"{out / 'instance.yaml'} (instance segmentation)"
    )
    return 0
