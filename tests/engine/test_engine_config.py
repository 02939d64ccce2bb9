"""The typed run configuration: command line > spec train_defaults > model default_cfg > detseg, and the
test split scored once at the end of ``detseg train``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields

import pytest
from test_engine_cli import TRAIN, make_data

from detseg.cli import main
from detseg.engine.checkpoint import load_checkpoint
from detseg.engine.config import BASE_DEFAULTS, TUNABLE, RunConfig, resolve_config
from detseg.engine.run import evaluate
from detseg.models.zoo import list_models, model_info


@dataclass
class FakeInfo:
    name: str = "toy"
    default_cfg: dict = field(default_factory=dict)


@dataclass
class FakeSpec:
    train_defaults: dict | None = None


FAMILY = {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 1e-4, "batch_size": 8, "epochs": 30,
          "model_args": {"width": 16, "depth": 3}, "vflip": 0.1}  # fmt: skip


def test_each_setting_comes_from_the_first_layer_that_gives_it():
    given = RunConfig(model="toy", data="d.yaml", lr=0.02, model_args={"width": 8})
    rc = resolve_config(given, FakeInfo(default_cfg=FAMILY), FakeSpec({"vflip": 0.5, "rotate": 90}))
    assert (rc.lr, rc.sources["lr"]) == (0.02, "command line")
    assert (rc.vflip, rc.sources["vflip"]) == (0.5, "spec")  # the spec over the family
    assert (rc.rotate, rc.sources["rotate"]) == (90, "spec")
    assert (rc.batch_size, rc.sources["batch_size"]) == (8, "toy default")
    assert (rc.weight_decay, rc.sources["weight_decay"]) == (1e-4, "toy default")
    assert (rc.epochs, rc.sources["epochs"]) == (30, "toy default")  # no length given: the family's
    assert (rc.schedule, rc.sources["schedule"]) == (BASE_DEFAULTS["schedule"], "detseg")
    assert rc.model_args == {"width": 8, "depth": 3}  # merged key by key, the command line's win
    assert rc.test_split is None and rc.iters is None and "test_split" not in rc.sources
    described = rc.describe().splitlines()
    assert described[0].startswith("  command line: ") and "lr 0.02" in described[0]
    assert described[-1].startswith("  detseg: ") and "schedule poly" in described[-1]
    assert str(rc.out) == "runs/toy"
    # Nothing given: the family's recipe, whole.
    rc = resolve_config(RunConfig(model="toy", data="d.yaml"), FakeInfo(default_cfg=FAMILY))
    assert (rc.optimizer, rc.lr, rc.batch_size, rc.vflip) == ("adamw", 3e-3, 8, 0.1)


def test_a_run_describes_only_the_settings_its_task_uses():
    rc = resolve_config(RunConfig(model="toy", data="d", vflip=0.5, rotate=90.0, zoom_out=1.0), FakeInfo())
    detect, segment, classify = (rc.describe(task) for task in ("detect", "segment", "classify"))
    assert "vflip 0.5" in detect and "zoom_out 1.0" in detect and "rotate" not in detect  # boxes flip too
    assert "vflip 0.5" in segment and "rotate 90.0" in segment and "zoom_out" not in segment
    assert "vflip" not in classify and "rotate" not in classify


def test_another_optimizer_drops_the_familys_rates_and_a_length_drops_its_epochs():
    rc = resolve_config(
        RunConfig(model="toy", data="d", optimizer="sgd", time=2.0), FakeInfo(default_cfg=FAMILY)
    )
    assert (rc.lr, rc.weight_decay, rc.momentum) == (0.01, 1e-4, 0.9)  # SGD's base rates, not AdamW's 3e-3
    assert rc.sources["lr"] == "detseg" and rc.batch_size == 8  # the rest of the family's recipe stays
    assert rc.epochs is None and rc.time == 2.0  # --time alone: the family's epochs do not cap it
    rc = resolve_config(RunConfig(model="toy", data="d"), FakeInfo())
    assert (rc.optimizer, rc.lr, rc.weight_decay, rc.epochs) == ("sgd", 0.01, 1e-4, None)
    rc = resolve_config(RunConfig(model="toy", data="d", optimizer="adamw"), FakeInfo())
    assert (rc.lr, rc.weight_decay) == (1e-3, 1e-2)


def test_defaults_may_set_only_training_settings():
    with pytest.raises(ValueError, match="default_cfg of toy default: cannot set out, test_split"):
        resolve_config(
            RunConfig(model="toy", data="d"), FakeInfo(default_cfg={"out": "x", "test_split": "t"})
        )
    with pytest.raises(ValueError, match="train_defaults of the spec: cannot set device"):
        resolve_config(RunConfig(model="toy", data="d"), FakeInfo(), FakeSpec({"device": "cuda"}))
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'"):
        resolve_config(RunConfig(model="toy", data="d", optimizer="lamb"), FakeInfo())


def test_every_registered_default_cfg_resolves():
    """Each model family's registered recipe uses only settable names, a known optimizer and schedule."""
    with_defaults = 0
    for name in list_models():
        info = model_info(name)
        rc = resolve_config(RunConfig(model=name, data="d", epochs=1), info)
        assert set(info.default_cfg) <= set(TUNABLE), name
        assert rc.schedule in ("poly", "cosine", "constant") and rc.lr > 0, name
        with_defaults += bool(info.default_cfg)
    assert with_defaults >= 2  # at least U-Net's and SSDLite's measured recipes


def test_train_prints_its_settings_and_scores_the_test_split_once(tmp_path, capsys):
    spec = make_data(tmp_path / "data", n=10)
    spec.write_text(
        spec.read_text().replace("list: [s6, s7]}", "list: [s6, s7]}\ntest: {images: images, masks: masks, "
                                 "list: [s8, s9]}\ntrain_defaults: {vflip: 0.5}")
    )  # fmt: skip
    run = tmp_path / "run"
    loud = [a for a in TRAIN if a != "--quiet"]
    argv = [*loud, "--data", str(spec), "--epochs", "2", "--out", str(run), "--test-split", "test"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "settings by source" in err and "  spec: vflip 0.5" in err
    assert "last.pt on the test split 'test': miou" in err and "best.pt on the test split" in err
    saved = json.loads((run / "config.json").read_text())
    assert saved["sources"]["lr"] == "command line" and saved["config"]["vflip"] == 0.5
    assert saved["sources"]["vflip"] == "spec" and saved["config"]["test_split"] == "test"
    assert load_checkpoint(run / "last.pt")["config"]["extra"]["sources"]["vflip"] == "spec"
    result = json.loads((run / "test.json").read_text())
    assert result["split"] == "test" and set(result["scores"]) == {"last", "best"}
    for name in ("last", "best"):  # the very figures `detseg eval --split test` gives for that file
        expected = evaluate(run / f"{name}.pt", spec, "test")
        assert result["scores"][name]["miou"] == pytest.approx(expected["miou"], abs=1e-9)
    assert result["best_epoch"] == load_checkpoint(run / "best.pt")["epoch"]
    # The split that trains or chooses best.pt cannot be the one that scores.
    for split in ("val", "train"):
        assert main([*argv[:-1], split]) == 2
        assert "would not be out of sample" in capsys.readouterr().err
    assert main([*argv[:-1], "nope"]) == 2
    assert "has no such split" in capsys.readouterr().err


def test_a_specs_train_defaults_must_be_a_mapping(tmp_path):
    from detseg.data.errors import DataError
    from detseg.data.spec import load_spec

    spec = make_data(tmp_path / "data", n=8)
    spec.write_text(spec.read_text() + "train_defaults: [vflip]\n")
    with pytest.raises(DataError, match="train_defaults must be a mapping"):
        load_spec(spec)
    spec.write_text(spec.read_text().replace("[vflip]", "{vflip: 0.5, rotate: 90}"))
    loaded = load_spec(spec)
    assert loaded.train_defaults == {"vflip": 0.5, "rotate": 90} and set(loaded.splits) == {"train", "val"}


@pytest.mark.parametrize("length", [["--epochs", "0"], ["--iters", "-3"], ["--time", "0"]])
def test_a_run_length_that_is_not_positive_is_refused(tmp_path, capsys, length):
    spec = make_data(tmp_path / "data", n=8)
    run = tmp_path / "run"
    assert main([*TRAIN, "--data", str(spec), *length, "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"{length[0]} must be positive" in err and "Traceback" not in err
    assert not (run / "last.pt").exists()


def test_the_train_options_are_made_from_the_settings():
    """Every setting with an option has it in ``detseg train`` (help from its declaration, left out: None),
    and the trainer's config takes its fields and defaults from the same declarations."""
    import argparse

    from detseg.cli import build_parser
    from detseg.cli.train import add_setting_options
    from detseg.engine.config import OPTIMIZER_DEFAULTS, SETTINGS, base_text
    from detseg.engine.trainer import TrainConfig

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    actions: dict = {}
    for action in train._actions:  # the setting's own option first (--amp, then --no-amp)
        actions.setdefault(action.dest, action)
    for f in SETTINGS:
        if f.metadata["flag"] is None:
            assert f.name not in actions, f.name
            continue
        action = actions[f.name]
        flag = f.metadata["flag"] or "--" + f.name.replace("_", "-")
        assert action.option_strings == [flag]
        assert action.help == f.metadata["help"].replace("{base}", base_text(f.name))
        assert action.default is None or f.metadata["required"], f.name  # left out: not given
    assert actions["batch_size"].help.endswith("(base: 4)") and "0.001 for adamw" in actions["lr"].help
    assert actions["optimizer"].choices == tuple(OPTIMIZER_DEFAULTS)
    args = build_parser().parse_args(["train", "--model", "unet", "--data", "d.yaml", "--no-iou-crop"])
    assert args.iou_crop is False and args.amp is None and args.batch_size is None
    some = argparse.ArgumentParser()
    add_setting_options(some, ("lr", "vflip"))
    assert {a.dest for a in some._actions} == {"help", "lr", "vflip"}
    trainer = {f.name: f.default for f in fields(TrainConfig)}
    for name, default in trainer.items():
        if name not in ("out", "extra"):
            assert default == BASE_DEFAULTS.get(name, OPTIMIZER_DEFAULTS["sgd"].get(name)), name
    assert {"epochs", "batch_size", "lr", "freeze", "lr_backbone", "ema"} <= set(trainer)


def test_a_resumed_run_keeps_its_transfer_settings():
    saved = {"freeze": "stages:1", "lr_backbone": None, "distill": 1.0, "new_head": True}
    rc = resolve_config(RunConfig(model="toy", data="d", new_head=False), FakeInfo(), resumed=saved)
    assert (rc.freeze, rc.sources["freeze"]) == ("stages:1", "resumed run")
    assert rc.distill == 1.0 and rc.new_head is True and rc.lr_backbone is None
    with pytest.raises(ValueError, match="trained with lr_backbone=None, not 0.001"):
        resolve_config(RunConfig(model="toy", data="d", lr_backbone=0.001), FakeInfo(), resumed=saved)
    rc = resolve_config(RunConfig(model="toy", data="d"), FakeInfo())
    assert (rc.freeze, rc.distill, rc.temperature, rc.sources["freeze"]) == ("none", 0.0, 2.0, "detseg")
