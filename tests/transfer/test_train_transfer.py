"""Transfer learning through ``detseg train`` on synthetic shapes: extend a trained model to a new class
with LwF distillation and frozen stages, resume it, replace its head for other classes, and say no to
settings that cannot work (each with a one-line error)."""

from __future__ import annotations

import pytest
import torch

from detseg.cli import main
from detseg.data.synthetic import SynthConfig, generate
from detseg.engine.checkpoint import load_checkpoint
from detseg.engine.logging import read_csv
from detseg.engine.run import train

UNET = ["--model", "unet", "--model-arg", "depth=2", "--model-arg", "width=4", "--img-size", "64"]
COMMON = ["--scale-range", "1", "1", "--batch-size", "2", "--lr", "0.03", "--optimizer", "adamw"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two synthetic data sets: the old classes (circle, square) and the old classes + triangle."""
    root = tmp_path_factory.mktemp("transfer")
    out = {}
    for name, classes in (("old", ("circle", "square")), ("new", ("circle", "square", "triangle"))):
        config = SynthConfig(
            seed=1, image_size=64, num_train=4, num_val=2, classes=classes, object_size=(16, 32),
            objects_per_image=(1, 2),
        )  # fmt: skip
        out[name] = generate(config, root / name)
    out["root"] = root
    return out


def _train(*args: str) -> int:
    return main(["train", *UNET, *COMMON, *args])


def _encoder_level(state: dict, level: int) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith(f"encoder.levels.{level}.")}


def test_extend_distill_resume_and_replace_head_through_the_cli(data, capsys):
    root = data["root"]
    old_run, new_run, other_run = root / "run_old", root / "run_new", root / "run_other"
    old_spec, new_spec = data["old"] / "segment.yaml", data["new"] / "segment.yaml"
    assert _train("--data", str(old_spec), "--iters", "2", "--out", str(old_run), "--quiet") == 0
    old = load_checkpoint(old_run / "last.pt")
    assert old["meta"]["classes"] == ["background", "circle", "square"]

    # Add "triangle": the old head's rows are kept, the first stage frozen, the old model distilled.
    argv = ["--data", str(new_spec), "--iters", "2", "--out", str(new_run)]
    argv += ["--extend-from", str(old_run / "last.pt"), "--distill", "1.0", "--freeze", "stages:1"]
    capsys.readouterr()
    assert _train(*argv) == 0
    err = capsys.readouterr().err
    assert f"extended head from {old_run / 'last.pt'}" in err and "with ['triangle']" in err
    assert "--freeze stages:1: froze 1 of 3 backbone stages" in err
    new = load_checkpoint(new_run / "last.pt")
    transfer = new["meta"]["transfer"]
    assert transfer["action"] == "extended head" and transfer["extended"] == ["head.bias", "head.weight"]
    assert transfer["old_classes"] == ["background", "circle", "square"]
    assert transfer["new_classes"] == ["background", "circle", "square", "triangle"]
    assert (transfer["distill"], transfer["temperature"]) == (1.0, 2.0)
    assert transfer["freeze"].startswith("froze 1 of 3")
    assert new["model"]["head.weight"].shape[0] == 4
    # The frozen stage is exactly the old model's after two steps; the next stage has trained.
    for k, v in _encoder_level(old["model"], 0).items():
        assert torch.equal(new["model"][k], v), k
    assert any(not torch.equal(new["model"][k], v) for k, v in _encoder_level(old["model"], 1).items())
    steps = read_csv(new_run / "steps.csv")
    assert len(steps) == 2 and all(float(r["distill"]) >= 0 for r in steps)
    assert float(steps[0]["loss"]) > float(steps[0]["distill"]) > 0  # the term is part of the loss

    # Resuming keeps the transfer settings; another --freeze is refused with the reason.
    assert _train("--data", str(new_spec), "--iters", "3", "--out", str(new_run), "--resume", "--quiet") == 0
    assert len(read_csv(new_run / "steps.csv")) == 3
    capsys.readouterr()
    argv = ["--data", str(new_spec), "--iters", "4", "--out", str(new_run), "--resume", "--freeze", "none"]
    assert _train(*argv) == 2
    err = capsys.readouterr().err
    assert (
        "the run was trained with freeze='stages:1', not 'none'" in err and len(err.strip().splitlines()) == 1
    )
    argv = [
        "--data",
        str(new_spec),
        "--iters",
        "4",
        "--out",
        str(new_run),
        "--resume",
        "--lr-backbone",
        "0.001",
    ]
    assert _train(*argv) == 2
    assert "trained with lr_backbone=None, not 0.001" in capsys.readouterr().err

    # --pretrained with other classes (here: one more): a new head, everything else the source's.
    argv = ["--data", str(new_spec), "--iters", "1", "--out", str(other_run), "--pretrained"]
    argv += [str(old_run / "best.pt"), "--freeze", "stages:1", "--lr-backbone", "0.001"]
    assert _train(*argv) == 0
    assert "replaced head from" in capsys.readouterr().err
    other = load_checkpoint(other_run / "last.pt")
    assert other["meta"]["transfer"]["replaced"] == ["head.bias", "head.weight"]
    assert other["meta"]["transfer"]["action"] == "replaced head"
    for k, v in _encoder_level(old["model"], 0).items():  # frozen: the source's weights
        assert torch.equal(other["model"][k], v), k
    # The trainable encoder levels learn at --lr-backbone, the rest at --lr.
    assert {g["initial_lr"] for g in other["optimizer"]["param_groups"]} == {0.03, 0.001}

    # The same classes: everything loads, unless --new-head asks for a new head.
    for extra, action in (([], "loaded"), (["--new-head"], "replaced head")):
        argv = ["--data", str(old_spec), "--iters", "1", "--out", str(root / f"same{len(extra)}"), "--quiet"]
        summary_run = root / f"same{len(extra)}" / "last.pt"
        assert _train(*argv, "--pretrained", str(old_run / "last.pt"), *extra) == 0
        assert load_checkpoint(summary_run)["meta"]["transfer"]["action"] == action


def test_bad_transfer_arguments_are_one_line_errors(data, capsys):
    root, old_spec = data["root"], data["old"] / "segment.yaml"
    run = root / "run_bad"
    cases = [
        (["--distill", "1"], "--distill needs --extend-from"),
        (["--freeze", "stages:x"], "--freeze 'stages:x': choose backbone | stages:N | bn | none"),
        (["--freeze", "stages:9"], "has only 3 backbone stages"),
        (["--lr-backbone", "-1"], "--lr-backbone must be >= 0"),
        (["--extend-from", "a.pt", "--pretrained", "b.pt"], "give one"),
    ]
    for extra, message in cases:
        capsys.readouterr()
        assert _train("--data", str(old_spec), "--iters", "1", "--out", str(run), "--quiet", *extra) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_extending_to_classes_in_another_order_is_refused(data, tmp_path, capsys):
    old_run = tmp_path / "old"
    assert (
        _train("--data", str(data["new"] / "segment.yaml"), "--iters", "1", "--out", str(old_run), "--quiet")
        == 0
    )
    # The old model knows circle, square, triangle; the data has only circle, square.
    argv = ["--data", str(data["old"] / "segment.yaml"), "--iters", "1", "--out", str(tmp_path / "x")]
    capsys.readouterr()
    assert _train(*argv, "--extend-from", str(old_run / "last.pt"), "--quiet") == 2
    assert "old classes in the same order followed by the new ones" in capsys.readouterr().err


def test_detector_extended_with_distillation_through_the_api(data, tmp_path):
    """SSDLite (per-anchor interleaved class columns) through the trainer: LwF with COCO validation."""
    common = dict(img_size=64, iters=2, batch_size=2, lr=0.01, quiet=True, plots=False, zoom_out=1.0)
    old_run = tmp_path / "old"
    train("ssdlite320_mobilenet_v3_large", data["old"] / "detect.yaml", old_run, **common)
    summary = train(
        "ssdlite320_mobilenet_v3_large",
        data["new"] / "detect.yaml",
        tmp_path / "new",
        extend_from=old_run / "last.pt",
        distill=2.0,
        temperature=1.0,
        freeze="backbone",
        **common,
    )
    transfer = summary["transfer"]
    assert transfer["action"] == "extended head" and len(transfer["extended"]) == 12  # 6 maps x (w, b)
    assert transfer["new_classes"] == ["circle", "square", "triangle"]
    assert transfer["freeze"].startswith("froze 5 of 5 backbone stages")
    assert "AP" in summary["last"]  # validated by COCO AP on the three classes
    steps = read_csv(tmp_path / "new" / "steps.csv")
    assert all(float(r["distill"]) >= 0 for r in steps) and len(steps) == 2


def test_a_classifier_checkpoint_as_a_segmenters_frozen_encoder(data, tmp_path):
    """The lecture's feature extraction: a (here detseg-trained) classifier's ResNet under a U-Net decoder."""
    from detseg.engine.checkpoint import save_checkpoint
    from detseg.models.zoo import create_model

    torch.manual_seed(5)
    classifier = create_model("resnet18_classifier", num_classes=2)
    meta = {"model": "resnet18_classifier", "task": "classify", "classes": ["ant", "bee"]}
    source = save_checkpoint({"model": classifier.state_dict(), "meta": meta}, tmp_path / "cls.pt")
    run = tmp_path / "seg"
    summary = train(
        "unet_resnet18", data["new"] / "segment.yaml", run, pretrained=str(source), freeze="backbone",
        img_size=64, iters=1, batch_size=2, quiet=True, plots=False, scale_range=(1.0, 1.0),
    )  # fmt: skip
    assert summary["transfer"]["action"] == "pre-trained backbone"
    assert summary["transfer"]["summary"].startswith("loaded 120 tensors")  # ResNet-18's, not its fc
    trained = load_checkpoint(run / "last.pt")["model"]
    for k, v in classifier.state_dict().items():
        if k.startswith("encoder."):
            assert torch.equal(trained[k], v), k
