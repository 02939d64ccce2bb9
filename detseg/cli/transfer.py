"""``detseg transfer-study``: the lecture's transfer-learning comparison (detseg.transfer.study.run_study).

detseg transfer-study --source src.yaml --target tgt.yaml --model unet --out runs/study
detseg transfer-study --target examples/hymenoptera.yaml --model timm:tf_efficientnet_lite0 \
    --source-weights timm:tf_efficientnet_lite0.in1k --epochs 8 --img-size 224 --out runs/hym-study
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from detseg.cli.train import add_setting_options
from detseg.engine.config import TUNABLE
from detseg.transfer.study_config import MODES  # light: no torch, no models

# The RunConfig settings with an option here: the recipe (epochs is the study's own), the seed, the workers.
RUN_OPTIONS = tuple(
    n for n in (*TUNABLE, "seed", "workers") if n not in ("epochs", "eval_interval", "model_args")
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "transfer-study",
        help="compare as-is, feature extraction, fine-tuning and from scratch on two domains",
        description=(
            "Train a source model on SOURCE (or take --source-weights), then on TARGET: the source model as "
            "it is, feature extraction (frozen backbone, new head), fine-tuning (all layers) and training "
            "from scratch, each scored on both domains; with --add-class, adding a class with LwF against "
            "naive fine-tuning and joint training. Writes OUT/report.md, report.json, report.png and one "
            "folder per run under OUT/runs (finished runs are skipped when the command is run again). "
            "Detection, segmentation or classification (task: classify) data; --source may be left out "
            "with --source-weights (e.g. ImageNet weights: nothing is then scored on a source domain)."
        ),
    )
    p.add_argument(
        "--source", metavar="SPEC", help="source domain's dataset spec (optional with --source-weights)"
    )
    p.add_argument("--target", required=True, metavar="SPEC", help="target domain's dataset spec")
    p.add_argument(
        "--model", required=True, metavar="NAME",
        help="a detection, segmentation or classification zoo model (timm:NAME for timm's classifiers)",
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="study folder (runs, report)")
    p.add_argument("--epochs", type=int, default=10, help="epochs of every run on the target (default 10)")
    p.add_argument("--source-epochs", type=int, help="epochs of the source model (default: --epochs)")
    p.add_argument(
        "--lr-backbone", type=float, metavar="LR",
        help="fine_tuning: the pre-trained backbone's learning rate (default: --lr; e.g. a tenth of it)",
    )
    p.add_argument(
        "--freeze-bn", action="store_true",
        help="fine_tuning: keep the backbone's pre-trained BatchNorm statistics (every weight still trains)",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    p.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="builder argument for every run, e.g. width=16 (repeatable)",
    )
    p.add_argument("--pretrained", help="builder weights the source model starts from (name or file)")
    p.add_argument("--source-weights", metavar="CKPT|NAME",
                   help="the source model, not trained here: a detseg checkpoint, or pre-trained weights by "
                   "name (COCO_V1: torchvision's COCO model; timm:tf_efficientnet_lite0.in1k: ImageNet's "
                   "classifier; their classes are the weights')")
    p.add_argument(
        "--class-map",
        action="append",
        metavar="TARGET=SOURCE",
        help="classification: a target class = the source model's class, for scoring it as is where "
        "the names differ (repeatable or comma-separated; e.g. ants=ant,bees=bee; by default a target "
        "class matches the same name, ignoring case, _/- and a plural s)",
    )
    p.add_argument(
        "--modes", nargs="+", choices=MODES, default=list(MODES), help="which target runs (default: all)"
    )
    p.add_argument(
        "--add-class",
        metavar="SPEC",
        help="spec with the source classes plus new ones, all labelled: runs LwF vs naive vs joint",
    )
    p.add_argument(
        "--new-class-data",
        metavar="SPEC",
        help="the new classes' training data (default: --add-class's train split, old labels dropped)",
    )
    p.add_argument("--distill", type=float, default=1.0, help="LwF distillation weight (default 1)")
    p.add_argument(
        "--pseudo-labels",
        type=float,
        metavar="SCORE",
        help="also run LwF + old-class pseudo-labels (the old model's predictions scoring >= SCORE)",
    )
    p.add_argument("--source-split", help="source split scored (default val, else test)")
    p.add_argument("--target-split", help="target split scored (default val, else test)")
    p.add_argument("--verbose", action="store_true", help="show every run's epochs")
    # Every run's training recipe, as detseg train takes it; left out: the spec's, the model family's and
    # detseg's defaults (so a U-Net study trains with U-Net's AdamW recipe).
    add_setting_options(
        p.add_argument_group("every run's training (left out: the model's defaults)"), RUN_OPTIONS
    )
    p.set_defaults(func=run_transfer_study)


def run_transfer_study(args: argparse.Namespace) -> int:
    from detseg.cli.train import parse_model_args
    from detseg.engine.class_map import parse_class_map
    from detseg.engine.trainer import NonFiniteLossError
    from detseg.transfer.study import run_study
    from detseg.transfer.study_config import StudyConfig

    # Options named as StudyConfig fields pass as they are; these three are parsed; the other training
    # settings given go to every run as train_args.
    passed = {f.name for f in fields(StudyConfig)} - {"model_args", "class_map", "quiet", "train_args"}
    given = {k: v for k, v in vars(args).items() if k in passed}
    train_args = {
        k: getattr(args, k) for k in RUN_OPTIONS if k not in passed and getattr(args, k, None) is not None
    }
    if "scale_range" in train_args:
        train_args["scale_range"] = tuple(train_args["scale_range"])
    config = StudyConfig(
        **given,
        model_args=parse_model_args(args.model_arg),
        train_args=train_args,
        class_map=parse_class_map(args.class_map) or None,
        quiet=not args.verbose,
    )
    try:
        report = run_study(config)
    except NonFiniteLossError as exc:
        print(
            f"detseg transfer-study: stopped: {exc} (try a lower --lr; finished runs are kept)",
            file=sys.stderr,
        )
        return 1
    print((Path(args.out) / "report.md").read_text(encoding="utf-8"), end="")
    held = sum(c["status"] == "held" for c in report["claims"])
    print(f"{held} of {len(report['claims'])} claims held; report in {args.out}")
    return 0
