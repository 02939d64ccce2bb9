"""Bad input and the predict-at-scale paths: foreign ONNX files, ops ONNX lacks, videos, light imports."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from export_toys import make_checkpoint, write_images
from PIL import Image
from torch import nn

from detseg.cli import main

pytest.importorskip("onnxruntime")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_file_without_metadata_needs_classes(tmp_path, capsys):
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()
    foreign = tmp_path / "foreign.onnx"
    torch.onnx.export(net, (torch.rand(1, 3, 32, 32),), foreign, dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}})
    images = write_images(tmp_path / "images", [(40, 50)])
    out = tmp_path / "pred"
    assert main(["predict", "--weights", str(foreign), "--source", str(images), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "foreign.onnx: no detseg metadata" in err[0] and "--classes" in err[0]
    assert main(["predict", "--weights", str(foreign), "--source", str(images), "--out", str(out),
                 "--classes", "bg,fg"]) == 0
    mask = np.array(Image.open(out / "img0.png"))
    with torch.no_grad():
        image = torch.from_numpy(np.array(Image.open(images / "img0.png")))
        ref = net(image.permute(2, 0, 1)[None].float() / 255).argmax(1)[0].numpy()
    assert mask.shape == (40, 50) and (mask == ref).all()


def test_unexportable_op_names_the_op_and_the_model(tmp_path, capsys):
    # R-FCN's paper pooling (ps_roi_pool) has no ONNX form; the align variant has a stand-in.
    ckpt = make_checkpoint(tmp_path / "run", "rfcn_resnet18", ["a"], img_size=64, size=64, ps_pool="pool")
    assert main(["export", "--weights", str(ckpt), "--out", str(tmp_path / "r.onnx")]) == 2
    err = capsys.readouterr().err
    assert "rfcn_resnet18" in err and "ps_roi_pool" in err and "cannot be exported" in err
    assert not (tmp_path / "r.onnx").exists() and not list(tmp_path.glob(".r.onnx*"))


def _write_video(path, frames: list[np.ndarray], fps: float = 5.0) -> None:
    import cv2

    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for frame in frames:
        writer.write(frame[..., ::-1].copy())
    writer.release()


def test_video_in_annotated_video_and_per_frame_results_out(tmp_path, capsys):
    import cv2

    ckpt = make_checkpoint(tmp_path / "run", "unet", ["bg", "fg"], img_size=32, width=8, depth=2)
    rng = np.random.default_rng(0)
    frames = [cv2.resize(rng.integers(0, 255, (4, 6, 3), dtype=np.uint8), (48, 32)) for _ in range(5)]
    clip = tmp_path / "clip.mp4"
    _write_video(clip, frames)
    out = tmp_path / "pred"
    assert main(["predict", "--weights", str(ckpt), "--source", str(clip), "--out", str(out),
                 "--save-frames", "--batch-size", "2"]) == 0
    video = cv2.VideoCapture(str(out / "clip.mp4"))
    assert video.isOpened() and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    size = (int(video.get(cv2.CAP_PROP_FRAME_WIDTH)), int(video.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    video.release()
    masks = sorted(out.glob("clip_*.png"))
    assert [p.name for p in masks] == [f"clip_{i:06d}.png" for i in range(1, 6)]
    assert np.array(Image.open(masks[0])).shape == (32, 48)  # per-frame masks at the frame's size
    frames = sorted((out / "frames").glob("*.png"))
    assert len(frames) == 5 and Image.open(frames[0]).size == size  # the video's frames, saved
    assert json.loads((out / "speed.json").read_text())["images"] == 5

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    assert main(["predict", "--weights", str(ckpt), "--source", str(bad), "--out", str(out)]) == 2
    assert f"{bad}: cannot open this video" in capsys.readouterr().err


def test_detection_results_stream_the_same_for_any_batch_size(tmp_path):
    name = "ssdlite320_mobilenet_v3_large"
    ckpt = make_checkpoint(tmp_path / "run", name, ["a", "b"], img_size=64, size=64)
    images = write_images(tmp_path / "images", [(64, 64), (50, 70), (64, 64)])
    runs = {}
    for batch in ("1", "3"):
        out = tmp_path / f"b{batch}"
        assert main(["predict", "--weights", str(ckpt), "--source", str(images), "--out", str(out),
                     "--batch-size", batch, "--workers", "1" if batch == "3" else "0"]) == 0
        runs[batch] = json.loads((out / "results.json").read_text())
    assert len(runs["1"]) == len(runs["3"]) > 100
    for a, b in zip(runs["1"], runs["3"], strict=True):
        assert a["image_id"] == b["image_id"] and a["category_id"] == b["category_id"]
        assert np.allclose(a["bbox"], b["bbox"], atol=0.02) and abs(a["score"] - b["score"]) < 1e-4


def test_import_detseg_does_not_load_onnx():
    code = ("import sys, detseg, detseg.cli, detseg.engine.predict, detseg.export; "
            "detseg.cli.build_parser(); "
            "print(sorted(m for m in ('onnx', 'onnxruntime') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
