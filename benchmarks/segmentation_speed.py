"""Training and inference speed of detseg's segmenters beside torchvision's equivalents.

    python benchmarks/segmentation_speed.py --size 256 --batch 2 --threads 2
    python benchmarks/segmentation_speed.py --device cuda --size 512 --batch 8 --amp

Every model is built with random weights (``weights=None``: nothing is downloaded). Inference is
``model.eval()`` under ``torch.inference_mode()``; a training step is forward, cross-entropy,
backward and an SGD step. Figures are the median of ``--repeats`` timed runs after ``--warmup``;
forward FLOPs are counted exactly (``torch.utils.flop_counter``), a noise-free comparison.
torchvision's references: fcn_resnet50, deeplabv3_resnet50, deeplabv3_mobilenet_v3_large (no aux head).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

OURS = [
    "fcn32s_vgg16", "fcn8s_vgg16", "deconvnet_vgg16", "unet", "unet_resnet34", "unet_mobilenet_v2",
    "deeplabv3_resnet50", "deeplabv3_resnet101", "deeplabv3_mobilenet_v3_large",
]  # fmt: skip
TORCHVISION = ["fcn_resnet50", "deeplabv3_resnet50", "deeplabv3_mobilenet_v3_large"]


class TorchvisionSegmenter(nn.Module):
    """torchvision's model with the same contract as ours: [0, 1] input normalised inside, logits out."""

    def __init__(self, name: str, num_classes: int) -> None:
        super().__init__()
        import torchvision

        builder = getattr(torchvision.models.segmentation, name)
        self.net = builder(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)["out"]


def timed(fn, warmup: int, repeats: int, device: torch.device) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def forward_gflops(model: nn.Module, x: torch.Tensor) -> float:
    """Forward GFLOPs per image counted by ``torch.utils.flop_counter`` (exact, unlike timings)."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x[:1])
    return counter.get_total_flops() / 1e9


def measure(model: nn.Module, args, device: torch.device) -> tuple[float, float, float, float]:
    """(parameters in millions, forward GFLOPs, inference ms per image, training ms per image)."""
    model = model.to(device)
    x = torch.rand(args.batch, 3, args.size, args.size, device=device)
    target = torch.randint(0, args.classes, (args.batch, args.size, args.size), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    autocast = torch.autocast(
        device.type, dtype=torch.bfloat16 if device.type == "cpu" else torch.float16, enabled=args.amp
    )
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp and device.type == "cuda")

    def infer() -> None:
        model.eval()
        with torch.inference_mode(), autocast:
            model(x)

    def train_step() -> None:
        model.train()
        with autocast:
            loss = nn.functional.cross_entropy(model(x).float(), target)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    params = sum(p.numel() for p in model.parameters()) / 1e6
    gflops = forward_gflops(model, x)
    infer_s = timed(infer, args.warmup, args.repeats, device)
    train_s = timed(train_step, args.warmup, args.repeats, device)
    return params, gflops, 1000 * infer_s / args.batch, 1000 * train_s / args.batch


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=256, help="square input size")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="mixed precision (bf16 on CPU, fp16 on CUDA)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="*", default=None, help="detseg model names (default: all)")
    parser.add_argument("--no-torchvision", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    from detseg.models.zoo import create_model

    rows = []
    for name in args.models or OURS:
        torch.manual_seed(0)
        rows.append(("detseg", name, *measure(create_model(name, num_classes=args.classes), args, device)))
        print(f"{rows[-1][1]:32s} done", flush=True)
    if not args.no_torchvision:
        for name in TORCHVISION:
            torch.manual_seed(0)
            rows.append(
                ("torchvision", name, *measure(TorchvisionSegmenter(name, args.classes), args, device))
            )
            print(f"{rows[-1][1]:32s} done", flush=True)
    where = f"{device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    print(
        f"\ninput {args.batch}x3x{args.size}x{args.size}, {args.classes} classes, {where}, "
        f"threads {torch.get_num_threads()}, amp {args.amp}"
    )
    print("| source | model | params (M) | forward GFLOPs/img | inference ms/img | train ms/img |")
    print("|---|---|---:|---:|---:|---:|")
    for source, name, params, gflops, infer_ms, train_ms in rows:
        print(f"| {source} | {name} | {params:.1f} | {gflops:.1f} | {infer_ms:.1f} | {train_ms:.1f} |")


if __name__ == "__main__":
    main()
