"""checkpoint -> ``detseg export`` -> ``detseg predict/eval --weights FILE.onnx``: the same outputs as the
checkpoint for one model of every family (segmenter, classifier, SSD-style, two-stage, R-FCN)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from export_toys import make_checkpoint, write_images
from PIL import Image

from detseg.cli import main
from detseg.export.onnx_export import compare_detections

pytest.importorskip("onnxruntime")


def _detections(folder: Path) -> dict[int, dict[str, torch.Tensor]]:
    """results.json of a predict run, per image id, as ``{boxes XYXY, labels, scores}``."""
    per_image: dict[int, list] = {}
    for r in json.loads((folder / "results.json").read_text()):
        x, y, w, h = r["bbox"]
        per_image.setdefault(r["image_id"], []).append(([x, y, x + w, y + h], r["category_id"], r["score"]))
    return {
        k: {
            "boxes": torch.tensor([b for b, _, _ in v]).reshape(-1, 4),
            "labels": torch.tensor([c for _, c, _ in v]),
            "scores": torch.tensor([s for _, _, s in v]),
        }
        for k, v in per_image.items()
    }


def _assert_same_detections(ref_dir: Path, onnx_dir: Path) -> int:
    ref, got = _detections(ref_dir), _detections(onnx_dir)
    assert ref.keys() == got.keys() and ref
    for image_id in ref:
        report = compare_detections(ref[image_id], got[image_id])
        assert report["unmatched"] == 0, (image_id, report)
        assert report["max_box_diff"] <= 0.5, (image_id, report)
    return sum(len(v["scores"]) for v in ref.values())


def _masks(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.array(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def test_unet_static_graph_tiles_and_batches_like_the_checkpoint(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "run", "unet", ["bg", "a", "b"], img_size=48,
                           values={0: 0, 128: 1, 255: 2}, width=8, depth=2)
    images = write_images(tmp_path / "images", [(48, 48), (80, 60), (48, 48)])
    onnx_file = tmp_path / "unet.onnx"
    assert main(["export", "--weights", str(ckpt), "--out", str(onnx_file)]) == 0
    err = capsys.readouterr().err
    assert "100.000 % of pixels equal" in err and "max |difference|" in err
    source = ["--source", str(images)]
    assert main(["predict", "--weights", str(ckpt), *source, "--out", str(tmp_path / "pt")]) == 0
    assert main(["predict", "--weights", str(onnx_file), *source, "--out", str(tmp_path / "ox"),
                 "--batch-size", "2"]) == 0
    assert "Speed:" in capsys.readouterr().err
    ref, got = _masks(tmp_path / "pt"), _masks(tmp_path / "ox")
    assert ref.keys() == got.keys() and len(ref) == 3
    for name in ref:
        assert np.isin(ref[name], [0, 128, 255]).all()  # the data set's values, not class indices
        assert (ref[name] == got[name]).mean() >= 0.999, name
    speed = json.loads((tmp_path / "ox" / "speed.json").read_text())
    assert speed["backend"] == "onnxruntime" and speed["images"] == 3 and speed["image_size"] == [48, 48]
    assert all(speed[k] > 0 for k in ("preprocess_ms", "inference_ms", "postprocess_ms"))


def test_metadata_holds_what_predict_needs(tmp_path):
    from detseg.engine.onnx_runtime import read_metadata

    ckpt = make_checkpoint(tmp_path / "run", "unet", ["bg", "fg"], img_size=32, width=8, depth=2)
    assert main(["export", "--weights", str(ckpt), "--out", str(tmp_path / "m.onnx"), "--output", "argmax",
                 "--dynamic"]) == 0
    props = read_metadata(tmp_path / "m.onnx")
    assert props["model"] == "unet" and json.loads(props["classes"]) == ["bg", "fg"]
    assert props["input_size"] == "32x32" and props["output"] == "argmax"
    assert json.loads(props["normalization"])["mean"][0] == pytest.approx(0.485)
    from detseg import __version__

    assert props["detseg_version"] == __version__
    # The argmax graph, run on a size it was not traced at, gives the checkpoint's classes.
    from detseg.engine.predict import load_model

    model, _ = load_model(ckpt)
    onnx_model, meta = load_model(tmp_path / "m.onnx")
    x = torch.rand(2, 3, 40, 56)
    with torch.no_grad():
        ref = model(x).argmax(1)
    assert (onnx_model(x).argmax(1) == ref).float().mean() >= 0.999
    assert meta["task"] == "segment" and meta["onnx_output"] == "argmax"


def test_static_graph_refuses_another_size_with_a_clear_line(tmp_path):
    from detseg.engine.predict import load_model

    ckpt = make_checkpoint(tmp_path / "run", "unet", ["bg", "fg"], img_size=32, width=8, depth=2)
    main(["export", "--weights", str(ckpt), "--out", str(tmp_path / "m.onnx")])
    model, _ = load_model(tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="takes 32x32 inputs.*--dynamic"):
        model(torch.rand(1, 3, 40, 40))


def test_segmenter_eval_with_onnx_gives_the_checkpoints_metrics(tmp_path, capsys):
    from detseg.data.spec import load_spec

    synth = ["synth", str(tmp_path / "shapes"), "--num-train", "1", "--num-val", "3", "--size", "64"]
    assert main(synth) == 0
    spec = tmp_path / "shapes" / "segment.yaml"
    classes = list(load_spec(spec).classes)
    ckpt = make_checkpoint(tmp_path / "run", "deeplabv3_mobilenet_v3_large", classes, img_size=64)
    onnx_file = tmp_path / "deeplab.onnx"
    assert main(["export", "--weights", str(ckpt), "--out", str(onnx_file), "--dynamic"]) == 0
    metrics = {}
    for name, weights in (("pt", ckpt), ("ox", onnx_file)):
        out = tmp_path / f"{name}.json"
        assert main(["eval", "seg", "--weights", str(weights), "--data", str(spec), "--json", str(out)]) == 0
        metrics[name] = json.loads(out.read_text())
    assert metrics["pt"]["miou"] == pytest.approx(metrics["ox"]["miou"], abs=1e-3)
    assert metrics["pt"]["pixel_accuracy"] == pytest.approx(metrics["ox"]["pixel_accuracy"], abs=1e-3)


def test_classifier_logits_agree(tmp_path):
    from detseg.engine.predict import load_model

    ckpt = make_checkpoint(tmp_path / "run", "resnet18_classifier", ["ant", "bee", "wasp"], img_size=64)
    assert main(["export", "--weights", str(ckpt), "--out", str(tmp_path / "c.onnx")]) == 0
    model, _ = load_model(ckpt)
    onnx_model, meta = load_model(tmp_path / "c.onnx")
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
    got = onnx_model(x)
    assert got.shape == (4, 3) and meta["task"] == "classify"
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    # predict: the same predictions.json (classify_predict resizes to the exported size).
    images = write_images(tmp_path / "images", [(80, 100), (64, 64)])
    for tag, weights in (("pt", ckpt), ("ox", tmp_path / "c.onnx")):
        out = ["--out", str(tmp_path / tag)]
        assert main(["predict", "--weights", str(weights), "--source", str(images), *out]) == 0
    written = [json.loads((tmp_path / tag / "predictions.json").read_text()) for tag in ("pt", "ox")]
    assert len(written[0]) == 2 and written[0] == written[1]


@pytest.mark.parametrize(
    "name",
    ["ssdlite320_mobilenet_v3_large", "fasterrcnn_mobilenet_v3_large_320_fpn", "rfcn_resnet18"],
)
def test_detector_round_trip_gives_the_same_detections(tmp_path, capsys, name):
    ckpt = make_checkpoint(tmp_path / "run", name, ["a", "b"], img_size=96, size=96)
    images = write_images(tmp_path / "images", [(96, 96), (72, 120)])
    onnx_file = tmp_path / f"{name}.onnx"
    assert main(["export", "--weights", str(ckpt), "--out", str(onnx_file)]) == 0
    assert "0 unmatched" in capsys.readouterr().err
    for tag, weights in (("pt", ckpt), ("ox", onnx_file)):
        assert main(["predict", "--weights", str(weights), "--source", str(images),
                     "--out", str(tmp_path / tag)]) == 0
    assert _assert_same_detections(tmp_path / "pt", tmp_path / "ox") > 10
    assert sorted(p.name for p in (tmp_path / "ox" / "labels").iterdir()) == ["img0.txt", "img1.txt"]
    images_json = json.loads((tmp_path / "ox" / "images.json").read_text())
    assert [im["file_name"] for im in images_json["images"]] == ["img0.png", "img1.png"]


def test_torchscript_and_half_exports_agree(tmp_path):
    from detseg.engine.predict import load_model

    ckpt = make_checkpoint(tmp_path / "run", "unet", ["bg", "fg"], img_size=32, width=8, depth=2)
    model, _ = load_model(ckpt)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
    ts = tmp_path / "m.ts"
    assert main(["export", "--weights", str(ckpt), "--format", "torchscript", "--out", str(ts)]) == 0
    extra = {"detseg_meta.json": ""}
    traced = torch.jit.load(str(ts), _extra_files=extra)
    assert json.loads(extra["detseg_meta.json"])["classes"] == ["bg", "fg"]
    torch.testing.assert_close(traced(x), ref)
    assert main(["export", "--weights", str(ckpt), "--half", "--out", str(tmp_path / "h.onnx")]) == 0
    half, meta = load_model(tmp_path / "h.onnx")
    assert meta["half"] and half.input_dtype == np.float16
    assert (half(x).argmax(1) == ref.argmax(1)).float().mean() > 0.99


def test_detector_eval_with_onnx_gives_the_checkpoints_table(tmp_path, capsys):
    from detseg.data.spec import load_spec

    synth = ["synth", str(tmp_path / "shapes"), "--num-train", "1", "--num-val", "3", "--size", "64"]
    assert main(synth) == 0
    spec = tmp_path / "shapes" / "detect.yaml"
    classes = list(load_spec(spec).classes)
    ckpt = make_checkpoint(tmp_path / "run", "ssdlite320_mobilenet_v3_large", classes, img_size=64, size=64)
    onnx_file = tmp_path / "ssd.onnx"
    assert main(["export", "--weights", str(ckpt), "--out", str(onnx_file)]) == 0
    stats = {}
    for name, weights in (("pt", ckpt), ("ox", onnx_file)):
        out = tmp_path / f"{name}.json"
        assert main(["eval", "det", "--weights", str(weights), "--data", str(spec), "--json", str(out)]) == 0
        stats[name] = json.loads(out.read_text())
    assert stats["pt"]["AP50"] > 0  # the spread weights find something: the comparison is not of zeros
    # Every figure equal (best-F1 score thresholds to the last bits of a float32 score).
    assert _leaves(stats["pt"]) == pytest.approx(_leaves(stats["ox"]), abs=1e-5, nan_ok=True)


def _leaves(obj, prefix: str = "") -> dict:
    if isinstance(obj, dict):
        return {k: v for key, value in obj.items() for k, v in _leaves(value, f"{prefix}/{key}").items()}
    if isinstance(obj, list):
        return {k: v for i, value in enumerate(obj) for k, v in _leaves(value, f"{prefix}/{i}").items()}
    return {prefix: obj if obj is not None else float("nan")}
