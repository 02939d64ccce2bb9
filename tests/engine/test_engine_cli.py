"""End to end through ``detseg.cli.main``: train a tiny U-Net on generated PNGs, resume, predict."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from detseg.cli import main
from detseg.engine.checkpoint import load_checkpoint
from detseg.engine.logging import read_csv
from detseg.engine.run import evaluate

SPEC = """\
task: segment
format: masks
channels: 1
classes: [membrane, cell]
values: {0: 0, 255: 1}        # as the ISBI membrane labels: 0 = membrane, 255 = cell
train: {images: images, masks: masks, list: [s0, s1, s2, s3, s4, s5]}
val: {images: images, masks: masks, list: [s6, s7]}
"""


def make_data(root, n=8, size=32, seed=0):
    """Greyscale cells (bright discs) on dark membrane; label 255 inside the cells, 0 elsewhere."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        label = np.zeros((size, size), np.uint8)
        for _ in range(3):
            cy, cx, r = rng.integers(4, size - 4), rng.integers(4, size - 4), rng.integers(3, size // 4)
            label[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 255
        image = np.clip(40 + 0.6 * label + rng.normal(0, 12, label.shape), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"s{i}.png")
        Image.fromarray(label).save(root / "masks" / f"s{i}.png")
    spec = root / "spec.yaml"
    spec.write_text(SPEC)
    return spec


TRAIN = [
    "train",
    "--model",
    "unet",
    "--model-arg",
    "depth=2",
    "--model-arg",
    "width=4",
    "--img-size",
    "32",
    "--scale-range",
    "1",
    "1",
    "--batch-size",
    "3",
    "--lr",
    "0.03",
    "--optimizer",
    "adamw",
    "--quiet",
]


def test_train_resume_predict_round_trip_values(tmp_path, capsys):
    spec = make_data(tmp_path)
    run = tmp_path / "run"
    # Six epochs, then resumed and extended to twelve (the schedule stretches to the new length).
    assert main([*TRAIN, "--data", str(spec), "--epochs", "6", "--out", str(run)]) == 0
    assert main([*TRAIN, "--data", str(spec), "--epochs", "12", "--out", str(run), "--resume"]) == 0
    rows = read_csv(run / "log.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(1, 13))
    assert float(rows[-1]["train_loss"]) < 0.5 * float(rows[0]["train_loss"])
    assert float(read_csv(run / "steps.csv")[8]["lr"]) > 0.0  # not stuck at the end of the first schedule
    best = load_checkpoint(run / "best.pt")
    assert best["metrics"]["miou"] > 0.8  # learning happened: bright discs on a dark background
    meta = best["meta"]
    assert meta["classes"] == ["membrane", "cell"]
    assert meta["values"] == {0: 0, 255: 1}
    assert (meta["model"], meta["model_kwargs"]["in_channels"], meta["img_size"]) == ("unet", 1, 32)
    for name in ("last.pt", "best.pt", "steps.csv", "loss.png", "metrics.png"):
        assert (run / name).is_file(), name

    # A 64 x 64 image: larger than the 32-pixel training crops, so prediction tiles it.
    src = tmp_path / "new"
    make_data(src, n=1, size=64, seed=5)
    out = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                "--weights",
                str(run / "best.pt"),
                "--source",
                str(src / "images"),
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    pred = np.asarray(Image.open(out / "s0.png"))
    truth = np.asarray(Image.open(src / "masks" / "s0.png"))
    assert pred.shape == (64, 64)
    assert set(np.unique(pred)) == {0, 255}  # class 1 written back as the data set's 255
    assert (pred == truth).mean() > 0.9
    overlay = np.asarray(Image.open(out / "overlay" / "s0.png"))
    assert overlay.shape[1:] == (512, 3) and overlay.shape[0] > 512  # enlarged 8x, a legend below

    # Evaluating the saved model on the val split gives the metrics stored with it during training.
    again = evaluate(run / "best.pt", spec, "val")
    assert again["miou"] == pytest.approx(best["metrics"]["miou"], abs=1e-9)
    assert again["loss"] == pytest.approx(best["metrics"]["loss"], rel=1e-4)


def test_spec_with_other_classes_is_refused_on_resume(tmp_path, capsys):
    spec = make_data(tmp_path)
    run = tmp_path / "run"
    assert main([*TRAIN, "--data", str(spec), "--iters", "1", "--out", str(run)]) == 0
    other = tmp_path / "other.yaml"
    other.write_text(SPEC.replace("[membrane, cell]", "[background, nucleus]"))
    assert main([*TRAIN, "--data", str(other), "--iters", "2", "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "['membrane', 'cell']" in err and "['background', 'nucleus']" in err
    with pytest.raises(
        ValueError, match=r"data's classes \['background', 'nucleus'\] disagree with the checkpoint's"
    ):
        evaluate(run / "last.pt", other)


def test_wrong_task_and_bad_arguments_are_one_line_errors(tmp_path, capsys):
    spec = make_data(tmp_path)
    with pytest.raises(SystemExit):
        main(["train", "--model", "unet", "--data", str(spec), "--epochs", "1", "--iters", "3"])
    assert main([*TRAIN, "--data", str(spec), "--epochs", "1", "--model-arg", "width"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
