"""``detseg data show --augment`` draws samples as training sees them: cropped to --img-size, jittered,
reproducible for a seed."""

from __future__ import annotations

import numpy as np
from PIL import Image

from detseg.cli import main
from tests.engine.test_train_bad_labels import make_frames


def drawn(folder):
    return {p.name: np.array(Image.open(p)) for p in sorted(folder.glob("train_*.png"))}


def test_augmented_samples_are_the_training_crops_and_repeat_for_a_seed(tmp_path):
    make_frames(tmp_path)
    spec = str(tmp_path / "spec.yaml")
    plain = ["data", "show", spec, "--split", "train", "--num", "2"]
    augmented = [*plain, "--augment", "--img-size", "64", "--scale-range", "1.5", "2",
                 "--color-jitter", "0.5", "--repeats", "2"]  # fmt: skip
    assert main([*plain, "--out", str(tmp_path / "plain")]) == 0
    assert main([*augmented, "--out", str(tmp_path / "a")]) == 0
    assert main([*augmented, "--out", str(tmp_path / "b")]) == 0
    assert main([*augmented, "--seed", "3", "--out", str(tmp_path / "c")]) == 0
    a, b, c = drawn(tmp_path / "a"), drawn(tmp_path / "b"), drawn(tmp_path / "c")
    assert len(a) == 4 and list(a) == list(b)  # two samples, two draws each
    assert all(np.array_equal(a[k], b[k]) for k in a)  # the same seed draws the same
    assert any(not np.array_equal(a[k], c[k]) for k in a)  # another seed, other crops
    first, second = list(a.values())[:2]  # two draws of one sample differ
    assert not np.array_equal(first, second)
    plain_shapes = {v.shape for v in drawn(tmp_path / "plain").values()}
    assert {v.shape for v in a.values()} != plain_shapes  # 64 px crops, not the 32x24 frames


def test_augment_on_a_classification_spec_is_refused_in_one_line(tmp_path, capsys):
    for cls in ("ant", "bee"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "train" / cls / "a.png")
    (tmp_path / "spec.yaml").write_text("task: classify\nformat: folder\nroot: .\ntrain: train\n")
    code = main(["data", "show", str(tmp_path / "spec.yaml"), "--augment", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "--augment" in capsys.readouterr().err
