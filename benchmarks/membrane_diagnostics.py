"""Where trained membrane U-Nets lose IoU on the unseen slices: threshold, slices, ensemble.

    python benchmarks/membrane_diagnostics.py runs/budget/unet-membrane/run/last.pt [more last.pt ...]

For each checkpoint (and, given several, for the mean of their probabilities): mIoU on the choosing slices
(val, 18-23) and the unseen ones (test, 0-5) with the membrane called where its probability exceeds each
threshold of a sweep (0.5 is the argmax that `detseg eval` scores), so that a threshold chosen on val can be
read off on test; then each unseen slice's mIoU at 0.5. The split is examples/membrane-heldout.yaml's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from detseg.data.spec import load_spec
from detseg.engine.predict import load_model, segment_probabilities
from detseg.metrics.segmentation import SegmentationMetrics

REPO = Path(__file__).resolve().parents[1]
THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65)


def membrane_probabilities(models: list, spec_path: Path, split: str) -> list[tuple[list, np.ndarray]]:
    """Per image of ``split``: each model's membrane probability map and the truth's class map."""
    from detseg.data.dataset import build_dataset

    data = build_dataset(spec_path, split)
    out = []
    for i in range(len(data)):
        image, target = data[i]
        x = image.float() / 255  # the dataset's uint8 image, as `detseg eval` feeds it
        with torch.no_grad():
            probs = [segment_probabilities(m, x)[0].numpy() for m in models]
        out.append((probs, target["semantic"].numpy()))
    return out


def miou(images: list[tuple[list, np.ndarray]], pick: list[int], threshold: float = 0.5) -> float:
    """detseg's mIoU over ``images`` with membrane (class 0) where the picked models' mean > threshold."""
    metrics = SegmentationMetrics(2)  # the truth's ignore_index (255) is left out, as in `detseg eval`
    for probs, truth in images:
        membrane = np.mean([probs[k] for k in pick], axis=0) > threshold
        metrics.update(np.where(membrane, 0, 1), truth)
    return metrics.compute()["miou"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("weights", nargs="+", type=Path, help="trained membrane checkpoints")
    parser.add_argument("--data", type=Path, default=REPO / "examples/membrane-heldout.yaml")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if load_spec(args.data).classes[0] != "membrane":
        raise SystemExit(f"{args.data}: class 0 must be membrane")
    models = [load_model(w)[0] for w in args.weights]
    picks = [[k] for k in range(len(models))] + ([list(range(len(models)))] if len(models) > 1 else [])
    names = [str(w) for w in args.weights] + (["mean of all"] if len(models) > 1 else [])
    val = membrane_probabilities(models, args.data, "val")
    test = membrane_probabilities(models, args.data, "test")
    for name, pick in zip(names, picks, strict=True):
        print(f"{name}")
        for t in THRESHOLDS:
            scores = f"val mIoU {miou(val, pick, t):.4f}  test mIoU {miou(test, pick, t):.4f}"
            print(f"  threshold {t:.2f}: {scores}")
        print("  test slices at 0.5: " + " / ".join(f"{miou([img], pick):.3f}" for img in test))


if __name__ == "__main__":
    main()
