"""The model registry: list_models filters, the register_model decorator, create_model's arguments and
its error for unknown names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import detseg
from detseg.models import registry, zoo


def test_list_models_filters_by_task_and_pattern():
    every = zoo.list_models()
    by_task = {task: zoo.list_models(task=task) for task in ("detect", "segment", "classify")}
    # The tasks partition the registry, and each filtered name really has that task.
    assert sorted(sum(by_task.values(), [])) == every
    for task, names in by_task.items():
        assert names and all(zoo.model_info(n).task == task for n in names), task
    assert {"ssdlite320_mobilenet_v3_large", "fasterrcnn_resnet50_fpn"} <= set(by_task["detect"])
    assert {"unet", "fcn8s_vgg16", "deeplabv3_resnet50"} <= set(by_task["segment"])
    unets = zoo.list_models("unet*")
    assert unets == sorted(n for n in every if n.startswith("unet")) and "unet_resnet18" in unets
    assert zoo.list_models("*resnet18*", task="segment") == ["unet_resnet18"]
    assert zoo.list_models("no_such_*") == []
    assert detseg.list_models is zoo.list_models and detseg.create_model is zoo.create_model


def test_register_model_decorator_builds_by_name_with_metadata(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # the test's entry goes afterwards

    @zoo.register_model(task="classify", backbone="linear", input_size=(1, 4, 4), paper="none")
    def tiny_test_classifier(num_classes: int = 3, hidden: int = 5) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(16, hidden), nn.Linear(hidden, num_classes))

    assert "tiny_test_classifier" in zoo.list_models(task="classify")
    assert "tiny_test_classifier" not in zoo.list_models(task="detect")
    info = zoo.model_info("tiny_test_classifier")
    assert (info.task, info.backbone, info.input_size, info.extra) == ("classify", "linear", (1, 4, 4),
                                                                       {"paper": "none"})
    model = zoo.create_model("tiny_test_classifier", num_classes=7, hidden=2)
    assert model[2].out_features == 7 and model[1].out_features == 2
    with pytest.raises(ValueError, match="registered twice"):
        zoo.register_model(task="classify")(tiny_test_classifier)


def test_unknown_name_is_a_clear_error_with_close_matches():
    with pytest.raises(ValueError, match=r"unknown model 'unet_resnet19'; did you mean unet_resnet18") as err:
        zoo.create_model("unet_resnet19", num_classes=2)
    assert "detseg zoo list" in str(err.value)
    with pytest.raises(ValueError, match=r"unknown model 'zzz'; \(`detseg zoo list` shows all"):
        zoo.model_info("zzz")


def test_create_model_passes_keyword_arguments_to_the_builder():
    model = zoo.create_model("unet", num_classes=3, in_channels=1, width=4)
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 3, 32, 32)
    assert zoo.create_model("unet", num_classes=3, in_channels=1, width=4).state_dict().keys() == \
        model.state_dict().keys()
    with pytest.raises(TypeError, match="no_such_argument"):
        zoo.create_model("unet", no_such_argument=1)
