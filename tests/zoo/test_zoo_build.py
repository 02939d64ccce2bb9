"""``detseg zoo build``: a recipe on tiny generated data builds the same weights twice (same seed, same
threads), ``create_model(NAME, pretrained="zoo")`` loads them checking their SHA-256, and a missing
cache says which command builds it."""

from __future__ import annotations

import json

import pytest
import torch

from detseg.cli import main
from detseg.engine.checkpoint import load_checkpoint
from detseg.models.backbones import WeightsNotFoundError
from detseg.models.zoo import create_model
from detseg.zoo import build as zoo_build
from detseg.zoo.figures import load_figures

#: The unet recipe shrunk to seconds: 4 training images of 32 px, a U-Net 4 channels wide, one epoch.
TINY_UNET = {
    "synth": {**zoo_build.SHAPES_DATA, "image_size": 32, "num_train": 4, "num_val": 2,
              "object_size": (8, 16)},
    "spec": "segment.yaml", "metric": "miou",
    "train": dict(epochs=3, img_size=32, batch_size=4, optimizer="sgd", lr=0.01, seed=0,
                  model_args={"width": 4}),
}


def test_build_is_reproducible_cached_recorded_and_loaded_by_create_model(zoo_tmp, monkeypatch, capsys):
    monkeypatch.setitem(zoo_build.RECIPES, "unet", TINY_UNET)
    assert main(["zoo", "build", "unet", "--epochs", "1", "--device", "cpu"]) == 0
    assert "create_model('unet', pretrained='zoo')" in capsys.readouterr().out
    path, sha256, meta = zoo_build.zoo_checkpoint("unet")
    assert path == zoo_tmp.parent / "home" / "zoo" / "unet.pt"  # $DETSEG_HOME/zoo
    # The same recipe and seed through the API: the same bytes.
    again = zoo_build.build("unet", train_overrides={"epochs": 1, "device": "cpu"})
    assert again["sha256"] == sha256 and again["path"] == path and again["device"] == "cpu"

    figures = load_figures(zoo_tmp)["models"]["unet"]
    accuracy = figures["accuracy"]
    checkpoint = load_checkpoint(path)
    assert accuracy["value"] == round(checkpoint["metrics"]["miou"], 4) and accuracy["metric"] == "miou"
    assert accuracy["data"] == "synthetic shapes val (detseg synth --seed 0, 2 images, 32 px)"
    assert accuracy["img_size"] == 32 and accuracy["model_args"] == {"width": 4}  # the variant measured
    assert accuracy["how"]["command"].startswith("detseg zoo build unet --epochs 1 --device cpu")
    assert accuracy["how"]["machine"]["device"] == "cpu"
    assert figures["weights"]["sha256"] == sha256
    assert json.loads(path.with_suffix(".json").read_text())["sha256"] == sha256
    capsys.readouterr()
    assert main(["zoo", "list", "--task", "segment"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("unet "))
    assert "at 32 px, width=4" in row  # the table says which variant the accuracy is of

    model = create_model("unet", pretrained="zoo")  # built as trained: 4 channels wide, 4 classes
    assert meta["model_kwargs"]["width"] == 4 and model.zoo_meta["zoo"] == "unet"
    state = model.state_dict()
    assert state.keys() == checkpoint["model"].keys()
    assert all(torch.equal(state[k], v) for k, v in checkpoint["model"].items())
    assert model.eval()(torch.rand(1, 3, 32, 32)).shape == (1, 4, 32, 32)

    # Another class count (a new task): everything but the head loads.
    two = create_model("unet", pretrained="zoo:unet", num_classes=2)
    assert two.head.weight.shape[0] == 2 and "head.weight" not in two.pretrained_report.loaded
    assert torch.equal(two.state_dict()["encoder.levels.0.0.0.weight"],
                       checkpoint["model"]["encoder.levels.0.0.0.weight"])

    # A changed file no longer matches the recorded SHA-256: refused.
    checkpoint["model"]["head.weight"] = checkpoint["model"]["head.weight"] + 1
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="SHA-256 .* expected"):
        create_model("unet", pretrained="zoo")


def test_missing_zoo_weights_say_which_command_builds_them(capsys):
    with pytest.raises(WeightsNotFoundError, match=r"run `detseg zoo build unet_resnet18`"):
        create_model("unet_resnet18", pretrained="zoo")
    with pytest.raises(WeightsNotFoundError, match=r"zoo weights 'fcn8s_vgg16' are not built"):
        create_model("fcn8s_vgg16", pretrained="zoo")
    with pytest.raises(WeightsNotFoundError, match=r"no zoo recipe is named 'fcn8s_vgg16'"):
        zoo_build.zoo_checkpoint("fcn8s_vgg16")
    assert main(["zoo", "build", "no_such_recipe"]) == 2
    assert "no zoo recipe named 'no_such_recipe'; recipes: " in capsys.readouterr().err


def test_build_on_cuda_needs_a_gpu(monkeypatch, zoo_tmp, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["zoo", "build", "unet", "--device", "cuda"]) == 2
    assert "--device cuda: no CUDA GPU is available here" in capsys.readouterr().err
    assert not zoo_tmp.exists()


def _folder_dataset(root) -> str:
    """A tiny ImageFolder (train/val x red/blue, 4 + 2 images of 24 px each) and its spec."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        for c, name in enumerate(("red", "blue")):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 80, (24, 24, 3), dtype=np.uint8)
                pixels[..., 2 * c] += 150
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    spec = root / "spec.yaml"
    spec.write_text("task: classify\nformat: folder\nroot: .\ntrain: {images: train}\nval: {images: val}\n")
    return str(spec)


def test_a_classification_recipe_builds_and_loads(zoo_tmp, tmp_path, monkeypatch):
    recipe = {"task": "classify", "spec": _folder_dataset(tmp_path / "data"), "metric": "accuracy",
              "data": "red vs blue", "train": dict(epochs=1, img_size=32, batch_size=4, seed=0)}
    monkeypatch.setitem(zoo_build.RECIPES, "mobilenet_v3_large_classifier", recipe)
    first = zoo_build.build("mobilenet_v3_large_classifier", train_overrides={"device": "cpu"})
    again = zoo_build.build("mobilenet_v3_large_classifier", train_overrides={"device": "cpu"})
    assert first["sha256"] == again["sha256"]
    accuracy = load_figures(zoo_tmp)["models"]["mobilenet_v3_large_classifier"]["accuracy"]
    checkpoint = load_checkpoint(first["path"])
    assert accuracy["value"] == round(checkpoint["metrics"]["accuracy"], 4)
    assert accuracy["data"] == "red vs blue" and accuracy["metric"] == "accuracy"
    model = create_model("mobilenet_v3_large_classifier", pretrained="zoo")
    assert model.zoo_meta["classes"] == ["blue", "red"] and model.zoo_meta["img_size"] == 32
    assert all(torch.equal(model.state_dict()[k], v) for k, v in checkpoint["model"].items())
    assert model.eval()(torch.rand(1, 3, 32, 32)).shape == (1, 2)
