"""Old-class pseudo-labels (detseg.transfer.pseudo): hand-made old models, then through detseg train."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from detseg.cli import main
from detseg.engine.checkpoint import load_checkpoint
from detseg.engine.logging import read_csv
from detseg.engine.tasks import DetectionTask, SegmentationTask
from detseg.transfer.pseudo import PseudoLabelTask, pseudo_label_detection, pseudo_label_segmentation
from tests.transfer.test_train_transfer import COMMON, UNET, data  # noqa: F401 (the data fixture)


class FixedDetector(nn.Module):
    """An "old model" that returns the same detections for every image."""

    def __init__(self, boxes, labels, scores):
        super().__init__()
        self.out = {
            "boxes": torch.tensor(boxes), "labels": torch.tensor(labels), "scores": torch.tensor(scores)
        }
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, images):
        assert not self.training
        return [dict(self.out) for _ in images]


def test_detection_pseudo_labels_fill_in_unlabelled_old_objects():
    boxes = [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [1, 1, 11, 11]]
    old = FixedDetector(boxes, [0, 1, 1, 0], [0.9, 0.8, 0.3, 0.95])
    images = [torch.rand(3, 64, 64), torch.rand(3, 64, 64)]
    targets = [
        {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([2]), "image_id": 7},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "image_id": 8},
    ]
    out, added = pseudo_label_detection(old, images, targets, threshold=0.5, overlap=0.5)
    # Image 1: [0,0,10,10] and [1,1,11,11] overlap the labelled new-class box; [40,40,50,50] scores 0.3.
    assert out[0]["boxes"].tolist() == [[0, 0, 10, 10], [20, 20, 30, 30]]
    assert out[0]["labels"].tolist() == [2, 1] and out[0]["image_id"] == 7
    # Image 2 has no labels: every confident old detection comes in.
    assert out[1]["labels"].tolist() == [0, 1, 0] and added == 1 + 3
    assert targets[0]["labels"].tolist() == [2]  # the batch itself is left as it was


def test_segmentation_pseudo_labels_only_take_confident_background_pixels():
    # Old model: background, circle (1), square (2); the data: + triangle (3), 255 ignored.
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0], [0.0, 0.2, 0.1]])
    old = nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        old.weight.zero_()
    old.forward = lambda x: logits.T[None, :, :, None].expand(1, 3, 4, 1).clone()
    masks = torch.tensor([[[0], [0], [3], [0]]])
    out, changed = pseudo_label_segmentation(old, torch.rand(1, 3, 4, 1), masks, threshold=0.5)
    # pixel 0: old says background; 1: circle, confident -> 1; 2: labelled triangle, kept; 3: unsure.
    assert out[0, :, 0].tolist() == [0, 1, 3, 0] and changed == 1
    ignored = torch.tensor([[[255], [255], [255], [255]]])
    assert torch.equal(pseudo_label_segmentation(old, torch.rand(1, 3, 4, 1), ignored)[0], ignored)


def test_pseudo_label_task_changes_the_targets_the_task_sees():
    seen = {}

    class Recorder(DetectionTask):
        def train_step(self, model, batch, device):
            seen["targets"] = batch[1]
            return torch.zeros(()), {}

    old = FixedDetector([[20.0, 20, 30, 30]], [1], [0.9])
    task = PseudoLabelTask(Recorder(3), old, threshold=0.5)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    batch = ([torch.rand(3, 32, 32)], [empty])
    _, parts = task.train_step(nn.Identity(), batch, torch.device("cpu"))
    assert seen["targets"][0]["labels"].tolist() == [1] and float(parts["pseudo_labels"]) == 1.0
    assert task.main_metric == "AP" and task.name == "detect"
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        PseudoLabelTask(SegmentationTask(3), old, threshold=0.0)


def test_pseudo_labels_through_detseg_train(data, capsys):  # noqa: F811
    root = data["root"]
    old_run, new_run = root / "pl_old", root / "pl_new"
    train = ["train", *UNET, *COMMON]
    assert main([*train, "--data", str(data["old"] / "segment.yaml"), "--iters", "6", "--out", str(old_run),
                 "--quiet"]) == 0  # fmt: skip
    argv = [*train, "--data", str(data["new"] / "segment.yaml"), "--iters", "2", "--out", str(new_run)]
    argv.append("--quiet")
    assert main([*argv, "--extend-from", str(old_run / "last.pt"), "--pseudo-labels", "0.4"]) == 0
    assert load_checkpoint(new_run / "last.pt")["meta"]["transfer"]["pseudo_labels"] == 0.4
    steps = read_csv(new_run / "steps.csv")
    assert len(steps) == 2 and all(float(r["pseudo_labels"]) >= 0 for r in steps)
    capsys.readouterr()
    argv[argv.index("--iters") + 1] = "3"
    assert main([*argv, "--resume", "--pseudo-labels", "0.9"]) == 2
    assert "trained with pseudo_labels=0.4, not 0.9" in capsys.readouterr().err
    assert main([*argv[:-3], "--out", str(root / "pl_bad"), "--quiet", "--pseudo-labels", "0.5"]) == 2
    assert "--pseudo-labels needs --extend-from" in capsys.readouterr().err
