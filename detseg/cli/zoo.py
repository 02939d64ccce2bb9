"""``detseg zoo list | bench | build | figures``: the model-zoo table, its measured figures, offline zoo
weights, and docs/figures.md from the recorded measurements."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("zoo", help="the model zoo: list its table, measure speed, build weights",
                              description="The lecture's model-zoo table, with figures measured by detseg.")
    sub = p.add_subparsers(dest="zoo_command", metavar="ZOO_COMMAND", required=True)

    ls = sub.add_parser("list", help="print the model-zoo table")
    ls.add_argument("--task", choices=["detect", "segment", "classify"])
    ls.add_argument("--json", action="store_true", help="rows as JSON, with how every figure was obtained")
    ls.add_argument("--figures", help="figures file (default: the package's, or $DETSEG_ZOO_FIGURES)")
    ls.add_argument(
        "--backbones",
        action="store_true",
        help="timm encoders for --backbone timm:NAME: parameters, strides, channels, weights tags",
    )
    ls.add_argument(
        "--pattern",
        action="append",
        metavar="GLOB",
        help="--backbones: timm names matching GLOB (repeatable; default: CPU-sized ones; '*': all, slow)",
    )
    ls.set_defaults(func=run_list)

    bench = sub.add_parser("bench", help="measure parameters, GFLOPs and CPU ms at the registered input size")
    bench.add_argument("names", nargs="*", metavar="NAME", help="zoo models (default: all)")
    bench.add_argument("--task", choices=["detect", "segment", "classify"], help="only this task's models")
    bench.add_argument("--threads", type=int, help="CPU threads (default: torch's default)")
    bench.add_argument("--repeats", type=int, default=10, help="timed forward passes (default 10)")
    bench.add_argument("--warmup", type=int, default=2, help="untimed passes first (default 2)")
    bench.add_argument("--write", action="store_true", help="record the figures in the figures file")
    bench.add_argument("--note", default="", help="a note kept with the figures (e.g. 'machine shared')")
    bench.add_argument("--figures", help="figures file to write (default: the package's)")
    bench.set_defaults(func=run_bench)

    build = sub.add_parser("build", help="train a zoo entry's weights from its recipe and cache them")
    build.add_argument("name", metavar="NAME")
    build.add_argument("--out", help="work folder for the generated data and the run (default: temporary)")
    build.add_argument("--epochs", type=int, help="override the recipe's epochs")
    build.add_argument("--seed", type=int, help="override the recipe's training seed")
    build.add_argument("--device", help="cpu | cuda | auto (default: the recipe's, auto)")
    build.add_argument("--figures", help="figures file to record the accuracy in (default: the package's)")
    build.add_argument("--no-record", action="store_true", help="do not write the accuracy figure")
    build.set_defaults(func=run_build)

    figs = sub.add_parser("figures", help="docs/figures.md from the recorded measurements",
                          description="Every recorded figure (detseg/zoo/measurements.json) as markdown.")
    figs.add_argument("--measurements", help="measurements file (default: the package's)")
    figs.add_argument("--write", metavar="PATH", help="write the page to PATH (docs/figures.md), not stdout")
    figs.add_argument("--check", metavar="PATH", help="exit 1 when PATH differs from what would be written")
    figs.set_defaults(func=run_figures)


def run_list(args: argparse.Namespace) -> int:
    if getattr(args, "backbones", False):
        return _list_backbones(args)
    from detseg.zoo.figures import load_figures
    from detseg.zoo.table import format_table, zoo_rows

    rows = zoo_rows(args.task, load_figures(args.figures))
    print(json.dumps(rows, indent=1) if args.json else format_table(rows))
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from detseg.models.zoo import list_models, model_info
    from detseg.zoo.figures import how_obtained, record_figures
    from detseg.zoo.measure import bench_model

    names = args.names or list_models(task=args.task)
    for name in names:
        model_info(name)  # unknown names fail before any measuring
    command = "detseg zoo bench " + " ".join(
        [*args.names, *(["--task", args.task] if args.task else []),
         *(["--threads", str(args.threads)] if args.threads else []),
         "--repeats", str(args.repeats), "--warmup", str(args.warmup)])
    for name in names:
        fig = bench_model(name, args.repeats, args.warmup, args.threads)
        print(f"{name}: {fig['params'] / 1e6:.2f} M params, {fig['gflops']:.2f} GFLOPs, "
              f"{fig['cpu_ms']:.1f} ms wall, {fig['cpu_time_ms']:.1f} ms CPU time ({fig['threads']} threads, "
              f"median of {fig['repeats']})", flush=True)
        if args.write:
            how = how_obtained(command, args.note)
            how["machine"]["torch_threads"] = fig["threads"]  # what the passes ran with, not the default
            size = fig["input_size"]
            record_figures(name, {
                "params": {"value": fig["params"], "how": how},
                "gflops": {"value": round(fig["gflops"], 3), "input_size": size, "how": how},
                "cpu_ms": {"value": round(fig["cpu_ms"], 1), "cpu_time_ms": round(fig["cpu_time_ms"], 1),
                           "input_size": size, "threads": fig["threads"],
                           "repeats": fig["repeats"], "warmup": fig["warmup"], "how": how},
            }, args.figures)
    return 0


def run_build(args: argparse.Namespace) -> int:
    from detseg.zoo.build import build

    overrides = {k: v for k, v in (("epochs", args.epochs), ("seed", args.seed), ("device", args.device))
                 if v is not None}
    result = build(args.name, out=args.out, train_overrides=overrides, figures=args.figures,
                   record=not args.no_record)
    print(f"{args.name}: {result['metric']} {result['value']:.4f} on {result['data']}; weights "
          f"{result['path']} (sha256 {result['sha256'][:16]}...); load with "
          f"create_model({args.name!r}, pretrained='zoo')")
    return 0


def run_figures(args: argparse.Namespace) -> int:
    from pathlib import Path

    from detseg.zoo.measurements import load_measurements, render_figures_md

    page = render_figures_md(load_measurements(args.measurements))
    if args.check:
        if Path(args.check).read_text() != page:
            print(f"{args.check} differs from the recorded measurements; "
                  f"run: detseg zoo figures --write {args.check}")
            return 1
        print(f"{args.check} is up to date")
    elif args.write:
        Path(args.write).write_text(page)
        print(f"wrote {args.write}")
    else:
        print(page, end="")
    return 0


#: ``zoo list --backbones`` without --pattern: encoder families that train on a CPU.
BACKBONE_PATTERNS = [
    "tf_efficientnet_lite*", "efficientnet_b[0-2]", "mobilenetv3_large_100", "mobilenetv4_conv_small",
    "resnet18", "resnet34", "resnet50", "convnext_atto", "regnety_008",
]  # fmt: skip


def _list_backbones(args: argparse.Namespace) -> int:
    from detseg.models.timm_models import encoder_rows

    rows = [row for pattern in args.pattern or BACKBONE_PATTERNS for row in encoder_rows(pattern)]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'backbone':34} {'params M':>8}  {'strides':18} {'channels':24} tags (offline: *)")
    for row in rows:
        if "error" in row:
            print(f"{row['name']:34} {row['error']}")
            continue
        tags = ", ".join(t + ("*" if t in row["offline"] else "") for t in row["tags"])
        strides = ",".join(map(str, row["strides"]))
        channels = ",".join(map(str, row["channels"]))
        print(f"{row['name']:34} {row['params_m']:>8.2f}  {strides:18} {channels:24} {tags}")
    return 0
