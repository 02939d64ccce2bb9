"""One loader, one Results: a weights URL means what the same file means (a whole detector's state dict
made by torchvision's own builder, served on 127.0.0.1 by the ``local_server`` the test starts and stops),
and ``detseg predict`` writes the files ``Results.save`` and ``Results.to_coco`` write, byte for byte."""

from __future__ import annotations

import functools
import http.server
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import detection as tvd

import detseg
from detseg.cli import main
from detseg.engine.checkpoint import save_checkpoint
from detseg.models.zoo import create_model

SSDLITE = "ssdlite320_mobilenet_v3_large"
NOT_PER_IMAGE = {"results.json", "images.json", "speed.json", "contact_sheet.png"}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve_folder(start, folder: Path) -> str:
    """``folder`` served by ``start`` (the ``local_server`` fixture); its base URL."""
    return start(functools.partial(_Quiet, directory=str(folder))).base


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """torch.hub's cache in ``tmp_path``, downloads on (from 127.0.0.1 only: the tests' own server)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("DETSEG_OFFLINE", raising=False)
    return Path(torch.hub.get_dir()) / "checkpoints"


@pytest.fixture
def ssdlite_file(tmp_path) -> tuple[Path, torch.nn.Module]:
    """torchvision's whole SSDLite (91 outputs, seeded, no weights downloaded) saved as a state dict."""
    torch.manual_seed(0)
    model = tvd.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
    with torch.no_grad():  # varied class scores (a fresh head gives every class 1/91)
        for block in model.head.classification_head.module_list:
            block[1].bias.copy_(torch.randn(block[1].bias.shape) * 3)
    folder = tmp_path / "served"
    folder.mkdir()
    torch.save(model.state_dict(), folder / "my_ssdlite.pth")
    return folder / "my_ssdlite.pth", model


def _images(folder: Path, sizes=((72, 96), (64, 80))) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        array = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        array[h // 4 : h // 2, w // 4 : w // 2] = (200, 40, 40)
        Image.fromarray(array).save(folder / f"img{i}.png")
    return folder


def _files(folder: Path, leave_out=frozenset({"speed.json"})) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in leave_out}  # fmt: skip


def test_a_url_loads_the_whole_detector_as_the_same_file_does(
    ssdlite_file, hub, local_server, tmp_path, capsys
):
    path, theirs = ssdlite_file
    images = _images(tmp_path / "images")
    outs, base = {}, serve_folder(local_server, path.parent)
    for kind, weights in (("file", str(path)), ("url", f"{base}/{path.name}")):
        out = tmp_path / kind
        code = main(["predict", "--model", SSDLITE, "--pretrained", weights, "--source", str(images),
                     "--out", str(out), "--score-threshold", "0.2"])  # fmt: skip
        assert code == 0, capsys.readouterr().err
        outs[kind] = _files(out)
    assert (hub / path.name).is_file()  # the URL was read from torch.hub's cache
    assert outs["url"] == outs["file"] and "labels/img0.txt" in outs["url"]
    # The whole detector, not a backbone: torchvision's own detections.
    rows = [r for r in json.loads(outs["url"]["results.json"]) if r["image_id"] == 1]
    tensor = torch.from_numpy(np.array(Image.open(images / "img0.png"))).permute(2, 0, 1).float() / 255
    with torch.inference_mode():
        ref = theirs([tensor])[0]
    assert len(rows) == len(ref["boxes"]) > 0
    corners = torch.tensor([r["bbox"][:2] for r in rows])
    torch.testing.assert_close(corners, ref["boxes"][:, :2], atol=0.011, rtol=0)


def _unet_checkpoint(folder: Path) -> Path:
    """A detseg U-Net checkpoint (membrane's pixel values, 32 px tiles: larger images are tiled)."""
    torch.manual_seed(0)
    model = create_model("unet", num_classes=2, width=8, depth=2)
    kwargs = {"num_classes": 2, "width": 8, "depth": 2}
    meta = {"task": "segment", "model": "unet", "model_kwargs": kwargs, "classes": ["membrane", "cell"],
            "values": {0: 0, 255: 1}, "channels": 3, "img_size": 32}  # fmt: skip
    return save_checkpoint({"model": model.state_dict(), "meta": meta}, folder / "best.pt")


@pytest.mark.parametrize("task", ["detect", "segment"])
def test_predict_writes_what_results_save_and_to_coco_write(task, ssdlite_file, tmp_path, capsys):
    images = _images(tmp_path / "images")
    if task == "detect":
        source, pretrained = SSDLITE, str(ssdlite_file[0])
        command = ["--model", SSDLITE, "--pretrained", pretrained]
    else:
        source, pretrained = _unet_checkpoint(tmp_path / "run"), None
        command = ["--weights", str(source)]
    cli = tmp_path / "cli"
    code = main(["predict", *command, "--source", str(images), "--out", str(cli), "--score-threshold", "0.2",
                 "--batch-size", "2"])  # fmt: skip
    assert code == 0, capsys.readouterr().err

    model = detseg.load(source, pretrained=pretrained)
    api = tmp_path / "api"
    results = list(model.predict(images, stream=True, score_threshold=0.2, keep_all=True))
    for r in results:
        assert r.save(api) is not None and set(r.speed) == {"preprocess", "inference", "postprocess"}
    per_image = _files(cli, NOT_PER_IMAGE)
    assert per_image == _files(api) and len(per_image) == 4
    if task == "detect":
        rows = [row for i, r in enumerate(results, 1) for row in r.to_coco(image_id=i)]
        assert json.loads((cli / "results.json").read_text()) == rows and rows
        kept = model.predict(images / "img0.png", score_threshold=0.2)[0]  # without keep_all: cut here
        shown = [r for r in rows if r["image_id"] == 1 and r["score"] >= 0.2]
        assert 0 < len(shown) < len(rows) and kept.to_coco() == shown
        assert (cli / "labels/img0.txt").read_text().count("\n") == len(shown)
    else:
        mask = np.array(Image.open(cli / "img0.png"))
        assert mask.shape == (72, 96) and set(np.unique(mask)) <= {0, 255}
