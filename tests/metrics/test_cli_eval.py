"""``detseg eval det`` / ``detseg eval seg`` end to end: printed table, JSON keys, plots, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from detseg.cli import main
from detseg.metrics.coco import STAT_NAMES


def test_eval_det_coco_writes_json_and_plots(shared_data, tmp_path, capsys):
    d = shared_data / "coco_eval" / "faster_coco_eval_mini"
    out, plots = tmp_path / "m.json", tmp_path / "plots"
    rc = main(
        [
            "eval",
            "det",
            "--gt",
            str(d / "gt_dataset.json"),
            "--dt",
            str(d / "dt_dataset.json"),
            "--json",
            str(out),
            "--plots",
            str(plots),
        ]
    )
    assert rc == 0
    m = json.loads(out.read_text())
    assert set(STAT_NAMES) <= set(m)
    assert m["APm"] == pytest.approx(0.7920792079207921, abs=1e-12)  # PROVENANCE.md's bbox value
    assert set(m["per_category"]) == {"cloud", "heart", "arrow", "star"}
    assert {"threshold", "f1"} <= set(m["best_f1"]["all classes"])
    assert sum(m["confusion"]["matrix"][i][j] for i in range(4) for j in range(5)) > 0
    names = {p.name for p in plots.iterdir()}
    assert {"pr_all.png", "f1_all.png", "confusion_matrix.png", "pr_cloud.png"} <= names
    with Image.open(plots / "pr_all.png") as im:
        assert im.size[0] > 100
    printed = capsys.readouterr().out
    assert "Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ] = 0.695" in printed


def test_eval_det_bad_results_is_one_line_exit_2(shared_data, tmp_path, capsys):
    d = shared_data / "coco_eval" / "faster_coco_eval_mini"
    bad = tmp_path / "dt.json"
    bad.write_text(json.dumps([{"image_id": 99, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}]))
    assert main(["eval", "det", "--gt", str(d / "gt_dataset.json"), "--dt", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "99" in err and "image" in err


def test_eval_seg_on_label_folders(tmp_path, capsys):
    rng = np.random.default_rng(0)
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    conf = np.zeros((3, 3), np.int64)
    for i in range(3):
        t = rng.integers(0, 3, (16, 20))
        p = np.where(rng.random((16, 20)) < 0.7, t, rng.integers(0, 3, (16, 20)))
        t[:2] = 255  # void rows
        Image.fromarray(t.astype(np.uint8)).save(gt_dir / f"im{i}.png")
        Image.fromarray(p.astype(np.uint8)).save(pred_dir / f"im{i}.png")
        keep = t != 255
        np.add.at(conf, (t[keep], p[keep]), 1)
    out = tmp_path / "seg.json"
    assert main(["eval", "seg", "--gt", str(gt_dir), "--pred", str(pred_dir), "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["confusion"] == conf.tolist() and m["images"] == 3
    tp = np.diag(conf)
    iou = tp / (conf.sum(0) + conf.sum(1) - tp)
    assert m["miou"] == pytest.approx(iou.mean())
    assert "mIoU" in capsys.readouterr().out


def test_eval_seg_on_a_dataset_spec(tmp_path):
    rng = np.random.default_rng(1)
    for sub in ("images", "masks", "pred"):
        (tmp_path / sub).mkdir()
    conf = np.zeros((2, 2), np.int64)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(
            tmp_path / "images" / f"f{i}.png"
        )
        t = rng.integers(0, 2, (12, 10)).astype(np.uint8)
        t[0] = 255  # void
        p = np.where(rng.random((12, 10)) < 0.8, t % 255, 1 - t % 255).astype(np.uint8)
        Image.fromarray(t).save(tmp_path / "masks" / f"f{i}.png")
        Image.fromarray(p).save(tmp_path / "pred" / f"f{i}.png")
        keep = t != 255
        np.add.at(conf, (t[keep].astype(int), p[keep].astype(int)), 1)
    spec = tmp_path / "data.yaml"
    spec.write_text(
        "task: segment\nformat: masks\nclasses: [bg, fg]\nval:\n  images: images\n  masks: masks\n"
    )
    out = tmp_path / "seg.json"
    assert main(["eval", "seg", "--gt", str(spec), "--pred", str(tmp_path / "pred"), "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["confusion"] == conf.tolist() and m["classes"] == ["bg", "fg"]


def test_eval_seg_reads_predictions_in_the_specs_pixel_values(tmp_path):
    """Membrane-style 0/255 masks: predictions written as detseg predict writes them (the spec's values)
    and as class indices give the same confusion; a value in neither is refused naming the file."""
    rng = np.random.default_rng(2)
    for sub in ("images", "masks", "pred_values", "pred_index", "pred_bad"):
        (tmp_path / sub).mkdir()
    conf = np.zeros((2, 2), np.int64)
    for i in range(2):
        image = rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)
        Image.fromarray(image).save(tmp_path / "images" / f"s{i}.png")
        t = rng.integers(0, 2, (12, 10))
        p = np.where(rng.random((12, 10)) < 0.8, t, 1 - t)
        Image.fromarray((t * 255).astype(np.uint8)).save(tmp_path / "masks" / f"s{i}.png")
        Image.fromarray((p * 255).astype(np.uint8)).save(tmp_path / "pred_values" / f"s{i}.png")
        Image.fromarray(p.astype(np.uint8)).save(tmp_path / "pred_index" / f"s{i}.png")
        Image.fromarray(np.full((12, 10), 7, np.uint8)).save(tmp_path / "pred_bad" / f"s{i}.png")
        np.add.at(conf, (t.ravel(), p.ravel()), 1)
    spec = tmp_path / "data.yaml"
    spec.write_text(
        "task: segment\nformat: masks\nclasses: [membrane, cell]\nvalues: {0: 0, 255: 1}\n"
        "val:\n  images: images\n  masks: masks\n"
    )
    for pred in ("pred_values", "pred_index"):
        out = tmp_path / f"{pred}.json"
        argv = ["eval", "seg", "--gt", str(spec), "--pred", str(tmp_path / pred), "--json", str(out)]
        assert main(argv) == 0
        assert json.loads(out.read_text())["confusion"] == conf.tolist(), pred
    with pytest.raises(Exception, match="class 7"):
        from detseg.metrics.evaluate import evaluate_segmentation_folders

        evaluate_segmentation_folders(spec, tmp_path / "pred_bad")
