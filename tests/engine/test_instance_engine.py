"""Instance segmentation in the engine: InstanceTask's box and mask AP (checked against pycocotools), the
confusion and error breakdown on masks, and Mask R-CNN through the command line: train on instance.yaml,
resume, freeze, the box branch alone on detect.yaml, ``eval det --iou-type segm``, ``predict``."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detseg.cli import main
from detseg.engine.checkpoint import load_checkpoint
from detseg.engine.run import run_evaluation
from detseg.engine.tasks import InstanceTask
from detseg.metrics.coco import evaluate as coco_evaluate
from detseg.metrics.errors import detection_confusion, error_breakdown


def _square(y1, x1, y2, x2, size=64) -> torch.Tensor:
    mask = torch.zeros(size, size, dtype=torch.uint8)
    mask[y1:y2, x1:x2] = 1
    return mask


class Oracle(torch.nn.Module):
    """Returns fixed detections (boxes, labels, scores, [N, 1, H, W] mask probabilities) for any image."""

    def __init__(self, output: dict):
        super().__init__()
        self.output = output

    def forward(self, images):
        return [self.output for _ in images]


def _scene():
    """Two objects of two classes; the model finds both boxes, but the second mask is a thin strip."""
    gt_masks = torch.stack([_square(10, 10, 30, 30), _square(40, 40, 60, 60)])
    target = {"boxes": torch.tensor([[10.0, 10, 30, 30], [40, 40, 60, 60]]), "labels": torch.tensor([0, 1]),
              "masks": gt_masks, "image_id": 1}
    strip = _square(40, 40, 45, 60)  # a quarter of the object: mask IoU 0.25, box IoU 1
    masks = torch.stack([gt_masks[0], strip]).float()[:, None] * 0.9  # [N, 1, H, W] probabilities
    output = {"boxes": target["boxes"].clone(), "labels": torch.tensor([0, 1]),
              "scores": torch.tensor([0.9, 0.8]), "masks": masks}
    return target, output


def test_instance_task_scores_boxes_and_masks_as_pycocotools():
    target, output = _scene()
    task = InstanceTask(2, ["square", "other"])
    task.eval_begin()
    task.eval_step(Oracle(output), ([torch.rand(3, 64, 64)], [target]), torch.device("cpu"))
    metrics = task.eval_end()
    assert metrics["AP50"] == pytest.approx(1.0) and metrics["mask_AP50"] == pytest.approx(0.5)
    assert task.main_metric == "mask_AP50"
    gt, results = task.coco_inputs()
    assert gt["annotations"][0]["area"] == 400.0  # the mask's pixels, as COCO's area
    coco_gt = COCO()
    coco_gt.dataset = json.loads(json.dumps(gt))
    coco_gt.createIndex()
    reference = COCOeval(coco_gt, coco_gt.loadRes(json.loads(json.dumps(results))), "segm")
    reference.evaluate(), reference.accumulate(), reference.summarize()
    assert metrics["mask_AP"] == pytest.approx(reference.stats[0], abs=1e-12)
    assert metrics["mask_AP50"] == pytest.approx(reference.stats[1], abs=1e-12)


def test_confusion_and_error_breakdown_on_masks():
    target, output = _scene()
    task = InstanceTask(2, ["square", "other"])
    task.eval_begin()
    task.eval_step(Oracle(output), ([torch.rand(3, 64, 64)], [target]), torch.device("cpu"))
    gt, results = task.coco_inputs()
    boxes = detection_confusion(gt, results, score_threshold=0.5, iou=0.5)
    masks = detection_confusion(gt, results, score_threshold=0.5, iou=0.5, iou_type="segm")
    assert np.array_equal(boxes.matrix, np.diag([1, 1, 0]))
    # The strip misses its object (last column) and is a false alarm (last row) at mask IoU 0.25.
    assert np.array_equal(masks.matrix, [[1, 0, 0], [0, 0, 1], [0, 1, 0]])
    kinds = error_breakdown(gt, results, 0.5, iou_type="segm")
    assert kinds == {"tp": 1, "duplicate": 0, "classification": 0, "localization": 1, "both": 0,
                     "background": 0, "missed": 1}
    assert error_breakdown(gt, results, 0.5)["tp"] == 2


TINY = ["--model", "maskrcnn_mobilenet_v3_large_fpn", "--img-size", "64", "--batch-size", "2",
        "--model-arg", "width_mult=0.5", "--model-arg", "fpn_channels=32", "--model-arg", "mask_channels=32",
        "--model-arg", "representation_size=64", "--model-arg", "anchor_sizes=[8,16,32,64,128]",
        "--model-arg", "box_detections_per_img=20", "--optimizer", "adamw", "--lr", "1e-3"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from detseg.data.synthetic import SynthConfig, generate

    root = tmp_path_factory.mktemp("shapes")
    config = SynthConfig(seed=3, num_train=4, num_val=2, image_size=(64, 64), object_size=(16, 32))
    return generate(config, root)


def test_mask_rcnn_trains_resumes_and_is_scored_and_predicted(shapes, tmp_path, capsys):
    spec, run = shapes / "instance.yaml", tmp_path / "run"
    assert main(["train", *TINY, "--data", str(spec), "--iters", "2", "--ema", "0.9", "--out", str(run)]) == 0
    assert main(["train", *TINY, "--data", str(spec), "--iters", "4", "--ema", "0.9", "--out", str(run),
                 "--resume"]) == 0
    state = load_checkpoint(run / "last.pt")
    assert state["meta"]["task"] == "detect" and state["meta"]["instance"] is True
    assert any("mask_predictor" in k for k in state["ema"]["model"])  # the averaged weights: mask head too
    with open(run / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert "val_mask_AP50" in rows[-1] and "val_AP50" in rows[-1] and "train_loss_mask" in rows[-1]
    assert int(rows[-1]["step"]) == 4

    out, plots = tmp_path / "segm.json", tmp_path / "plots"
    args = ["eval", "det", "--weights", str(run / "last.pt"), "--data", str(spec), "--iou-type", "segm"]
    capsys.readouterr()
    assert main([*args, "--json", str(out), "--plots", str(plots)]) == 0
    assert "COCO segm evaluation" in capsys.readouterr().out
    gt, results = run_evaluation(run / "last.pt", spec, "val").coco_inputs()
    assert results and all("segmentation" in r for r in results)
    reported = json.loads(out.read_text())
    assert reported["AP50"] == pytest.approx(coco_evaluate(gt, results, "segm").stats["AP50"], abs=1e-12)
    assert "confusion" in reported and (plots / "confusion_matrix.png").is_file()

    pred = tmp_path / "pred"
    assert main(["predict", "--weights", str(run / "last.pt"), "--source", str(shapes / "images/val"),
                 "--out", str(pred), "--score-threshold", "0.0"]) == 0
    written = json.loads((pred / "results.json").read_text())
    assert written and all(r["segmentation"]["size"] == [64, 64] for r in written)
    assert (pred / "000001.png").is_file() and (pred / "000002.png").is_file()

    # The Python API: the same masks as predict's results.json, drawn and written as COCO.
    from pycocotools import mask as mask_utils

    import detseg

    (result,) = detseg.load(run / "last.pt").predict(shapes / "images/val/000001.png", score_threshold=0.0)
    masks = result.instance_masks
    assert masks.dtype == torch.bool and masks.shape == (len(result.boxes), 64, 64) and len(masks) > 0
    coco = result.to_coco(image_id=1)
    assert [mask_utils.decode(r["segmentation"]).sum() for r in coco] == masks.sum((1, 2)).tolist()
    first = [r for r in written if r["image_id"] == 1]
    assert [r["segmentation"]["counts"] for r in first] == [r["segmentation"]["counts"] for r in coco]
    assert result.plot(tmp_path / "api.png").shape[2] == 3 and (tmp_path / "api.png").is_file()


def test_box_branch_alone_on_a_detect_spec_and_a_frozen_backbone(shapes, tmp_path, capsys):
    run = tmp_path / "boxes"
    common = ["train", *TINY, "--iters", "1", "--freeze", "backbone"]
    assert main([*common, "--data", str(shapes / "detect.yaml"), "--out", str(run)]) == 0
    assert "training the box branch only" in capsys.readouterr().err
    with open(run / "log.csv") as f:
        row = list(csv.DictReader(f))[-1]
    assert "train_loss_mask" not in row and "val_AP50" in row and "val_mask_AP50" not in row
    assert load_checkpoint(run / "last.pt")["meta"]["instance"] is False


def test_instance_spec_without_masks_is_refused_unless_boxes_only(shapes, tmp_path, capsys):
    """Boxes with no 'segmentation': one line naming the file and the annotation id, exit 2; with
    --boxes-only the same spec trains the box branch alone."""
    data = tmp_path / "bare"
    data.mkdir()
    for split in ("train", "val"):
        coco = json.loads((shapes / "annotations" / f"{split}.json").read_text())
        for ann in coco["annotations"]:
            ann.pop("segmentation", None)
        (data / f"{split}.json").write_text(json.dumps(coco))
    spec = data / "instance.yaml"
    spec.write_text(
        f"task: instance\nformat: coco\nroot: {shapes}\nclasses: [circle, square, triangle]\n"
        f"train: {{images: images/train, annotations: {data / 'train.json'}}}\n"
        f"val: {{images: images/val, annotations: {data / 'val.json'}}}\n"
    )
    common = ["train", *TINY, "--iters", "1", "--data", str(spec)]
    assert main([*common, "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err.strip()
    last = err.splitlines()[-1]  # after the settings the run prints
    assert "Traceback" not in err and "train.json" in last and "annotation id" in last
    assert "--boxes-only" in last
    run = tmp_path / "boxes"
    assert main([*common, "--boxes-only", "--out", str(run)]) == 0
    assert "--boxes-only: training the box branch only" in capsys.readouterr().err
    assert load_checkpoint(run / "last.pt")["meta"]["instance"] is False
