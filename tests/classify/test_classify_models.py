"""detseg.models.classifier: the registry's classifiers, torchvision state dicts, learning."""

from __future__ import annotations

import pytest
import torch
import torchvision

from detseg.models.zoo import create_model, list_models, model_info

CLASSIFIERS = ["resnet18_classifier", "resnet50_classifier", "mobilenet_v3_large_classifier"]


def test_registered_as_classify():
    assert set(CLASSIFIERS) <= set(list_models(task="classify"))
    assert model_info("resnet18_classifier").backbone == "resnet18"


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_contract_and_a_few_steps_of_learning(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3)
    assert model.backbone is model.encoder and model.head.out_features == 3
    # A tiny generated set: the class is which colour channel is bright.
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    images = torch.rand(6, 3, 32, 32) * 0.3
    images[torch.arange(6), labels] += 0.7
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    model.train()
    for _ in range(6):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses
    features = model.forward_features(images)
    assert features.shape == (6, model.num_features)
    model.reset_classifier(5)
    assert model.eval()(images[:2]).shape == (2, 5) and model.num_classes == 5


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_large"])
def test_torchvision_state_dict_loads_with_equal_outputs(tmp_path, arch):
    torch.manual_seed(1)
    reference = getattr(torchvision.models, arch)(weights=None).eval()
    path = tmp_path / f"{arch}.pth"
    torch.save(reference.state_dict(), path)
    x = torch.rand(2, 3, 64, 64)
    # Same class count: every tensor loads, the whole network equals torchvision's on normalised input.
    full = create_model(f"{arch}_classifier", num_classes=1000, pretrained=str(path)).eval()
    report = full.load_report
    assert not (report.missing or report.unexpected or report.mismatched)
    mean = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference((x - mean) / std)
        assert torch.allclose(full(x), expected, atol=1e-5)
        # A new class list: the backbone loads, the head is new (reported as mismatched and missing).
        two = create_model(f"{arch}_classifier", num_classes=2, pretrained=str(path)).eval()
        assert sorted(two.load_report.missing) == ["head.bias", "head.weight"]
        if arch.startswith("resnet"):
            reference.fc = torch.nn.Identity()
        else:
            reference.classifier[3] = torch.nn.Identity()
        assert torch.allclose(two.forward_features(x), reference((x - mean) / std), atol=1e-5)
    # A detseg checkpoint of the classifier loads back into it.
    torch.save({"model": two.state_dict(), "meta": {}}, tmp_path / "ckpt.pt")
    again = create_model(f"{arch}_classifier", num_classes=2, pretrained=str(tmp_path / "ckpt.pt")).eval()
    assert not again.load_report.missing
    with torch.no_grad():
        assert torch.equal(again(x), two(x))


def test_state_dict_keys_are_torchvisions():
    model = create_model("resnet18_classifier", num_classes=2)
    keys = set(model.state_dict())
    tv = {
        f"encoder.{k}"
        for k in torchvision.models.resnet18(weights=None).state_dict()
        if not k.startswith("fc.")
    }
    assert keys == tv | {"head.weight", "head.bias"}
