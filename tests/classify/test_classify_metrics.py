"""detseg.metrics.classification against torchmetrics, and a hand-worked example."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from detseg.metrics.classification import accuracy, classification_scores, confusion_matrix


def test_hand_worked_two_classes():
    # 10 ants, 8 found; 10 bees, 5 found (5 called ants).
    c = np.array([[8, 2], [5, 5]])
    s = classification_scores(c)
    assert s["accuracy"] == pytest.approx(13 / 20)
    assert s["recall"] == pytest.approx([0.8, 0.5])
    assert s["precision"] == pytest.approx([8 / 13, 5 / 7])
    f1_ants = 2 * (8 / 13) * 0.8 / (8 / 13 + 0.8)
    assert s["f1"][0] == pytest.approx(f1_ants) and s["balanced_accuracy"] == pytest.approx(0.65)
    assert s["support"].tolist() == [10, 10]


@pytest.mark.parametrize("seed, k", [(0, 2), (1, 5), (2, 7)])
def test_agrees_with_torchmetrics(seed, k):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, k, (300,), generator=g)
    # Better than chance, with a class (the last) never predicted: precision's zero division.
    pred = torch.where(torch.rand(300, generator=g) < 0.6, target, torch.randint(0, k, (300,), generator=g))
    pred = pred.clamp(max=k - 2) if k > 2 else pred
    c = confusion_matrix(pred, target, k)
    assert torch.equal(c, MulticlassConfusionMatrix(k)(pred, target))
    s = classification_scores(c)
    kw = {"num_classes": k, "average": None}
    for name, ref in (
        ("precision", MulticlassPrecision),
        ("recall", MulticlassRecall),
        ("f1", MulticlassF1Score),
    ):
        assert s[name] == pytest.approx(ref(**kw)(pred, target).double().numpy(), abs=1e-6), name
    assert s["accuracy"] == pytest.approx(float(MulticlassAccuracy(k, average="micro")(pred, target)))
    assert s["balanced_accuracy"] == pytest.approx(
        float(MulticlassAccuracy(k, average="macro")(pred, target))
    )
    assert s["macro_f1"] == pytest.approx(
        float(MulticlassF1Score(k, average="macro")(pred, target)), abs=1e-6
    )


def test_topk_accuracy_agrees_with_torchmetrics():
    g = torch.Generator().manual_seed(3)
    logits, target = torch.randn(200, 6, generator=g), torch.randint(0, 6, (200,), generator=g)
    for topk in (1, 3):
        ref = MulticlassAccuracy(6, top_k=topk, average="micro")(logits, target)
        assert accuracy(logits, target, topk) == pytest.approx(float(ref))


def test_bad_labels_are_refused():
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        confusion_matrix(torch.tensor([0, 2]), torch.tensor([0, 1]), 2)
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 1]), 2)
