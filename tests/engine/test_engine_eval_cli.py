"""``detseg eval seg|det --weights RUN/best.pt --data SPEC``: a saved model scored on a split."""

from __future__ import annotations

import json

import pytest

from detseg.cli import main
from detseg.engine.run import evaluate, run_evaluation
from detseg.metrics.coco import evaluate as coco_evaluate
from tests.engine.test_engine_cli import TRAIN, make_data


def test_eval_seg_with_weights_reports_the_models_metrics(tmp_path, capsys):
    spec = make_data(tmp_path)
    run = tmp_path / "run"
    assert main([*TRAIN, "--data", str(spec), "--iters", "4", "--out", str(run)]) == 0
    out = tmp_path / "m.json"
    args = ["eval", "seg", "--weights", str(run / "best.pt"), "--data", str(spec)]
    assert main([*args, "--json", str(out)]) == 0
    reported = json.loads(out.read_text())
    assert reported["miou"] == pytest.approx(evaluate(run / "best.pt", spec, "val")["miou"], abs=1e-12)
    assert "iou_membrane" in capsys.readouterr().out
    # A detector's command on a segmenter, and half of the model options, are one-line errors.
    assert main(["eval", "det", "--weights", str(run / "best.pt"), "--data", str(spec)]) == 2
    assert main(["eval", "seg", "--weights", str(run / "best.pt")]) == 2
    assert "--weights and --data go together" in capsys.readouterr().err


def test_eval_det_with_weights_prints_the_coco_table_and_plots(tmp_path, capsys):
    from detseg.data.synthetic import SynthConfig, generate

    root = generate(SynthConfig(seed=3, num_train=4, num_val=3, image_size=(64, 64)), tmp_path / "shapes")
    spec = root / "detect.yaml"
    run = tmp_path / "det"
    model = ["--model", "ssdlite320_mobilenet_v3_large", "--model-arg", "size=64"]
    train = ["train", *model, "--img-size", "64"]
    assert main([*train, "--data", str(spec), "--iters", "2", "--batch-size", "2", "--out", str(run)]) == 0
    out, plots = tmp_path / "det.json", tmp_path / "plots"
    args = ["eval", "det", "--weights", str(run / "best.pt"), "--data", str(spec)]
    assert main([*args, "--json", str(out), "--plots", str(plots)]) == 0
    assert "Average Precision" in capsys.readouterr().out
    reported = json.loads(out.read_text())
    gt, results = run_evaluation(run / "best.pt", spec, "val").coco_inputs()
    assert len(gt["annotations"]) > 0
    expected = coco_evaluate(gt, results).stats
    assert reported["AP"] == pytest.approx(expected["AP"], abs=1e-12)
    assert reported["AR100"] == pytest.approx(expected["AR100"], abs=1e-12)
    assert (plots / "pr_all.png").is_file() and (plots / "confusion_matrix.png").is_file()
