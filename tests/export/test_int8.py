"""``detseg export --format onnx --int8``: ONNX Runtime static INT8 of a trained U-Net agrees with the
checkpoint, the gate keeps the nodes INT8 breaks in float, and a model slower than FP32 is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from int8_toys import trained_unet, with_outlier_channel
from PIL import Image

from detseg.cli import main

pytest.importorskip("onnxruntime")


def _masks(folder):
    return {p.name: np.array(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def _export(ckpt, spec, out, *extra):
    args = ["export", "--weights", str(ckpt), "--int8", "--calib", str(spec), "--calib-images", "16", "--out",
            str(out), *extra]  # fmt: skip
    return main(args)


def test_int8_agrees_with_the_checkpoint_in_predict_and_eval(tmp_path, capsys):
    from detseg.engine.onnx_runtime import read_metadata

    ckpt, spec = trained_unet()
    out = tmp_path / "unet.int8.onnx"
    assert _export(ckpt, spec, out, "--keep-slower") == 0  # a 64 px toy: INT8 may not pay here
    err = capsys.readouterr().err
    assert "accuracy gate on val: miou FP32" in err and "speed on this CPU: INT8" in err
    report = json.loads(read_metadata(out)["detseg_meta"])["int8"]
    assert report["format"] == "QDQ, U8S8, per-channel" and report["fp32_ms"] > 0 and report["int8_ms"] > 0
    assert report["drop"] <= 0.005 and report["calibration_images"] == 16
    images = spec.parent / "images" / "val"
    for name, weights in (("pt", ckpt), ("int8", out)):
        assert (
            main(
                ["predict", "--weights", str(weights), "--source", str(images), "--out", str(tmp_path / name)]
            )
            == 0
        )
    reference, got = _masks(tmp_path / "pt"), _masks(tmp_path / "int8")
    assert got.keys() == reference.keys() and len(got) == 4
    # Stated threshold: 97 % of the val pixels labelled as the FP32 checkpoint labels them.
    assert np.mean([(got[k] == reference[k]).mean() for k in reference]) >= 0.97
    scores = {}
    for name, weights in (("pt", ckpt), ("int8", out)):
        path = tmp_path / f"{name}.json"
        assert main(["eval", "seg", "--weights", str(weights), "--data", str(spec), "--json", str(path)]) == 0
        scores[name] = json.loads(path.read_text())["miou"]
    assert scores["int8"] == pytest.approx(scores["pt"], abs=0.02)


def test_the_gate_keeps_the_nodes_int8_breaks_in_float(tmp_path, capsys, monkeypatch):
    from detseg.engine.onnx_runtime import read_metadata

    ckpt, spec = trained_unet()
    outlier = with_outlier_channel(ckpt)  # the same function, one activation channel 1000x the others
    out = tmp_path / "gated.int8.onnx"
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    assert _export(outlier, spec, out, "--keep-slower", "--max-drop", "0.005", "--dynamic") == 0
    assert not list((tmp_path / "cwd").iterdir())  # ORT's shape inference leaves nothing behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "gated.int8.onnx"]
    report = json.loads(read_metadata(out)["detseg_meta"])["int8"]
    assert report["fp32"] - report["default_int8"] > 0.05  # plain INT8 breaks on the outlier
    assert report["drop"] <= 0.005
    # The convolution reading the outlier channel is the most sensitive; a few nodes at most stay float.
    assert report["kept_in_float"][0] == "/model/encoder/levels.0/levels.0.1/levels.0.1.0/Conv"
    assert len(report["kept_in_float"]) <= 4
    assert "kept in float: /model/encoder/levels.0/levels.0.1/levels.0.1.0/Conv" in capsys.readouterr().err


def test_int8_slower_than_fp32_is_refused(tmp_path, capsys, monkeypatch):
    import detseg.export.onnx_int8 as onnx_int8

    ckpt, spec = trained_unet()
    monkeypatch.setattr(onnx_int8, "time_sessions", lambda fp32, int8, x: (2.0, 3.0))  # this CPU, made slow
    out = tmp_path / "slow.int8.onnx"
    assert _export(ckpt, spec, out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "INT8 runs slower than FP32 on this CPU (3.0 vs 2.0 ms" in err
    assert "instruction sets found:" in err and "--keep-slower" in err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    ckpt, spec = trained_unet()
    assert main(["export", "--weights", str(ckpt), "--int8", "--out", str(tmp_path / "m.int8.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--int8 needs --calib SPEC" in err
    assert (
        main(["export", "--weights", str(ckpt), "--format", "torchscript", "--int8", "--calib", str(spec)])
        == 2
    )
    assert "--int8 is for --format onnx" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
