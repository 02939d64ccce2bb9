"""A small U-Net really trained on generated shapes, for the low-precision export tests (a few seconds on
one thread): INT8 and BF16 are only worth testing on a model whose outputs mean something."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import torch

from detseg.cli import main
from detseg.engine.checkpoint import save_checkpoint
from detseg.models.zoo import create_model

SIZE = 64


@functools.cache
def trained_unet(steps: int = 150) -> tuple[Path, Path]:
    """``(checkpoint, segment.yaml)``: ``detseg synth`` shapes (16 train, 4 val, 64 px) and a U-Net
    (width 8, depth 2) trained ``steps`` Adam steps on them; one copy per test session."""
    from detseg.data.dataset import build_dataset, collate_segmentation
    from detseg.data.spec import load_spec
    from detseg.data.transforms import segmentation_eval_preset

    folder = Path(tempfile.mkdtemp(prefix="detseg-int8-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    synth = ["synth", str(folder / "shapes"), "--num-train", "16", "--num-val", "4", "--size", str(SIZE)]
    assert main(synth) == 0
    spec = folder / "shapes" / "segment.yaml"
    classes = list(load_spec(spec).classes)
    images, masks = collate_segmentation(list(build_dataset(spec, "train", segmentation_eval_preset())))
    torch.manual_seed(0)
    model = create_model("unet", num_classes=len(classes), width=8, depth=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        batch = torch.arange(4 * step, 4 * step + 4) % len(images)
        loss = torch.nn.functional.cross_entropy(model(images[batch]), masks[batch], ignore_index=255)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    kwargs = {"num_classes": len(classes), "width": 8, "depth": 2}
    meta = {"task": "segment", "model": "unet", "model_kwargs": kwargs, "classes": classes, "values": {},
            "ignore_index": 255, "channels": 3, "img_size": SIZE, "loss": "ce"}  # fmt: skip
    checkpoint = save_checkpoint(
        {"model": model.eval().state_dict(), "meta": meta}, folder / "run" / "best.pt"
    )
    return checkpoint, spec


def with_outlier_channel(checkpoint: Path, scale: float = 1000.0) -> Path:
    """The same function with one activation channel ``scale`` times larger than the rest, as real
    networks have (channel 0 after the first block: its BatchNorm's affine times ``scale``, the next
    convolution's input weights over ``scale``; ReLU commutes with the positive scale). Per-tensor INT8
    of that activation rounds every other channel to nothing: what the accuracy gate must catch."""
    from detseg.engine.checkpoint import load_checkpoint

    state = load_checkpoint(checkpoint)
    weights = dict(state["model"])
    for key in ("encoder.levels.0.0.1.weight", "encoder.levels.0.0.1.bias"):
        weights[key] = weights[key].clone()
        weights[key][0] *= scale
    conv = "encoder.levels.0.1.0.weight"
    weights[conv] = weights[conv].clone()
    weights[conv][:, 0] /= scale
    return save_checkpoint({**state, "model": weights}, checkpoint.parent.parent / "outlier" / "best.pt")
