"""``detseg classic``: thresholding, edges, k-means, region growing and pipelines, on files or a data set."""

from __future__ import annotations

import argparse

METHODS = ("threshold", "otsu", "multiotsu", "adaptive", "sobel", "canny", "kmeans", "region", "pipeline")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "classic",
        help="classical segmentation (threshold, Otsu, adaptive, Sobel, Canny, k-means, region growing)",
        description="Run a classical method (or a pipeline of steps) on images and write masks, edge maps "
        "or quantized images with overlays; or, with --data, score it on a data set split.",
    )
    p.add_argument("method", choices=METHODS)
    p.add_argument("inputs", nargs="*", help="image files")
    p.add_argument("--out", help="output folder (image mode)")
    p.add_argument("--channel", type=int, help="use this channel of an RGB image instead of grey")
    p.add_argument("--post", default="", help="mask steps to append, e.g. 'open radius=1; fill_holes'")
    g = p.add_argument_group("thresholds")
    g.add_argument("--threshold", type=float, help="threshold: foreground is grey > value")
    g.add_argument("--classes", type=int, default=3, help="multiotsu: number of classes (3)")
    g.add_argument("--block-size", type=int, default=35, help="adaptive: odd neighbourhood size (35)")
    g.add_argument("--offset", type=float, default=0.0, help="adaptive: foreground is grey > mean - offset")
    g.add_argument("--adaptive-method", choices=("mean", "gaussian"), default="gaussian")
    g = p.add_argument_group("edges")
    g.add_argument("--ksize", type=int, default=3, help="sobel: kernel size (3)")
    g.add_argument("--convention", choices=("opencv", "lecture"), default="opencv", help="sobel sign")
    g.add_argument("--low", type=float, help="canny: low threshold (default: chosen from the image)")
    g.add_argument("--high", type=float, help="canny: high threshold (default: chosen from the image)")
    g.add_argument("--blur-sigma", type=float, default=1.0, help="canny: Gaussian smoothing sigma (1)")
    g.add_argument("--auto", choices=("median", "otsu"), default="median", help="canny: threshold rule")
    g.add_argument("--l2", action="store_true", help="canny: L2 gradient magnitude")
    g = p.add_argument_group("k-means")
    g.add_argument("-k", type=int, default=8, help="number of colours (8)")
    g.add_argument("--color-space", choices=("rgb", "lab", "hsv", "ycrcb"), default="rgb")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("region growing")
    g.add_argument("--seeds", default="auto", help="'row,col;row,col' or 'auto' (default)")
    g.add_argument("--n-seeds", type=int, default=16, help="number of automatic seeds (16)")
    g.add_argument("--tolerance", type=float, default=10.0, help="grey levels (10)")
    g.add_argument("--relative-to", choices=("seed", "mean"), default="seed")
    g.add_argument("--connectivity", type=int, choices=(4, 8), default=4)
    g = p.add_argument_group("pipeline")
    g.add_argument("--steps", help="pipeline: 'blur sigma=1; otsu; open radius=1'")
    g.add_argument("--pipeline", help="pipeline: a YAML file with 'steps:'")
    g = p.add_argument_group("scoring on a data set")
    g.add_argument("--data", help="dataset spec YAML: score the method on a split instead of writing files")
    g.add_argument("--split", default="val", help="split to score (val)")
    g.add_argument("--fit-split", default="train",
                   help="split that fixes polarity / label map (train; 'none': the scored split itself)")
    g.add_argument("--polarity", choices=("auto", "keep", "invert"), default="auto",
                   help="two-class masks: which class the foreground is (auto: best on --fit-split)")
    g.add_argument("--mapping", choices=("majority", "identity"), default="majority",
                   help="labels -> classes: majority class on --fit-split, or labels are classes")
    g.add_argument("--edges", action="store_true",
                   help="score edge maps against class boundaries (ODS/OIS) instead of segmentation")
    g.add_argument("--tolerance-px", type=float,
                   help="--edges: match distance in pixels (default BSDS's 0.75%% of the diagonal)")
    g.add_argument("--json", help="write the scores to this JSON file")
    p.set_defaults(func=run)


def build_pipeline(args: argparse.Namespace):
    """The method and its options as a :class:`detseg.classic.pipeline.Pipeline`."""
    from detseg.classic.pipeline import Pipeline, Step, parse_steps

    ch = {"channel": args.channel} if args.channel is not None else {}
    m = args.method
    if m == "pipeline":
        if bool(args.steps) == bool(args.pipeline):
            raise ValueError("pipeline: give exactly one of --steps or --pipeline")
        base = Pipeline.from_yaml(args.pipeline) if args.pipeline else Pipeline.from_string(args.steps)
        steps = list(base.steps)
    elif m == "threshold":
        if args.threshold is None:
            raise ValueError("threshold: --threshold is required")
        steps = [Step("threshold", {"threshold": args.threshold, **ch})]
    elif m == "otsu":
        steps = [Step("otsu", ch)]
    elif m == "multiotsu":
        steps = [Step("multiotsu", {"classes": args.classes, **ch})]
    elif m == "adaptive":
        steps = [Step("adaptive", {"block_size": args.block_size, "offset": args.offset,
                                   "method": args.adaptive_method, **ch})]
    elif m == "sobel":
        steps = [Step("sobel", {"ksize": args.ksize, "convention": args.convention, **ch})]
    elif m == "canny":
        steps = [Step("canny", {"low": args.low, "high": args.high, "blur_sigma": args.blur_sigma,
                                "l2_gradient": args.l2, "auto": args.auto, **ch})]
    elif m == "kmeans":
        steps = [Step("kmeans", {"k": args.k, "color_space": args.color_space, "seed": args.seed})]
    else:
        seeds = args.seeds if args.seeds == "auto" else _parse_seeds(args.seeds)
        steps = [Step("region", {"seeds": seeds, "n_seeds": args.n_seeds, "tolerance": args.tolerance,
                                 "relative_to": args.relative_to, "connectivity": args.connectivity, **ch})]
    if args.post:
        steps += parse_steps(args.post)  # the Pipeline checks that they take a mask
    return Pipeline(steps)


def _parse_seeds(text: str) -> list[tuple[int, int]]:
    seeds = []
    for part in text.split(";"):
        try:
            r, c = (int(v) for v in part.split(","))
        except ValueError:
            raise ValueError(f"--seeds: expected 'row,col;row,col', got {part!r}") from None
        seeds.append((r, c))
    return seeds


def run(args: argparse.Namespace) -> int:
    from detseg.jsonio import dumps

    pipeline = build_pipeline(args)
    if args.data:
        if args.inputs:
            raise ValueError("give image files or --data SPEC, not both")
        from detseg.classic.evaluate import format_scores, score_edges, score_pipeline

        if args.edges:
            scores = score_edges(pipeline, args.data, args.split, args.tolerance_px)
        else:
            fit_split = None if args.fit_split.lower() == "none" else args.fit_split
            scores = score_pipeline(pipeline, args.data, args.split, fit_split, args.polarity, args.mapping)
        print(format_scores(scores))
        if args.json:
            with open(args.json, "w") as f:
                f.write(dumps(scores, indent=2))  # NaN scores (a class never present) as null
        return 0
    if not args.inputs or not args.out:
        raise ValueError("give image files and --out DIR, or --data SPEC to score on a data set")
    from detseg.classic.outputs import write_outputs

    for path in args.inputs:
        for written in write_outputs(pipeline, path, args.out):
            print(written)
    return 0
