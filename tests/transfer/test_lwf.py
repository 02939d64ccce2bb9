"""Learning without Forgetting: the distillation loss on hand-worked cases and its gradient, and
LwFTask's term in a training step for a segmenter and each detector family."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from detseg.engine.tasks import DetectionTask, SegmentationTask
from detseg.models.zoo import create_model
from detseg.transfer.freeze import keep_eval
from detseg.transfer.heads import class_keys, extend_head
from detseg.transfer.lwf import LwFTask, distillation_loss


def test_softmax_distillation_hand_worked():
    # One row, old logits (ln 3, 0) -> p_old = (3/4, 1/4); new logits (0, 0) -> p_new = (1/2, 1/2).
    new, old = torch.zeros(1, 2), torch.tensor([[math.log(3.0), 0.0]])
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # 0.130812
    assert float(distillation_loss(new, old, temperature=1.0)) == pytest.approx(kl, rel=1e-6)
    # T = 2: p_old = softmax(ln 3 / 2, 0) = (sqrt 3, 1) / (sqrt 3 + 1), and the loss is scaled by T^2.
    s = math.sqrt(3.0)
    p = (s / (s + 1), 1 / (s + 1))
    kl2 = p[0] * math.log(p[0] / 0.5) + p[1] * math.log(p[1] / 0.5)
    assert float(distillation_loss(new, old, temperature=2.0)) == pytest.approx(4 * kl2, rel=1e-6)
    # Rows are averaged: the same row twice, and as a [1, 2, 1, 2] (pixels) layout, give the same value.
    assert float(distillation_loss(new.repeat(2, 1), old.repeat(2, 1), 1.0)) == pytest.approx(kl, rel=1e-6)
    assert float(distillation_loss(new.reshape(1, 1, 1, 2), old.reshape(1, 1, 1, 2), 1.0)) == pytest.approx(
        kl, rel=1e-6
    )


def test_sigmoid_distillation_hand_worked():
    # q_old = sigmoid(0) = 1/2 against q_new = 1/2: BCE = ln 2 (the teacher's entropy), gradient 0.
    new = torch.zeros(1, 1, requires_grad=True)
    loss = distillation_loss(new, torch.zeros(1, 1), temperature=1.0, kind="sigmoid")
    assert float(loss.detach()) == pytest.approx(math.log(2.0))
    loss.backward()
    assert float(new.grad.abs().max()) < 1e-7
    # q_old = sigmoid(ln 3) = 3/4 against q_new = 1/2: -(3/4 ln 1/2 + 1/4 ln 1/2) = ln 2 still; gradient -1/4.
    new = torch.zeros(1, 1, requires_grad=True)
    loss = distillation_loss(new, torch.tensor([[math.log(3.0)]]), temperature=1.0, kind="sigmoid")
    loss.backward()
    assert float(loss.detach()) == pytest.approx(math.log(2.0)) and float(new.grad) == pytest.approx(-0.25)


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_distillation_gradient(kind, temperature):
    torch.manual_seed(0)
    new = torch.randn(6, 4, requires_grad=True)
    old = torch.randn(6, 4)
    distillation_loss(new, old, temperature, kind).backward()
    t = temperature
    if kind == "softmax":  # T (p_new - p_old) / N
        want = t * ((new / t).softmax(-1) - (old / t).softmax(-1)) / 6
    else:  # T (q_new - q_old) / (N K)
        want = t * ((new / t).sigmoid() - (old / t).sigmoid()) / 24
    torch.testing.assert_close(new.grad, want.detach(), rtol=1e-5, atol=1e-7)


def test_softmax_distillation_is_zero_only_when_the_distributions_agree():
    torch.manual_seed(0)
    z = torch.randn(5, 3)
    assert float(distillation_loss(z, z.clone())) == pytest.approx(0.0, abs=1e-6)
    assert float(distillation_loss(z + 7.0, z)) == pytest.approx(0.0, abs=1e-6)  # softmax ignores a shift
    assert float(distillation_loss(z * 2, z)) > 1e-3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((torch.zeros(2, 3), torch.zeros(2, 4)), "differ"),
        ((torch.zeros(2, 3), torch.zeros(2, 3), 0.0), "temperature must be > 0"),
        ((torch.zeros(2, 3), torch.zeros(2, 3), 1.0, "l2"), "'softmax' or 'sigmoid'"),
    ],
)
def test_distillation_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        distillation_loss(*args)


def _extended(name: str, old_n: int, new_n: int, batch=None, **kwargs) -> tuple[nn.Module, nn.Module]:
    """(old model, the model extended from it). With a training ``batch``, the old model's BatchNorm
    statistics are first set to that batch's, as a trained model's would be (not the initial 0 and 1)."""
    torch.manual_seed(0)
    old = create_model(name, num_classes=old_n, **kwargs)
    if batch is not None:
        for m in old.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = None  # one pass: the running statistics are that pass's
        with torch.no_grad():
            old.train()(*batch)
    old.eval()
    torch.manual_seed(1)
    new = create_model(name, num_classes=new_n, **kwargs)
    keys = class_keys(name, {"num_classes": new_n, **kwargs})
    names = [str(i) for i in range(new_n)]
    extend_head(new, old.state_dict(), keys, names[:old_n], names, "old")
    return old, new


def test_lwf_task_adds_the_distillation_term_for_a_segmenter():
    old, model = _extended("unet", 3, 4, width=8, depth=2)
    torch.manual_seed(2)
    x, y = torch.rand(2, 3, 32, 32), torch.randint(0, 4, (2, 32, 32))
    task = SegmentationTask(4, class_names=["bg", "a", "b", "c"])
    with torch.no_grad():
        model.head.weight[:3] += 0.3 * torch.randn_like(model.head.weight[:3])  # the old classes drifted
    reference = copy.deepcopy(model)
    lwf = LwFTask(task, model, old, weight=0.5, temperature=2.0)
    assert (lwf.name, lwf.main_metric, lwf.out_channels) == ("segment", task.main_metric, 4)
    loss, parts = lwf.train_step(model.train(), (x, y), torch.device("cpu"))
    task_loss, _ = task.train_step(reference.train(), (x, y), torch.device("cpu"))
    with torch.no_grad():  # the same outputs computed independently: new (train mode) vs old (eval mode)
        want = distillation_loss(reference(x)[:, :3].movedim(1, -1), old(x).movedim(1, -1), 2.0)
    assert float(parts["distill"]) == pytest.approx(float(want), rel=1e-5) and float(want) > 1e-3
    assert float(loss.detach()) == pytest.approx(float(task_loss.detach()) + 0.5 * float(want), rel=1e-5)
    loss.backward()
    assert model.head.weight.grad is not None and float(model.head.weight.grad[:3].abs().sum()) > 0
    assert all(p.grad is None for p in old.parameters())  # the teacher does not learn


def test_lwf_task_for_a_classifier():
    from detseg.engine.classify import ClassificationTask

    old, model = _extended("resnet18_classifier", 2, 3)
    torch.manual_seed(2)
    x, y = torch.rand(4, 3, 64, 64), torch.tensor([0, 1, 2, 2])
    task = LwFTask(ClassificationTask(3), model, old, weight=1.0, temperature=2.0)
    _, parts = task.train_step(model.eval(), (x, y), torch.device("cpu"))  # eval: BatchNorm as the teacher's
    assert float(parts["distill"]) == pytest.approx(0.0, abs=1e-6)  # the extension kept the old logits
    with torch.no_grad():
        model.head.weight[:2] += 0.5 * torch.randn_like(model.head.weight[:2])
    _, parts = task.train_step(model.eval(), (x, y), torch.device("cpu"))
    assert float(parts["distill"]) > 1e-3


class _DistillOnly:
    """A task whose own loss is 0, so that LwFTask's loss is the distillation term alone."""

    def __init__(self, task):
        self.task, self.name, self.main_metric = task, task.name, task.main_metric

    def train_step(self, model, batch, device):
        loss, parts = self.task.train_step(model, batch, device)
        return loss * 0.0, parts


# RetinaNet takes SSD's path (backbone and head hooks) with the sigmoid loss tested above.
DETECTORS = [
    ("ssdlite320_mobilenet_v3_large", "head.classification_head.module_list.0.1.weight"),
    ("rfcn_resnet18", "roi_heads.box_predictor.cls_maps.weight"),
    ("fasterrcnn_mobilenet_v3_large_320_fpn", "roi_heads.box_predictor.cls_score.weight"),
]


@pytest.mark.parametrize(("name", "class_layer"), DETECTORS)
def test_lwf_on_detectors_matches_the_old_outputs_at_extension(name, class_layer):
    torch.manual_seed(3)
    images = [torch.rand(3, 64, 64), torch.rand(3, 64, 64)]
    boxes = torch.tensor([[4.0, 6.0, 30.0, 34.0], [30.0, 20.0, 60.0, 58.0]])
    old_targets = [
        {"boxes": boxes, "labels": torch.tensor([0, 1])},
        {"boxes": boxes[:1], "labels": torch.tensor([1])},
    ]
    old, model = _extended(name, 2, 3, batch=(images, old_targets), size=64)
    for m in model.modules():  # BatchNorm as in the teacher: the extended model is then exactly it
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            keep_eval(m)
    targets = [
        {"boxes": boxes, "labels": torch.tensor([0, 2])},
        {"boxes": boxes[:1], "labels": torch.tensor([1])},
    ]
    lwf = LwFTask(_DistillOnly(DetectionTask(3)), model, old, weight=1.0, temperature=2.0)
    weight = model.get_parameter(class_layer)

    loss, parts = lwf.train_step(model.train(), (images, targets), torch.device("cpu"))
    assert "distill" in parts and {"loss_box_reg", "bbox_regression"} & set(parts)
    loss.backward()
    assert float(weight.grad.abs().max()) < 1e-6  # the old classes' outputs are the teacher's
    if lwf.kind == "softmax":
        assert float(parts["distill"]) == pytest.approx(0.0, abs=1e-5)

    with torch.no_grad():  # old classes' weights drift (as naive fine-tuning would make them)
        weight.add_(0.05 * torch.randn_like(weight))
    model.zero_grad()
    loss, parts = lwf.train_step(model.train(), (images, targets), torch.device("cpu"))
    loss.backward()
    assert float(weight.grad.abs().max()) > 1e-6  # distillation pulls them back
    if lwf.kind == "softmax":
        assert float(parts["distill"]) > 1e-5


def test_lwf_refuses_an_unknown_model():
    with pytest.raises(ValueError, match="does not know the outputs"):
        LwFTask(DetectionTask(2), nn.Linear(2, 2), nn.Linear(2, 2))
