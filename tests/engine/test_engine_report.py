"""HTML reports of a saved model: ``detseg train --report DIR`` (best.pt on the validation split) and
``detseg eval det --weights --data --report DIR`` (galleries from the spec's images)."""

from __future__ import annotations

import json
import re

import pytest

from detseg.cli import main
from detseg.engine.run import evaluate
from tests.engine.test_engine_cli import TRAIN, make_data


def test_train_report_scores_best_pt_on_the_validation_split(tmp_path, capsys):
    spec = make_data(tmp_path)
    run, report = tmp_path / "run", tmp_path / "report"
    assert (
        main([*TRAIN, "--data", str(spec), "--iters", "4", "--out", str(run), "--report", str(report)]) == 0
    )
    assert f"report of best.pt on 'val' in {report / 'index.html'}" in capsys.readouterr().err
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["miou"] == pytest.approx(evaluate(run / "best.pt", spec, "val")["miou"], abs=1e-12)
    page = (report / "index.html").read_text()
    assert re.findall(r'<span class="file">([^<]+)</span>', page) != []
    assert set(re.findall(r'<span class="file">([^<]+)</span>', page)) == {"s6.png", "s7.png"}
    assert "image not found" not in page
    for src in re.findall(r'<img src="([^"]+)"', page):
        assert (report / src).is_file()


def test_eval_det_weights_report_finds_the_spec_images(tmp_path, capsys):
    from detseg.data.synthetic import SynthConfig, generate

    root = generate(SynthConfig(seed=3, num_train=4, num_val=3, image_size=(64, 64)), tmp_path / "shapes")
    spec = root / "detect.yaml"
    run = tmp_path / "det"
    model = ["--model", "ssdlite320_mobilenet_v3_large", "--model-arg", "size=64"]
    train = ["train", *model, "--img-size", "64", "--quiet"]
    assert main([*train, "--data", str(spec), "--iters", "2", "--batch-size", "2", "--out", str(run)]) == 0
    report = tmp_path / "report"
    args = ["eval", "det", "--weights", str(run / "best.pt"), "--data", str(spec), "--report", str(report)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "TIDE errors" in out and "not found" not in out
    page = (report / "index.html").read_text()
    names = set(re.findall(r'<span class="file">([^<]+)</span>', page))
    assert names and all(n.endswith(".png") for n in names)  # the spec's file names, not image ids
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["tide"]["counts"]) == {
        "classification", "localization", "both", "duplicate", "background", "missed",
    }  # fmt: skip
