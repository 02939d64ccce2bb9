"""Detector speed here beside torchvision's: inference latency and training throughput.

    python benchmarks/detection_speed.py                      # all pairs, CPU, torch's default threads
    python benchmarks/detection_speed.py --threads 2 --models ssdlite320_mobilenet_v3_large
    python benchmarks/detection_speed.py --device cuda --runs 20

Each detseg detector runs at its input size beside torchvision's model of the same architecture
(``weights=None``, same number of classes, same input), where torchvision has one. Latency: median of
``--runs`` forward passes of one image in eval mode. Training: images per second over ``--steps``
steps of forward + backward + SGD step on batches of ``--batch`` images with two boxes each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
import torchvision.models.detection as tvd

from detseg.models.zoo import create_model

NUM_CLASSES = 20  # VOC; torchvision's models get one more for the background

# detseg model -> (input side, torchvision reference builder or None, detseg keyword arguments)
PAIRS: dict[str, tuple[int, Callable | None, dict]] = {
    "ssd300_vgg16": (300, lambda: tvd.ssd300_vgg16(weights=None, weights_backbone=None,
                                                   num_classes=NUM_CLASSES + 1), {}),
    "ssd512_vgg16": (512, None, {}),
    "ssdlite320_mobilenet_v3_large": (320, lambda: tvd.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1), {}),
    "ssdlite320_mobilenet_v2": (320, None, {}),
    "rfcn_resnet50": (320, None, dict(min_size=320, max_size=320)),
    "fasterrcnn_mobilenet_v3_large_320_fpn": (320, lambda: tvd.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1), {}),
}


def fake_batch(n: int, side: int, device: str) -> tuple[list[torch.Tensor], list[dict]]:
    images = [torch.rand(3, side, side, device=device) for _ in range(n)]
    s = side / 300
    boxes = torch.tensor([[30.0, 40, 150, 200], [160, 120, 280, 290]], device=device) * s
    labels = torch.tensor([1, 2], device=device)  # valid in both conventions (0-based and 1-based)
    return images, [{"boxes": boxes.clone(), "labels": labels.clone()} for _ in range(n)]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def latency_ms(model: torch.nn.Module, side: int, runs: int, device: str) -> float:
    model.eval()
    images, _ = fake_batch(1, side, device)
    times = []
    with torch.no_grad():
        for i in range(runs + 2):
            sync(device)
            t0 = time.perf_counter()
            model(images)
            sync(device)
            if i >= 2:  # two warm-up runs
                times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def train_images_per_s(model: torch.nn.Module, side: int, batch: int, steps: int, device: str) -> float:
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-4, momentum=0.9)
    images, targets = fake_batch(batch, side, device)
    elapsed = 0.0
    for i in range(steps + 1):
        sync(device)
        t0 = time.perf_counter()
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sync(device)
        if i >= 1:  # one warm-up step
            elapsed += time.perf_counter() - t0
    return batch * steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--runs", type=int, default=5, help="timed inference runs per model")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per model")
    parser.add_argument("--batch", type=int, default=4, help="training batch size")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cuda = args.device.startswith("cuda")
    where = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {where}; torch {torch.__version__}; batch {args.batch} for training\n")
    header = (f"{'model':40s} {'impl':12s} {'input':>6s} {'params M':>9s} {'infer ms':>9s} "
              f"{'train img/s':>12s}")
    print(header)
    print("-" * len(header))
    rows = []
    for name in args.models:
        side, reference, kwargs = PAIRS[name]
        builds = [("detseg", lambda n=name, kw=kwargs: create_model(n, num_classes=NUM_CLASSES, **kw))]
        if reference is not None:
            builds.append(("torchvision", reference))
        for impl, build in builds:
            model = build().to(args.device)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            ms = latency_ms(model, side, args.runs, args.device)
            ips = train_images_per_s(model, side, args.batch, args.steps, args.device)
            rows.append(dict(model=name, impl=impl, input=side, params_m=round(params, 2),
                             infer_ms=round(ms, 1), train_img_s=round(ips, 2), device=where))
            print(f"{name:40s} {impl:12s} {side:6d} {params:9.2f} {ms:9.1f} {ips:12.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
