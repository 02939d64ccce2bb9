"""Instance-level IoU (iIoU): a hand-worked case, and agreement with cityscapesScripts'
evalPixelLevelSemanticLabeling on a generated gtFine tree through ``detseg eval seg``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from detseg.cli import main
from detseg.data.cityscapes import TRAIN_CLASSES, instance_map, label_ids_to_train_ids
from detseg.metrics.evaluate import evaluate_segmentation_folders
from detseg.metrics.instance_iou import InstanceIoU


def test_hand_worked_iiou():
    # Classes: 0 road, 1 person (average instance size 10 px). 255 = void.
    target = np.array(
        [
            [0, 1, 1, 0, 255],
            [0, 1, 1, 0, 1],  # (1, 4): a person pixel without an instance (a crowd)
            [0, 0, 0, 1, 1],
            [0, 0, 0, 0, 0],
        ]
    )
    instances = np.zeros_like(target)
    instances[0:2, 1:3] = 1  # person A, 4 px
    instances[2, 3:5] = 2  # person B, 2 px
    pred = np.array(
        [
            [1, 1, 1, 0, 1],  # (0, 0): road as person, FP; (0, 4): void as person, not counted
            [0, 1, 0, 1, 1],  # A: 3 of 4 found; (1, 3): road as person, FP; (1, 4) crowd: no FP
            [0, 0, 0, 0, 0],  # B: missed
            [0, 0, 0, 0, 0],
        ]
    )
    metric = InstanceIoU(2, {1: 10.0})
    metric.update(pred, target, instances, np.array([-1, 1, 1]))
    out = metric.compute()
    # A: weight 10/4 -> iTP 3 * 2.5 = 7.5, iFN 1 * 2.5 = 2.5. B: weight 10/2 -> iTP 0, iFN 2 * 5 = 10.
    # FP = 2 (unweighted). iIoU = 7.5 / (7.5 + 2 + 12.5).
    assert out["iiou"][1] == pytest.approx(7.5 / 22)
    assert np.isnan(out["iiou"][0])  # road has no average instance size: no iIoU
    assert out["miiou"] == pytest.approx(7.5 / 22) and out["instances"] == [0, 2]
    # Plain IoU of person for contrast: TP 3 + crowd 1 = 4, FN 1 + 2, FP 2 -> 4/9; the missed small
    # person costs iIoU much more.
    assert (metric.tp[1], metric.fn[1], metric.fp[1]) == (3, 3, 2)


def test_iiou_accumulates_over_images_and_checks_inputs():
    metric = InstanceIoU(3, {2: 4.0})
    ones = np.full((2, 2), 2)
    metric.update(ones, ones, np.ones((2, 2), int), {1: 2})  # a perfect 4-px instance: iTP 4
    metric.update(np.zeros((2, 2), int), ones, np.ones((2, 2), int), {1: 2})  # missed: iFN 4
    assert metric.compute()["iiou"][2] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same"):
        metric.update(ones, ones, np.ones((3, 2), int), {1: 2})
    with pytest.raises(ValueError, match="no class"):
        metric.update(ones, ones, np.full((2, 2), 5), {1: 2})
    with pytest.raises(ValueError, match="avg_size"):
        InstanceIoU(3, {3: 4.0})


def test_instance_map_keeps_the_eight_evaluated_instance_classes():
    ids = np.array([[7, 24000, 24000, 26001], [24, 29000, 26001, 33002]], np.uint16)  # 29 = caravan
    instances, classes = instance_map(ids)
    assert classes.tolist() == [-1, 11, 13, 18]  # person, car, bicycle train ids; no caravan, no crowd
    assert instances.tolist() == [[0, 1, 1, 2], [0, 0, 2, 3]]


# Label ids used in the generated scenes: stuff, instance classes, and ignored ones (0 unlabeled,
# 4 static, 29 caravan).
EVALUATED = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
INSTANCE_LABELS = [24, 25, 26, 27, 28, 31, 32, 33]


def _scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    blocks = rng.choice([7, 8, 11, 21, 23], size=(h // 8, w // 8))  # road, sidewalk, building, ...
    label_ids = blocks.repeat(8, 0).repeat(8, 1).astype(np.uint8)
    label_ids[rng.random((h, w)) < 0.03] = 0  # scattered void
    label_ids[:4, :] = 4
    instance_ids = label_ids.astype(np.uint16)
    for n in range(int(rng.integers(4, 9))):
        label = int(rng.choice(INSTANCE_LABELS + [29]))
        y, x = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
        bh, bw = int(rng.integers(2, 20)), int(rng.integers(2, 24))
        label_ids[y : y + bh, x : x + bw] = label
        instance_ids[y : y + bh, x : x + bw] = label * 1000 + n
    y, x = int(rng.integers(0, h - 6)), int(rng.integers(0, w - 6))
    label_ids[y : y + 5, x : x + 6] = 24  # a crowd of persons: label id only in instanceIds
    instance_ids[y : y + 5, x : x + 6] = 24
    return label_ids, instance_ids


def _prediction(rng: np.random.Generator, label_ids: np.ndarray) -> np.ndarray:
    """Mostly right, with blobs of wrong evaluated classes (prediction in label ids)."""
    pred = np.where(np.isin(label_ids, EVALUATED), label_ids, 7).astype(np.uint8)
    h, w = pred.shape
    for _ in range(12):
        y, x = int(rng.integers(0, h - 3)), int(rng.integers(0, w - 3))
        pred[y : y + int(rng.integers(2, 14)), x : x + int(rng.integers(2, 14))] = rng.choice(EVALUATED)
    return pred


@pytest.fixture()
def gtfine(tmp_path):
    """A gtFine tree of 5 frames in 2 cities, predictions as train ids (ours) and label ids (reference)."""
    rng = np.random.default_rng(7)
    ours, theirs = tmp_path / "pred_train_ids", tmp_path / "pred_label_ids"
    ours.mkdir()
    theirs.mkdir()
    gt_files, ref_preds = [], []
    for i in range(5):
        city = ("aachen", "bremen")[i % 2]
        stem = f"{city}_{i:06d}_000019"
        for folder in (f"leftImg8bit/val/{city}", f"gtFine/val/{city}"):
            (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        label_ids, instance_ids = _scene(rng, 48, 64)
        Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(
            tmp_path / f"leftImg8bit/val/{city}/{stem}_leftImg8bit.png"
        )
        gt = tmp_path / f"gtFine/val/{city}/{stem}_gtFine_labelIds.png"
        Image.fromarray(label_ids).save(gt)
        Image.fromarray(instance_ids).save(tmp_path / f"gtFine/val/{city}/{stem}_gtFine_instanceIds.png")
        pred = _prediction(rng, label_ids)
        Image.fromarray(label_ids_to_train_ids(pred).astype(np.uint8)).save(ours / f"{stem}_leftImg8bit.png")
        Image.fromarray(pred).save(theirs / f"{stem}_pred.png")
        gt_files.append(str(gt))
        ref_preds.append(str(theirs / f"{stem}_pred.png"))
    spec = tmp_path / "cityscapes.yaml"
    spec.write_text(
        "task: segment\nformat: cityscapes\nval:\n  images: leftImg8bit/val\n  masks: gtFine/val\n"
    )
    return spec, ours, gt_files, ref_preds, tmp_path


def test_iiou_and_iou_equal_cityscapes_scripts_on_a_generated_gtfine_tree(gtfine, monkeypatch):
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as reference

    if not hasattr(np, "in1d"):  # removed in NumPy 2.4; the reference still calls it (flat np.isin)
        monkeypatch.setattr(np, "in1d", lambda a, b, invert=False: np.isin(a, b, invert=invert).ravel(),
                            raising=False)
    spec, ours, gt_files, ref_preds, tmp_path = gtfine
    reference.args.quiet = True
    reference.args.exportFile = str(tmp_path / "reference.json")
    expected = reference.evaluateImgLists(ref_preds, gt_files, reference.args)

    result = evaluate_segmentation_folders(spec, ours)["json"]
    assert result["classes"] == list(TRAIN_CLASSES)
    for c, name in enumerate(TRAIN_CLASSES):
        assert result["iou"][c] == pytest.approx(expected["classScores"][name], rel=1e-12, nan_ok=True), name
        assert result["iiou"][c] == pytest.approx(
            expected["classInstScores"][name], rel=1e-12, nan_ok=True
        ), name
    assert result["miiou"] == pytest.approx(expected["averageScoreInstClasses"], rel=1e-12)
    assert result["miou"] == pytest.approx(expected["averageScoreClasses"], rel=1e-12)
    defined = [result["iiou"][TRAIN_CLASSES.index(n)] for n in ("person", "car")]
    assert all(0 < v < 1 for v in defined)  # the case is not trivial


def test_eval_seg_prints_iiou_beside_iou(gtfine, capsys):
    spec, ours, *_, tmp_path = gtfine
    out_json = tmp_path / "scores.json"
    assert main(["eval", "seg", "--gt", str(spec), "--pred", str(ours), "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "iIoU" in text.splitlines()[0]
    saved = json.loads(out_json.read_text())
    assert f"iIoU {saved['miiou']:.4f}" in text
    person = next(line for line in text.splitlines() if line.startswith("person "))
    assert len(person.split()) == 5  # name, IoU, Dice, acc, iIoU
    road = next(line for line in text.splitlines() if line.startswith("road "))
    assert len(road.split()) == 4  # stuff: no iIoU


def test_eval_seg_of_a_checkpoint_gives_iiou_as_the_folder_evaluation_does(gtfine, tmp_path, capsys):
    """`eval seg --weights` on a Cityscapes spec: the model's own predictions, written to a folder and
    scored there, give the same iIoU as the checkpoint scored directly."""
    from detseg.engine.run import run_evaluation

    spec, *_ = gtfine
    run = tmp_path / "run"
    train = ["train", "--model", "unet", "--model-arg", "width=4", "--model-arg", "depth=2",
             "--data", str(spec), "--train-split", "val", "--val-split", "none", "--iters", "2",
             "--img-size", "32", "--out", str(run), "--quiet"]  # fmt: skip
    assert main(train) == 0
    task = run_evaluation(run / "last.pt", spec, "val", keep_predictions=True)
    direct = task.eval_end()
    pred_dir = tmp_path / "preds"
    pred_dir.mkdir()
    labels = (tmp_path / "gtFine").rglob("*_labelIds.png")
    stems = sorted(p.name.replace("_gtFine_labelIds.png", "") for p in labels)
    for stem, (pred, _) in zip(stems, task.kept, strict=True):
        Image.fromarray(pred.astype(np.uint8)).save(pred_dir / f"{stem}_leftImg8bit.png")
    folder = evaluate_segmentation_folders(spec, pred_dir)["json"]
    assert direct["miiou"] == pytest.approx(folder["miiou"], rel=1e-12)
    assert direct["iiou_person"] == pytest.approx(folder["iiou"][TRAIN_CLASSES.index("person")], rel=1e-12)
    assert main(["eval", "seg", "--weights", str(run / "last.pt"), "--data", str(spec)]) == 0
    assert "miiou" in capsys.readouterr().out
