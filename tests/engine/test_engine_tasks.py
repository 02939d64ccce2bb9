"""Task glue: segmentation losses and metrics by hand, detection through the trainer with COCO AP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from detseg.data.dataset import collate_detection
from detseg.engine import DetectionTask, SegmentationTask, TrainConfig, Trainer
from detseg.engine.logging import read_csv
from detseg.engine.tasks import build_segmentation_loss, confusion_matrix, metrics_from_confusion


def test_confusion_and_iou_by_hand():
    target = torch.tensor([[0, 0, 1], [1, 1, 255]])
    pred = torch.tensor([[0, 1, 1], [1, 0, 0]])
    conf = confusion_matrix(pred, target, 2, 255)
    assert conf.tolist() == [[1, 1], [1, 2]]  # the void pixel is left out
    m = metrics_from_confusion(conf.numpy(), ["bg", "fg"])
    # IoU bg = 1 / (1 + 1 + 1) = 1/3; fg = 2 / (2 + 1 + 1) = 1/2.
    assert m["iou_bg"] == pytest.approx(1 / 3)
    assert m["iou_fg"] == pytest.approx(1 / 2)
    assert m["miou"] == pytest.approx(5 / 12)
    assert m["pixel_accuracy"] == pytest.approx(3 / 5)


def test_bce_on_one_channel_equals_torch_and_ignores_void():
    logits = torch.randn(2, 1, 4, 5)
    target = torch.randint(0, 2, (2, 4, 5))
    target[0, 0, :] = 255
    loss = build_segmentation_loss("bce", 2)(logits, target)
    valid = target != 255
    ref = nn.functional.binary_cross_entropy_with_logits(logits[:, 0][valid], target[valid].float())
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    with pytest.raises(ValueError, match="two classes"):
        build_segmentation_loss("bce", 3)
    with pytest.raises(ValueError, match="unknown loss 'focal'"):
        build_segmentation_loss("focal", 2)


def test_segmentation_task_binary_mode_outputs_one_channel():
    task = SegmentationTask(2, loss="balanced-bce")
    assert task.out_channels == 1
    assert SegmentationTask(3, loss="ce+dice").out_channels == 3


class RectangleData(Dataset):
    """One bright rectangle per image; the target is its box (class 0)."""

    def __init__(self, n=6, size=24, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            x1, y1 = torch.randint(0, size // 2, (2,), generator=g).tolist()
            w, h = torch.randint(4, size // 2, (2,), generator=g).tolist()
            image = torch.zeros(3, size, size)
            image[:, y1 : y1 + h, x1 : x1 + w] = 1.0
            target = {
                "boxes": torch.tensor([[x1, y1, x1 + w, y1 + h]], dtype=torch.float32),
                "labels": torch.tensor([0]),
                "iscrowd": torch.tensor([0]),
                "image_id": i + 1,
            }
            self.items.append((image, target))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class ThresholdDetector(nn.Module):
    """Finds the bright rectangle exactly (shifted by ``shift`` pixels); trains a dummy parameter."""

    def __init__(self, shift=0.0):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(3.0))
        self.shift = shift

    def forward(self, images, targets=None):
        if self.training:
            return {"loss_box": (self.w - 1) ** 2, "loss_cls": 0.5 * (self.w - 1) ** 2}
        out = []
        for im in images:
            ys, xs = torch.nonzero(im[0] > 0.5, as_tuple=True)
            box = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float() + self.shift
            out.append({"boxes": box[None], "labels": torch.tensor([0]), "scores": torch.tensor([0.9])})
        return out


@pytest.mark.parametrize("shift,expected_ap50", [(0.0, 1.0), (6.0, 0.0)])
def test_detection_task_through_the_trainer(tmp_path, shift, expected_ap50):
    config = TrainConfig(
        out=str(tmp_path),
        epochs=2,
        batch_size=2,
        lr=0.1,
        quiet=True,
        momentum=0.0,
        weight_decay=0.0,
        schedule="constant",
    )
    trainer = Trainer(
        ThresholdDetector(shift),
        DetectionTask(1, ["box"]),
        RectangleData(),
        RectangleData(4, seed=1),
        config,
        collate_fn=collate_detection,
    )
    out = trainer.fit()
    steps = read_csv(tmp_path / "steps.csv")
    assert {"loss", "loss_box", "loss_cls"} <= set(steps[0])
    assert float(steps[0]["loss"]) == pytest.approx(1.5 * 4)  # (3 - 1)^2 * (1 + 0.5)
    assert float(steps[-1]["loss"]) < float(steps[0]["loss"])
    assert out["last"]["AP50"] == pytest.approx(expected_ap50, abs=1e-6)
    assert np.isfinite(out["last"]["AP"])
