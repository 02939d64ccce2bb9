"""The transfer study's machinery on tiny synthetic data with a handful of steps.

These runs are far too short to say anything about the lecture's claims (that is
benchmarks/transfer_study.py's job); they check that the study trains what it says it trains, scores
what it saves, skips what is done, and judges the claims correctly on hand-made numbers.
"""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch

from detseg.cli import main as cli_main
from detseg.data.dataset import build_dataset
from detseg.data.synthetic import SynthConfig, generate
from detseg.engine.checkpoint import load_checkpoint
from detseg.engine.run import evaluate
from detseg.transfer.report import check_claims
from detseg.transfer.study import ADD_CLASS_MODES, MODES, derive_spec, run_study
from detseg.transfer.study_config import StudyConfig

OLD = ("circle", "square", "triangle")
TINY = dict(image_size=48, object_size=(12, 24), objects_per_image=(1, 3))
SEG = dict(
    epochs=2,
    img_size=32,
    batch_size=2,
    optimizer="adamw",
    lr=0.01,
    device="cpu",
    model_args={"width": 4, "depth": 2},
)


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    """Source (plain, bright), shifted target (texture, dark) and the source domain with a new class."""
    root = tmp_path_factory.mktemp("domains")
    generate(SynthConfig(seed=0, num_train=4, num_val=3, classes=OLD, **TINY), root / "src")
    generate(
        SynthConfig(
            seed=1, num_train=4, num_val=3, classes=OLD, background="texture", palette="dark", **TINY
        ),
        root / "tgt",
    )
    generate(SynthConfig(seed=3, num_train=8, num_val=4, classes=(*OLD, "star"), **TINY), root / "joint")
    return root


@pytest.fixture(scope="module")
def seg_study(domains, tmp_path_factory):
    out = tmp_path_factory.mktemp("seg_study")
    return out, run_study(**seg_study_settings(domains, out))


def seg_study_settings(domains, out) -> dict:
    """The settings of the segmentation study: with an added class and its pseudo-labels."""
    src, tgt, joint = (domains / f"{d}/segment.yaml" for d in ("src", "tgt", "joint"))
    return dict(source=src, target=tgt, model="unet", out=out, add_class=joint, pseudo_labels=0.5, **SEG)


def test_report_has_every_row_and_file(seg_study):
    out, report = seg_study
    assert [r["mode"] for r in report["rows"]] == list(MODES)
    assert [r["mode"] for r in report["add_class"]["rows"]] == ["lwf", "pseudo", "naive", "joint"]
    assert ADD_CLASS_MODES == ("lwf", "naive", "joint")  # without pseudo_labels
    assert report["metric"] == "mIoU" and report["add_class"]["new_classes"] == ["star"]
    text = (out / "report.md").read_text()
    for row in report["rows"] + report["add_class"]["rows"]:
        assert row["label"] in text
    assert (
        len(report["claims"]) == 11
        and sum(text.count(f"**{s}**") for s in ("held", "did not hold", "too close to call", "n/a")) == 11
    )
    assert json.loads((out / "report.json").read_text())["rows"][2]["target"] == report["rows"][2]["target"]
    png = cv2.imread(str(out / "report.png"))
    assert png is not None and png.shape[0] > 100 and png.shape[1] > 100
    for mode in (
        "source",
        "feature_extraction",
        "fine_tuning",
        "scratch",
        "add_lwf",
        "add_pseudo",
        "add_naive",
        "add_joint",
    ):
        assert (out / "runs" / mode / "last.pt").is_file()


def test_json_scores_equal_evaluating_the_checkpoints_again(seg_study, domains):
    out, report = seg_study
    saved = json.loads((out / "report.json").read_text())
    folder = {"source": "src", "target": "tgt"}
    for row in saved["rows"]:
        for domain in ("source", "target"):
            again = evaluate(row["checkpoint"], domains / folder[domain] / "segment.yaml")
            assert row[domain] == pytest.approx(again["miou"], abs=1e-12), (row["mode"], domain)
    add = saved["add_class"]
    before = evaluate(out / "runs/source/last.pt", out / "data/old_classes.yaml")
    assert add["before_old"] == pytest.approx(np.mean([before[f"iou_{c}"] for c in OLD]), abs=1e-12)
    joint_new = None
    for row in add["rows"]:
        again = evaluate(row["checkpoint"], domains / "joint/segment.yaml")
        assert row["old"] == pytest.approx(np.mean([again[f"iou_{c}"] for c in OLD]), abs=1e-12)
        assert row["new"] == pytest.approx(again["iou_star"], abs=1e-12)
        assert row["old_kept_pct"] == pytest.approx(100 * row["old"] / add["before_old"])
        joint_new = row["new"]
    lwf = add["rows"][0]
    assert lwf["new_pct_of_joint"] == (pytest.approx(100 * lwf["new"] / joint_new) if joint_new else None)


def test_each_run_starts_from_what_it_says(seg_study):
    """Feature extraction keeps the source encoder exactly (BatchNorm statistics too) and has a new head;
    fine-tuning moves the encoder; from scratch does not start from the source weights; the add-a-class
    runs keep the old classes' head rows as their starting point (their head has one more class)."""
    out, _ = seg_study
    src = load_checkpoint(out / "runs/source/last.pt")["model"]
    fe = load_checkpoint(out / "runs/feature_extraction/last.pt")["model"]
    ft = load_checkpoint(out / "runs/fine_tuning/last.pt")["model"]
    scratch = load_checkpoint(out / "runs/scratch/last.pt")["model"]
    encoder = [k for k in src if k.startswith("encoder.") and src[k].is_floating_point()]
    assert encoder and all(torch.equal(fe[k], src[k]) for k in encoder)
    assert any(not torch.equal(ft[k], src[k]) for k in encoder)
    assert not torch.allclose(scratch[encoder[0]], src[encoder[0]])
    meta = load_checkpoint(out / "runs/feature_extraction/last.pt")["meta"]["transfer"]
    assert meta["new_head"] and meta["replaced"]
    for mode in (*ADD_CLASS_MODES, "pseudo"):
        state = load_checkpoint(out / f"runs/add_{mode}/last.pt")["model"]
        assert state["head.weight"].shape[0] == src["head.weight"].shape[0] + 1
    transfer = load_checkpoint(out / "runs/add_pseudo/last.pt")["meta"]["transfer"]
    assert (transfer["pseudo_labels"], transfer["distill"]) == (0.5, 1.0)


def test_rerun_skips_finished_runs_and_resumes_stopped_ones(seg_study, domains, capsys):
    out, report = seg_study
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/last.pt")}
    # A run that stopped after its last checkpoint but before it was scored: resumed, not redone.
    (out / "runs/scratch/result.json").unlink()
    capsys.readouterr()
    # The typed config names the same settings as the keywords did: every run is found.
    again = run_study(StudyConfig(**seg_study_settings(domains, out)))
    err = capsys.readouterr().err
    assert err.count("finished before, skipped") == 7
    assert "scratch: resuming" in err and "training on" not in err
    for a, b in zip(report["rows"], again["rows"], strict=True):
        assert a["source"] == b["source"] and a["target"] == b["target"]
    assert [r["old"] for r in again["add_class"]["rows"]] == [r["old"] for r in report["add_class"]["rows"]]
    changed = [p for p, t in stamps.items() if p.stat().st_mtime_ns != t]
    assert changed in ([], [out / "runs/scratch/last.pt"])  # the resumed run may rewrite its last.pt


def test_other_settings_in_the_same_folder_are_refused(seg_study, domains):
    out, _ = seg_study
    with pytest.raises(
        ValueError, match=r"runs/source was run with other settings \(epochs: \[2\] there, \[3\] now"
    ):
        run_study(
            domains / "src/segment.yaml", domains / "tgt/segment.yaml", "unet", out, **{**SEG, "epochs": 3}
        )


def test_derived_old_and_new_class_views(domains, tmp_path):
    """The old-classes view drops the new class's objects (detection) or paints them background
    (segmentation); the new-class view keeps only the new class, on the images that show it."""
    joint_det = build_dataset(domains / "joint/detect.yaml", "train")
    old = build_dataset(
        derive_spec(domains / "joint/detect.yaml", tmp_path / "o.yaml", list(OLD), ["train"]), "train"
    )
    new_spec = derive_spec(
        domains / "joint/detect.yaml", tmp_path / "n.yaml", ["star"], ["train"], all_classes=True
    )
    new = build_dataset(new_spec, "train")
    assert list(old.classes) == list(OLD) and list(new.classes) == [*OLD, "star"]
    with_star = [i for i in range(len(joint_det)) if (joint_det[i][1]["labels"] == 3).any()]
    assert len(with_star) == len(new) > 0
    for i in range(len(joint_det)):
        labels = joint_det[i][1]["labels"]
        assert torch.equal(old[i][1]["labels"], labels[labels != 3])
    for j, i in enumerate(with_star):
        labels, boxes = joint_det[i][1]["labels"], joint_det[i][1]["boxes"]
        assert torch.equal(new[j][1]["labels"], labels[labels == 3])
        assert torch.equal(torch.as_tensor(new[j][1]["boxes"]), torch.as_tensor(boxes)[labels == 3])

    joint_seg = build_dataset(domains / "joint/segment.yaml", "val")
    old_seg = build_dataset(
        derive_spec(domains / "joint/segment.yaml", tmp_path / "s.yaml", ["background", *OLD], ["val"]), "val"
    )
    new_seg = build_dataset(
        derive_spec(domains / "joint/segment.yaml", tmp_path / "t.yaml", ["star"], ["val"], all_classes=True),
        "val",
    )
    for i in range(len(joint_seg)):
        sem = torch.as_tensor(joint_seg[i][1]["semantic"])
        assert torch.equal(torch.as_tensor(old_seg[i][1]["semantic"]), torch.where(sem == 4, 0, sem))
        assert torch.equal(torch.as_tensor(new_seg[i][1]["semantic"]), torch.where(sem == 4, 4, 0))


def test_detection_study_scores_ap50_per_class(domains, tmp_path):
    """Detection: AP50 from each checkpoint again, and COCO's AP50 is the mean of the per-class AP50s."""
    report = run_study(
        domains / "src/detect.yaml",
        domains / "tgt/detect.yaml",
        "ssdlite320_mobilenet_v3_large",
        tmp_path,
        epochs=1,
        img_size=64,
        batch_size=2,
        device="cpu",
        modes=["as_is", "fine_tuning"],
    )
    assert report["metric"] == "AP50" and [r["mode"] for r in report["rows"]] == ["as_is", "fine_tuning"]
    for row in report["rows"]:
        assert row["target"] == pytest.approx(
            evaluate(row["checkpoint"], domains / "tgt/detect.yaml")["AP50"]
        )
    saved = json.loads((tmp_path / "runs/fine_tuning/result.json").read_text())["eval"]
    for scores in saved.values():
        per_class = [v for v in scores["per_class"].values() if v is not None and not math.isnan(v)]
        assert scores["metric"] == pytest.approx(np.mean(per_class) if per_class else 0.0)


# ---------------------------------------------------------------------------------------------- claims
def _report(rows: dict, before: float, add: dict | None = None) -> dict:
    report = {
        "metric": "AP50",
        "source_model": {"source": before},
        "rows": [{"mode": m, "source": s, "target": t} for m, (s, t) in rows.items()],
    }
    if add is not None:
        report["add_class"] = {
            "rows": [{"mode": m, "old_kept_pct": k, "new_pct_of_joint": n} for m, (k, n) in add.items()]
        }
    return report


def _statuses(report: dict) -> dict[str, str]:
    return {c["id"]: c["status"] for c in check_claims(report)}


def test_claims_hold_on_the_lecture_pattern():
    rows = {
        "as_is": (0.90, 0.30),
        "feature_extraction": (0.80, 0.60),
        "fine_tuning": (0.50, 0.85),
        "scratch": (0.10, 0.40),
    }
    add = {"lwf": (97.0, 85.0), "naive": (20.0, 110.0), "joint": (99.0, 100.0)}
    assert set(_statuses(_report(rows, 0.90, add)).values()) == {"held"}


def test_pseudo_label_claims_are_judged_when_that_run_exists():
    rows = {"fine_tuning": (0.5, 0.85)}
    base = {"lwf": (90.0, 85.0), "naive": (20.0, 110.0), "joint": (99.0, 100.0)}
    assert "pseudo_keeps_old" not in _statuses(_report(rows, 0.9, base))
    got = _statuses(_report(rows, 0.9, {**base, "pseudo": (96.0, 81.0)}))
    assert (got["pseudo_keeps_old"], got["pseudo_learns_new"]) == ("held", "held")
    assert got["lwf_keeps_old"] == "did not hold"
    got = _statuses(_report(rows, 0.9, {**base, "pseudo": (94.0, 79.0)}))
    assert (got["pseudo_keeps_old"], got["pseudo_learns_new"]) == ("did not hold", "did not hold")


def test_claims_fail_where_the_numbers_say_otherwise():
    rows = {
        "as_is": (0.90, 0.95),  # no domain gap
        "feature_extraction": (0.85, 0.90),  # above fine-tuning on the target, more source drop
        "fine_tuning": (0.92, 0.80),  # below as-is on the target, above it on the source
        "scratch": (0.10, 0.85),  # above fine-tuning
    }
    add = {"lwf": (94.9, 79.9), "naive": (96.0, 100.0), "joint": (99.0, 100.0)}
    got = _statuses(_report(rows, 0.90, add))
    assert set(got.values()) == {"did not hold"}, got


def test_differences_within_a_point_are_too_close_to_call():
    # The membrane study's pattern: every trained row within 0.1 point of the others.
    rows = {
        "as_is": (0.90, 0.605),
        "feature_extraction": (0.80, 0.606),
        "fine_tuning": (0.895, 0.610),
        "scratch": (0.10, 0.609),
    }
    add = {"lwf": (97.0, 85.0), "naive": (96.5, 110.0), "joint": (99.0, 100.0)}
    got = _statuses(_report(rows, 0.90, add))
    for key in ("fine_tuning_best", "fine_tuning_source_drop", "scratch_below", "naive_forgets"):
        assert got[key] == "too close to call", (key, got)
    assert got["as_is_low"] == "too close to call"  # far below the source, but level with the best
    assert got["feature_extraction_between"] == "held"  # ties are consistent with "between"
    assert got["feature_extraction_less_drop"] == "did not hold"  # 10 points more drop than fine-tuning


def test_claims_without_the_numbers_are_not_judged():
    # Target classes differ from the source's: no as-is row, no source scores after training.
    rows = {"feature_extraction": (None, 0.6), "fine_tuning": (None, 0.8), "scratch": (None, 0.5)}
    got = _statuses(_report(rows, 0.9))
    assert got["fine_tuning_best"] == "held" and got["scratch_below"] == "held"
    assert got["feature_extraction_between"] == "held"  # scratch 0.5 <= 0.6 <= 0.8
    for key in ("as_is_low", "fine_tuning_source_drop", "feature_extraction_less_drop", "lwf_keeps_old"):
        assert got[key] == "n/a"


# ---------------------------------------------------------------------------------------------- errors
def test_bad_arguments_are_refused_before_training(domains, tmp_path):
    src, tgt = domains / "src/segment.yaml", domains / "tgt/segment.yaml"
    with pytest.raises(ValueError, match="is a detect data set but target .* is a segment data set"):
        run_study(domains / "src/detect.yaml", tgt, "unet", tmp_path)
    with pytest.raises(ValueError, match="'ssdlite320_mobilenet_v3_large' is a detect model"):
        run_study(src, tgt, "ssdlite320_mobilenet_v3_large", tmp_path)
    with pytest.raises(ValueError, match="choose among as_is"):
        run_study(src, tgt, "unet", tmp_path, modes=["finetune"])
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        run_study(src, tgt, "unet", tmp_path, epochs=0)
    with pytest.raises(ValueError, match="no split 'holdout'"):
        run_study(src, tgt, "unet", tmp_path, target_split="holdout")
    assert not (tmp_path / "runs").exists()  # nothing trained
    # The classes of add_class must start with the source model's.
    with pytest.raises(
        ValueError, match=r"must be the source model's .* followed by one or more new classes"
    ):
        run_study(src, tgt, "unet", tmp_path, modes=["as_is"], add_class=tgt, **SEG)
    code = cli_main(
        [
            "transfer-study",
            "--source",
            str(domains / "src/detect.yaml"),
            "--target",
            str(tgt),
            "--model",
            "unet",
            "--out",
            str(tmp_path / "cli"),
        ]
    )
    assert code == 2


def test_train_args_the_study_sets_itself_are_refused_and_the_config_takes_no_keywords(domains, tmp_path):
    src, tgt = domains / "src/segment.yaml", domains / "tgt/segment.yaml"
    with pytest.raises(ValueError, match=r"train_args: cannot set resume, val_split for the study's runs"):
        run_study(src, tgt, "unet", tmp_path, train_args={"val_split": "val", "resume": "auto"})
    with pytest.raises(ValueError, match=r"train_args: cannot set epochs, lr_schedule "):
        run_study(StudyConfig(src, tgt, "unet", tmp_path, train_args={"lr_schedule": "x", "epochs": 3}))
    with pytest.raises(TypeError, match="takes no other arguments"):
        run_study(StudyConfig(src, tgt, "unet", tmp_path), epochs=3)
    assert not (tmp_path / "runs").exists()


def test_cli_runs_the_study_and_prints_the_report(seg_study, domains, capsys):
    """The command line maps its options to run_study's: the same settings find every run finished."""
    out, report = seg_study
    code = cli_main(
        [
            "transfer-study",
            "--source",
            str(domains / "src/segment.yaml"),
            "--target",
            str(domains / "tgt/segment.yaml"),
            "--model",
            "unet",
            "--out",
            str(out),
            "--epochs",
            "2",
            "--img-size",
            "32",
            "--batch-size",
            "2",
            "--optimizer",
            "adamw",
            "--lr",
            "0.01",
            "--device",
            "cpu",
            "--model-arg",
            "width=4",
            "--model-arg",
            "depth=2",
            "--add-class",
            str(domains / "joint/segment.yaml"),
            "--pseudo-labels",
            "0.5",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert captured.err.count("finished before, skipped") == 8
    assert "| fine-tuning (all layers) |" in captured.out and "claims held" in captured.out


def test_target_with_other_classes_has_no_as_is_row(domains, tmp_path):
    """Source shapes, target with another class list (like raccoon after shapes): the head is replaced,
    there is no as-is row and no source-domain score after training on the target."""
    generate(
        SynthConfig(seed=4, num_train=4, num_val=2, classes=("ellipse", "cross"), **TINY), tmp_path / "other"
    )
    report = run_study(
        domains / "src/segment.yaml",
        tmp_path / "other/segment.yaml",
        "unet",
        tmp_path / "study",
        modes=["as_is", "feature_extraction"],
        **SEG,
    )
    as_is, fe = report["rows"]
    assert as_is["skipped"] and as_is["source"] is None and as_is["target"] is None
    assert fe["source"] is None and fe["target"] == pytest.approx(
        evaluate(fe["checkpoint"], tmp_path / "other/segment.yaml")["miou"], abs=1e-12
    )
    assert report["source_model"]["source"] is not None and report["source_model"]["target"] is None
    claims = {c["id"]: c["status"] for c in report["claims"]}
    assert claims["as_is_low"] == claims["fine_tuning_source_drop"] == "n/a"
    assert "not run (source classes" in (tmp_path / "study/report.md").read_text()


def test_a_unet_study_trains_with_the_familys_recipe_unless_told(domains, tmp_path):
    """Settings left out of ``detseg transfer-study`` are not given: each run resolves them as ``detseg
    train`` would (U-Net's AdamW at 2e-3 and batch 4), while the ones given (--schedule) reach every run."""
    from detseg.models.default_cfgs import UNET

    out = tmp_path / "study"
    argv = ["transfer-study", "--source", str(domains / "src/segment.yaml"), "--target",
            str(domains / "tgt/segment.yaml"), "--model", "unet", "--out", str(out), "--modes", "scratch",
            "--epochs", "1", "--img-size", "32", "--device", "cpu", "--model-arg", "width=4",
            "--model-arg", "depth=2", "--schedule", "constant"]  # fmt: skip
    assert cli_main(argv) == 0
    for run in ("source", "scratch"):
        saved = json.loads((out / "runs" / run / "config.json").read_text())
        config, sources = saved["config"], saved["sources"]
        assert (config["optimizer"], config["lr"], config["batch_size"]) == ("adamw", UNET["lr"], 4), run
        assert sources["optimizer"] == sources["lr"] == sources["batch_size"] == "unet default", run
        assert (config["schedule"], sources["schedule"]) == ("constant", "command line"), run
    report = json.loads((out / "report.json").read_text())
    assert (report["settings"]["optimizer"], report["settings"]["batch_size"]) == ("adamw", 4)
    # Given, they win (a new folder: the runs are matched by their settings).
    given = ["--optimizer", "sgd", "--batch-size", "2"]
    assert cli_main([*argv[:8], str(tmp_path / "sgd"), *argv[9:], *given]) == 0
    config = json.loads((tmp_path / "sgd/runs/scratch/config.json").read_text())["config"]
    assert (config["optimizer"], config["batch_size"], config["lr"]) == ("sgd", 2, 0.01)
    sources = json.loads((tmp_path / "sgd/runs/scratch/config.json").read_text())["sources"]
    assert sources["optimizer"] == "command line" and sources["lr"] == "detseg"
