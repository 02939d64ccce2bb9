"""A segmentation run reads every label file before it trains: a bad one stops it with one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detseg.cli import main

SPEC = """task: segment
format: masks
root: .
classes: [road, car, sky]
ignore_index: 255
values: {0: 0, 1: 1, 2: 2, 11: ignore}
train: {images: train, masks: trainannot}
val: {images: val, masks: valannot}
"""


def make_frames(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(n):
            image = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / split / f"f{i}.png")
            label = rng.choice([0, 1, 2, 11], (24, 32)).astype(np.uint8)
            Image.fromarray(label).save(root / f"{split}annot" / f"f{i}.png")
    (root / "spec.yaml").write_text(SPEC)


def train(root: Path, capsys, *extra: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(["train", "--model", "unet", "--model-arg", "width=4", "--data", str(root / "spec.yaml"),
                 "--iters", "1", "--img-size", "16", "--out", str(root / "run"), "--quiet",
                 *extra])  # fmt: skip
    return code, [line for line in capsys.readouterr().err.splitlines() if "error" in line]


@pytest.mark.parametrize("extra", [(), ("--mosaic", "0.5")])
def test_a_label_value_outside_the_specs_values_names_the_file_and_the_value(tmp_path, capsys, extra):
    make_frames(tmp_path)
    label = tmp_path / "trainannot" / "f2.png"
    array = np.array(Image.open(label))
    array[3, 4] = 17
    Image.fromarray(array).save(label)
    code, errors = train(tmp_path, capsys, *extra)
    assert code == 2
    assert len(errors) == 1 and str(label) in errors[0] and "17" in errors[0]
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_missing_label_names_the_image_and_the_label_it_looked_for(tmp_path, capsys):
    make_frames(tmp_path)
    (tmp_path / "valannot" / "f1.png").unlink()
    code, errors = train(tmp_path, capsys)
    assert code == 2
    assert len(errors) == 1 and str(tmp_path / "val" / "f1.png") in errors[0] and "valannot" in errors[0]
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize("split", ["train", "val"])
def test_a_label_of_another_size_names_both_files(tmp_path, capsys, split):
    make_frames(tmp_path)
    label = tmp_path / f"{split}annot" / "f1.png"
    Image.fromarray(np.array(Image.open(label))[:20]).save(label)
    code, errors = train(tmp_path, capsys)
    assert code == 2
    assert len(errors) == 1 and str(label) in errors[0] and str(tmp_path / split / "f1.png") in errors[0]
    assert "32x20" in errors[0] and "32x24" in errors[0]
    assert not (tmp_path / "run" / "last.pt").exists()
