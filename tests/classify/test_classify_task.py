"""detseg.engine.classify: the task's metrics, and learning through the Trainer from a spec."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from detseg.engine.classify import ClassificationTask, build_classification, evaluation_set
from detseg.engine.trainer import TrainConfig, Trainer
from detseg.models.zoo import create_model

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hymenoptera.yaml"


class FixedLogits(torch.nn.Module):
    """Returns the logits stored for each image's id (the image's first pixel)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits[images[:, 0, 0, 0].long()]


def test_task_metrics_and_loss_known_answer():
    # Images 0..3: true [0, 0, 1, 1]; predicted [0, 1, 1, 1].
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 2.0]])
    labels = torch.tensor([0, 0, 1, 1])
    images = torch.arange(4.0).reshape(4, 1, 1, 1).expand(4, 3, 2, 2)
    task = ClassificationTask(2, ["ants", "bees"])
    task.eval_begin()
    for i in (0, 2):  # two batches of two
        task.eval_step(FixedLogits(logits), (images[i : i + 2], labels[i : i + 2]), torch.device("cpu"))
    out = task.eval_end()
    assert task.confusion.tolist() == [[1, 1], [0, 2]]
    assert out["accuracy"] == pytest.approx(0.75)
    assert out["recall_ants"] == pytest.approx(0.5) and out["recall_bees"] == pytest.approx(1.0)
    assert out["precision_bees"] == pytest.approx(2 / 3) and out["f1_ants"] == pytest.approx(2 / 3)
    ce = torch.nn.functional.cross_entropy(logits, labels)
    assert out["loss"] == pytest.approx(float(ce))
    loss, parts = task.train_step(FixedLogits(logits), (images, labels), torch.device("cpu"))
    assert float(loss) == pytest.approx(float(ce)) and parts == {}


def _stripes(horizontal: bool, rng: np.random.Generator, size: int = 40) -> np.ndarray:
    period = int(rng.integers(4, 9))
    phase = rng.integers(0, period)
    line = ((np.arange(size) + phase) % period < period // 2).astype(np.float64)
    grid = np.repeat(line[:, None], size, 1) if horizontal else np.repeat(line[None, :], size, 0)
    colour = rng.uniform(0.3, 1.0, 3)
    noisy = grid[..., None] * colour + rng.normal(0, 0.1, (size, size, 3))
    return (np.clip(noisy, 0, 1) * 255).astype(np.uint8)


def _write_stripes(root: Path, counts: dict[str, int]) -> None:
    rng = np.random.default_rng(0)
    for split, n in counts.items():
        for cls in ("horizontal", "vertical"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(_stripes(cls == "horizontal", rng)).save(root / split / cls / f"{i}.png")


def test_accuracy_rises_through_the_trainer(tmp_path):
    _write_stripes(tmp_path / "data", {"train": 24, "val": 10})
    (tmp_path / "spec.yaml").write_text("task: classify\nroot: data\ntrain: train\nval: {images: val}\n")
    train_set, val_set, task, collate, kwargs = build_classification(tmp_path / "spec.yaml", img_size=32)
    assert (
        train_set.classes == ["horizontal", "vertical"]
        and len(val_set) == 20
        and kwargs == {"num_classes": 2}
    )
    torch.manual_seed(0)
    model = create_model("resnet18_classifier", **kwargs)

    def val_accuracy() -> float:
        model.eval()
        task.eval_begin()
        for batch in DataLoader(val_set, batch_size=10, collate_fn=collate):
            task.eval_step(model, batch, torch.device("cpu"))
        return task.eval_end()["accuracy"]

    before = val_accuracy()
    config = TrainConfig(
        out=str(tmp_path / "run"),
        epochs=6,
        batch_size=8,
        optimizer="adamw",
        lr=1e-3,
        schedule="cosine",
        quiet=True,
        plots=False,
    )
    summary = Trainer(model, task, train_set, val_set, config, collate_fn=collate).fit()
    after = summary["last"]["accuracy"]
    assert after >= 0.9 and after >= before + 0.3, (before, after)
    assert summary["best"]["accuracy"] >= after and (tmp_path / "run" / "best.pt").is_file()
    assert {"recall_horizontal", "recall_vertical", "balanced_accuracy"} <= set(summary["last"])


def test_entry_point_on_hymenoptera(shared_data):
    train_set, val_set, task, collate, kwargs = build_classification(str(EXAMPLE), "train", "val", 64)
    assert (len(train_set), len(val_set), kwargs) == (245, 153, {"num_classes": 2})
    assert task.main_metric == "accuracy" and task.class_names == ["ants", "bees"]
    images, labels = collate([train_set[0], val_set[152]])
    assert images.shape == (2, 3, 64, 64) and labels.tolist() == [0, 1]
    _, no_val, _, _, _ = build_classification(str(EXAMPLE), val_split="none")
    assert no_val is None
    dataset, eval_task, _ = evaluation_set(str(EXAMPLE), "val", ["ants", "bees"], 64)
    assert len(dataset) == 153 and eval_task.num_classes == 2


def test_detseg_train_trains_a_classifier_from_a_spec(tmp_path):
    from detseg.cli import main
    from detseg.engine.checkpoint import load_checkpoint

    _write_stripes(tmp_path / "data", {"train": 24, "val": 10})
    (tmp_path / "spec.yaml").write_text("task: classify\nroot: data\ntrain: train\nval: {images: val}\n")
    out = tmp_path / "run"
    code = main([
        "train", "--model", "resnet18_classifier", "--data", str(tmp_path / "spec.yaml"), "--out", str(out),
        "--epochs", "6", "--img-size", "32", "--batch-size", "8", "--optimizer", "adamw", "--lr", "1e-3",
        "--schedule", "cosine", "--quiet",
    ])
    assert code == 0
    state = load_checkpoint(out / "best.pt")
    assert state["meta"]["task"] == "classify" and state["meta"]["classes"] == ["horizontal", "vertical"]
    rows = (out / "log.csv").read_text().splitlines()
    header, last = rows[0].split(","), rows[-1].split(",")
    assert float(last[header.index("val_accuracy")]) >= 0.9
